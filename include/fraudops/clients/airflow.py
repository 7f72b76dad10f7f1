"""A small client for Airflow 3's REST API (``/api/v2``), as the demo and the e2e tests use it:
token login, unpausing DAGs, triggering runs with conf, variables, runs and task states."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from fraudops.exceptions import ServiceError

#: Waits before the 2nd, 3rd, ... attempt of a call that failed transiently (about 30 s in all).
RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 15.0)


def _transient(r: httpx.Response) -> str | None:
    """Why ``r`` is worth trying again, or None."""
    if r.status_code in (502, 503, 504):
        return f"{r.status_code} {r.text[:200]}"
    if r.status_code == 500 and "Database error" in r.text:
        return f"500 {r.text[:300]}"
    return None


@dataclass
class AirflowClient:
    url: str
    username: str
    password: str
    timeout_s: float = 30.0
    _token: str | None = field(default=None, repr=False)

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            r = httpx.post(
                f"{self.url}/auth/token",
                json={"username": self.username, "password": self.password},
                timeout=self.timeout_s,
            )
            if r.status_code >= 300:
                raise ServiceError("airflow", f"login failed ({r.status_code}): {r.text[:300]}")
            self._token = r.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def request(self, method: str, path: str, *, conflict_ok: bool = False, **kwargs: Any) -> Any:
        """One API call; transient failures are retried with a backoff (``RETRY_DELAYS_S``).

        Transient: the connection failed, or the server answered 502/503/504, or 500 with
        Airflow's "Database error" (on the local SQLite metadata database a busy scheduler holds
        the write lock past the API server's timeout). Every call here is safe to repeat: reads,
        PATCHes, and POSTs that carry their own id, where a repeat after a lost answer gets 409
        (``conflict_ok``: that 409 means "already done" and returns None).
        """
        import time

        attempts = iter(RETRY_DELAYS_S)
        relogin = True
        while True:
            try:
                r = httpx.request(
                    method,
                    f"{self.url}/api/v2{path}",
                    headers=self._headers(),
                    timeout=self.timeout_s,
                    **kwargs,
                )
                problem = _transient(r)
            except httpx.HTTPError as err:
                r, problem = None, f"{type(err).__name__}: {err}"
            if r is not None and r.status_code == 401 and relogin:  # token expired
                self._token, relogin = None, False
                continue
            if problem is not None:
                delay = next(attempts, None)
                if delay is not None:
                    time.sleep(delay)
                    continue
                raise ServiceError(
                    "airflow", f"{method} {path}: {problem} ({len(RETRY_DELAYS_S) + 1} attempts)"
                )
            assert r is not None
            if r.status_code == 409 and conflict_ok:
                return None
            if r.status_code >= 300:
                raise ServiceError("airflow", f"{method} {path} -> {r.status_code}: {r.text[:500]}")
            return r.json() if r.content else None

    # -- conveniences ---------------------------------------------------------------------------
    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        import datetime as dt
        import uuid

        now = dt.datetime.now(dt.UTC)
        # Our own run id: a retried POST whose first answer was lost gets 409 for the same run,
        # never a second run.
        run_id = f"manual__{now.isoformat()}_{uuid.uuid4().hex[:6]}"
        body = {"dag_run_id": run_id, "conf": conf or {}, "logical_date": now.isoformat()}
        self.request("POST", f"/dags/{dag_id}/dagRuns", json=body, conflict_ok=True)
        return run_id

    def set_variable(self, key: str, value: Any) -> None:
        body = {"key": key, "value": json.dumps(value)}
        try:
            self.request("PATCH", f"/variables/{key}", json=body)
        except ServiceError:
            self.request("POST", "/variables", json=body)

    def runs(self, dag_id: str, limit: int = 20) -> list[dict[str, Any]]:
        doc = self.request(
            "GET", f"/dags/{dag_id}/dagRuns", params={"limit": limit, "order_by": "-run_after"}
        )
        return list(doc.get("dag_runs", []))

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        doc = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti.get("state") for ti in doc.get("task_instances", [])}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        doc = self.request(
            "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        )
        value = doc.get("value")
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value
