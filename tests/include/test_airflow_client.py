"""The demo's Airflow REST client against a real HTTP server that fails the way Airflow did.

Fresh-clone run 5 of round 2 ended after 3.5 minutes: ``POST /dags/fraud_drift_monitor/dagRuns``
answered ``500 {"detail": {"reason": "Database error", ...}}`` (the local SQLite metadata database
was locked past the API server's timeout) and the demo gave up. A transient answer is now retried,
and a trigger carries its own run id, so a retried POST whose first answer was lost cannot start a
second run.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from fraudops.clients import airflow as airflow_api
from fraudops.clients.airflow import AirflowClient
from fraudops.exceptions import ServiceError

DB_ERROR = {"detail": {"reason": "Database error", "statement": "hidden", "orig_error": "hidden"}}


class FlakyAirflow(BaseHTTPRequestHandler):
    """Answers per a script of (status, body) for each API call; remembers what it created."""

    script: ClassVar[list[tuple[int, Any]]] = []
    runs: ClassVar[dict[str, dict[str, Any]]] = {}
    calls: ClassVar[list[str]] = []

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/auth/token":
            self._send(201, {"access_token": "t"})
            return
        self.calls.append(f"POST {self.path}")
        status, answer = self.script.pop(0) if self.script else (200, None)
        if status == 200 and self.path.endswith("/dagRuns"):
            run_id = body["dag_run_id"]
            if run_id in self.runs:
                self._send(409, {"detail": f"DAG run {run_id} already exists"})
                return
            self.runs[run_id] = body
            if answer == "lost":  # created, but the answer never reaches the client
                self.connection.shutdown(2)
                return
            self._send(200, {"dag_run_id": run_id})
            return
        self._send(status, answer)

    def do_GET(self) -> None:
        self.calls.append(f"GET {self.path}")
        status, answer = self.script.pop(0) if self.script else (200, {"dag_runs": []})
        self._send(status, answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def flaky(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[type[FlakyAirflow], AirflowClient]]:
    monkeypatch.setattr(airflow_api, "RETRY_DELAYS_S", (0.05, 0.05, 0.05))
    handler = type("Handler", (FlakyAirflow,), {"script": [], "runs": {}, "calls": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield (
            handler,
            AirflowClient(f"http://127.0.0.1:{server.server_address[1]}", "admin", "pw", timeout_s=5),
        )
    finally:
        server.shutdown()


def test_a_locked_database_is_waited_out(flaky: tuple[type[FlakyAirflow], AirflowClient]) -> None:
    handler, client = flaky
    handler.script[:] = [(500, DB_ERROR), (503, {"detail": "starting"}), (200, None)]
    run_id = client.trigger("fraud_drift_monitor", {"x": 1})
    assert list(handler.runs) == [run_id] and handler.runs[run_id]["conf"] == {"x": 1}
    assert handler.calls.count("POST /api/v2/dags/fraud_drift_monitor/dagRuns") == 3


def test_a_trigger_whose_answer_was_lost_starts_one_run(
    flaky: tuple[type[FlakyAirflow], AirflowClient],
) -> None:
    handler, client = flaky
    handler.script[:] = [(200, "lost")]
    run_id = client.trigger("fraud_retrain")
    assert list(handler.runs) == [run_id]  # the retry got 409 for the same id: no second run
    assert handler.calls.count("POST /api/v2/dags/fraud_retrain/dagRuns") == 2


def test_real_errors_are_not_retried_and_a_lasting_outage_gives_up(
    flaky: tuple[type[FlakyAirflow], AirflowClient],
) -> None:
    handler, client = flaky
    handler.script[:] = [(500, {"detail": "Internal Server Error"})]
    with pytest.raises(ServiceError, match="-> 500"):
        client.runs("fraud_release")
    assert len(handler.calls) == 1
    handler.script[:] = [(500, DB_ERROR)] * 10
    with pytest.raises(ServiceError, match=r"Database error.*\(4 attempts\)"):
        client.runs("fraud_release")
    assert len(handler.calls) == 1 + 4
