"""Fixtures of the plugin tests: a headless Chromium (Debian's, driven by Selenium 4), and an
``airflow api-server`` with the fraudops plugin on the tests' metadata DB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow_ui import USERS

#: The shadow pool's memory budget the api-server's console books against: one tiny challenger
#: (a worker's ~110 MB base plus its model) fits, a second at the same time does not.
SHADOW_MEMORY_MB = 200


@pytest.fixture(scope="module")
def api_server(
    airflow_db: Path,
    bq_emulator: Any,
    mlflow_server: str,
    session_tmp: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """``airflow api-server`` with the fraudops plugin on the tests' metadata DB, its fraudops
    settings (the console's audit rows) pointing at the session's emulator and MLflow."""
    from fraudops.stack.process import free_port

    tmp = tmp_path_factory.mktemp("approval-api")
    port, scoring_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    passwords = tmp / "passwords.json"
    env = {
        **os.environ,
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__WORKERS": "1",
        "FRAUDOPS_STATE_DIR": str(session_tmp / "state"),
        # No scoring service listens here unless a test starts one (``scoring_port``): the
        # console's rollback then reports it unreachable.
        "FRAUDOPS_SCORING_PORT": str(scoring_port),
        "FRAUDOPS_SHADOW_MEMORY_MB": str(SHADOW_MEMORY_MB),
        "FRAUDOPS_BQ_PROJECT": bq_emulator.project,
        "FRAUDOPS_BQ_DATASET": bq_emulator.dataset,
        "FRAUDOPS_BQ_ENDPOINT": bq_emulator.endpoint,
        "FRAUDOPS_MLFLOW_TRACKING_URI": mlflow_server,
        "MLFLOW_TRACKING_URI": mlflow_server,
    }
    log = (tmp / "api-server.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "airflow"), "api-server", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp / "api-server.log").read_text()[-3000:]
            try:
                if (
                    httpx.get(f"{url}/api/v2/monitor/health", timeout=5).status_code == 200
                    and passwords.exists()
                ):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp / "api-server.log").read_text()[-3000:]
            time.sleep(1)
        yield {
            "url": url,
            "passwords": json.loads(passwords.read_text()),
            "log": tmp / "api-server.log",
            "scoring_port": scoring_port,
            "state_dir": session_tmp / "state",
        }
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=60)
        log.close()
