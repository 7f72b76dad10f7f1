"""The local stack: `fraudops up/status/down` on free ports in a temp state folder."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fraudops.stack.process import free_port, read_pid

FRAUDOPS = str(Path(sys.executable).parent / "fraudops")


def _stack_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FRAUDOPS_", "MLFLOW_"))}
    env.update(
        FRAUDOPS_STATE_DIR=str(state),
        FRAUDOPS_BQ_PORT=str(free_port()),
        FRAUDOPS_BQ_GRPC_PORT=str(free_port()),
        FRAUDOPS_MLFLOW_PORT=str(free_port()),
        FRAUDOPS_AIRFLOW_PORT=str(free_port()),
        FRAUDOPS_BQ_PROJECT="fraudops-stacktest",
    )
    return env


def _cli(env: dict[str, str], *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FRAUDOPS, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _status(env: dict[str, str]) -> tuple[int, dict[str, dict[str, object]]]:
    res = _cli(env, "status", "--json", timeout=60)
    return res.returncode, {s["service"]: s for s in json.loads(res.stdout)}


def test_status_is_false_when_nothing_runs(tmp_path: Path) -> None:
    code, states = _status(_stack_env(tmp_path))
    assert code == 1
    assert {"bigquery-emulator", "mlflow", "airflow"} <= set(states)
    assert not any(s["healthy"] or s["running"] for s in states.values())


def test_status_tells_the_truth_when_a_service_dies(tmp_path: Path) -> None:
    """Start the emulator and MLflow (not Airflow), then kill MLflow behind the stack's back."""
    from fraudops.config import load_settings
    from fraudops.stack import process
    from fraudops.stack.services import Stack

    env = _stack_env(tmp_path)
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        stack = Stack(load_settings())
        specs = {s.name: s for s in stack.specs()}
        process.start(specs["bigquery-emulator"])
        process.start(specs["mlflow"])
        try:
            code, states = _status(env)
            assert code == 1  # Airflow is not up
            assert states["bigquery-emulator"]["healthy"] and states["mlflow"]["healthy"]
            assert not states["airflow"]["healthy"]

            pid = read_pid(specs["mlflow"].pid_file)
            assert pid is not None
            os.killpg(os.getpgid(pid), signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and read_pid(specs["mlflow"].pid_file) is not None:
                time.sleep(0.2)
            code, states = _status(env)
            assert code == 1
            assert states["mlflow"]["healthy"] is False and states["mlflow"]["running"] is False
            assert states["bigquery-emulator"]["healthy"] is True
        finally:
            stack.down()
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_start_failure_names_service_and_log(tmp_path: Path) -> None:
    """A port taken by someone else gives a clear error naming the service and its log."""
    import socket

    from fraudops.exceptions import ServiceError
    from fraudops.stack import process
    from fraudops.stack.services import MlflowAuth, mlflow_spec

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        auth = MlflowAuth("u", "p", "k")
        spec = mlflow_spec(
            tmp_path / "mlflow", tmp_path / "logs", tmp_path / "run", "127.0.0.1", port, auth=auth
        )
        with pytest.raises(ServiceError, match=r"mlflow: port \d+ is already in use.*see log: .*mlflow.log"):
            process.start(spec)


@pytest.mark.slow
@pytest.mark.integration
def test_up_status_down_leaves_nothing_running(tmp_path: Path) -> None:
    import psutil

    env = _stack_env(tmp_path)
    up = _cli(env, "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "Airflow UI: http://127.0.0.1:" in up.stdout and "login: admin / " in up.stdout
        code, states = _status(env)
        assert code == 0 and all(s["healthy"] for s in states.values())
        pids = [int(str(s["pid"])) for s in states.values()]
        # Airflow's components run as services of their own, without `standalone` or log servers;
        # MLflow is one process (uvicorn exec'd in place of the `mlflow server` CLI).
        assert {"airflow", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"} <= set(states)
        roots = [
            psutil.Process(int(str(states[n]["pid"]))) for n in ("airflow-scheduler", "airflow-triggerer")
        ]
        listening = {
            c.laddr.port
            for p in [*roots, *(c for r in roots for c in r.children(recursive=True))]
            for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
        assert not listening & {8793, 8794}, listening  # Airflow's log server ports
        mlflow = psutil.Process(int(str(states["mlflow"]["pid"])))
        assert "uvicorn" in mlflow.cmdline() and mlflow.children() == []
        # The applied airflow_settings.yaml is visible through Airflow's own CLI.
        airflow_env = {**env, "AIRFLOW_HOME": str(tmp_path / "airflow")}
        pools = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "pools", "list", "-o", "json"],
            env=airflow_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert "shadow_slots" in pools.stdout
        # The warehouse answers `fraudops query`.
        q = _cli(env, "query", "SELECT COUNT(*) AS n FROM fraud.transactions", timeout=60)
        assert q.returncode == 0 and re.search(r"\| n +\|", q.stdout), q.stdout + q.stderr
    finally:
        down = _cli(env, "down", timeout=120)
    assert down.returncode == 0
    assert "stopped:" in down.stdout
    leftovers = [
        p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ]
    assert leftovers == []
    code, _ = _status(env)
    assert code == 1
