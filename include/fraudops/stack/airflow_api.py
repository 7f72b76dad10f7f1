"""A small client for Airflow 3's REST API (``/api/v2``), as the demo and the e2e tests use it:
token login, unpausing DAGs, triggering runs with conf, variables, runs and task states."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from fraudops.exceptions import ServiceError


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

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in (1, 2):
            try:
                r = httpx.request(
                    method,
                    f"{self.url}/api/v2{path}",
                    headers=self._headers(),
                    timeout=self.timeout_s,
                    **kwargs,
                )
            except httpx.HTTPError as err:
                raise ServiceError("airflow", f"{method} {path}: {err}") from err
            if r.status_code == 401 and attempt == 1:  # token expired
                self._token = None
                continue
            if r.status_code >= 300:
                raise ServiceError("airflow", f"{method} {path} -> {r.status_code}: {r.text[:500]}")
            return r.json() if r.content else None
        return None

    # -- conveniences ---------------------------------------------------------------------------
    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        import datetime as dt

        body = {"conf": conf or {}, "logical_date": dt.datetime.now(dt.UTC).isoformat()}
        return str(self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

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
