"""Signing in to Airflow's API server from tests: tokens, and a browser session."""

from __future__ import annotations

from typing import Any

import httpx

#: The simple auth manager's users of the plugin tests' api-server: a release manager (op), two data
#: scientists (user), a viewer.
USERS = "rita:op,dana:user,eli:user,vic:viewer"


def airflow_token(url: str, user: str, password: str) -> str:
    """A JWT for ``user`` from the simple auth manager (``POST /auth/token``)."""
    r = httpx.post(f"{url}/auth/token", json={"username": user, "password": password}, timeout=30)
    assert r.status_code < 300, r.text
    return str(r.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_in(driver: Any, url: str, user: str, password: str) -> None:
    """Airflow's session: the JWT the UI keeps in its ``_token`` cookie, for ``user``."""
    driver.delete_all_cookies()
    driver.get(f"{url}/fraudops/console")  # unauthenticated: a page asking to log in
    assert "Sign in to Airflow first" in driver.page_source
    driver.add_cookie({"name": "_token", "value": airflow_token(url, user, password), "path": "/"})
    driver.get(f"{url}/fraudops/console")
