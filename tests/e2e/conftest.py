"""Fixtures of the release end-to-end world (see e2e_world.py): a dataset with simulated history,
real bundles registered in MLflow, a scoring-service process and simulator traffic, per session."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_world import HISTORY_DAYS, HISTORY_START, MODEL, SEED, TRAIN_DAYS, Traffic, world


@pytest.fixture(scope="session")
def e2e_env(bq_emulator: Any, mlflow_server: str, session_tmp: Path) -> Iterator[dict[str, str]]:
    """Environment of the e2e world (own dataset, model name, scoring port), set for the session."""
    from fraudops.stack.process import free_port

    state = session_tmp / "e2e-state"
    state.mkdir(exist_ok=True)
    env = {
        "FRAUDOPS_STATE_DIR": str(state),
        "FRAUDOPS_BQ_PROJECT": bq_emulator.project,
        "FRAUDOPS_BQ_DATASET": "e2e",
        "FRAUDOPS_BQ_ENDPOINT": bq_emulator.endpoint,
        "FRAUDOPS_MLFLOW_TRACKING_URI": mlflow_server,
        "MLFLOW_TRACKING_URI": mlflow_server,
        "FRAUDOPS_MODEL_NAME": MODEL,
        "FRAUDOPS_SCORING_HOST": "127.0.0.1",
        "FRAUDOPS_SCORING_PORT": str(free_port()),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield env


@pytest.fixture(scope="session")
def e2e_warehouse(e2e_env: dict[str, str]) -> Any:
    from fraudops.simulate import backfill
    from fraudops.warehouse import Warehouse

    wh = Warehouse()
    wh.ensure_schema()
    backfill(wh, HISTORY_START, HISTORY_DAYS, SEED, world())
    return wh


@pytest.fixture(scope="session")
def e2e_bundles(e2e_env: dict[str, str], session_tmp: Path) -> dict[str, Path]:
    from release_models import train_bundles

    from fraudops.simulate import generate

    sim = generate(HISTORY_START, HISTORY_DAYS, SEED, world())
    bundles: dict[str, Path] = train_bundles(
        session_tmp / "e2e-bundles", sim.transactions, sim.labels, train_days=TRAIN_DAYS
    )
    return bundles


@pytest.fixture(scope="session")
def registered(e2e_env: dict[str, str], e2e_bundles: dict[str, Path], e2e_warehouse: Any) -> dict[str, str]:
    """Every bundle registered (name → version); the champion bundle is the champion."""
    from fraudops.registry import move_alias, register_artifact

    uri = e2e_env["MLFLOW_TRACKING_URI"]
    versions = {
        name: register_artifact(path, tracking_uri=uri, model_name=MODEL, experiment="e2e").version
        for name, path in e2e_bundles.items()
    }
    move_alias(
        e2e_warehouse,
        model_name=MODEL,
        alias="champion",
        version=versions["champion"],
        action="bootstrap",
        actor="e2e",
        reason="first champion of the e2e world",
        tracking_uri=uri,
    )
    return versions


# The service and its traffic live as long as the module that uses them (test_release.py): left
# running to the end of the session they would take a core from the tests that follow.
@pytest.fixture(scope="module")
def scoring(e2e_env: dict[str, str], registered: dict[str, str], session_tmp: Path) -> Iterator[str]:
    """The scoring service as its own process (as `fraudops up` runs it), mirroring 100 %."""
    from fraudops.stack import process
    from fraudops.stack.process import ServiceSpec, http_ok

    url = f"http://127.0.0.1:{e2e_env['FRAUDOPS_SCORING_PORT']}"
    state = Path(e2e_env["FRAUDOPS_STATE_DIR"])
    spec = ServiceSpec(
        name="scoring-e2e",
        command=[sys.executable, "-m", "fraudops.serving", "--log-level", "warning"],
        url=url,
        health=lambda: http_ok(f"{url}/health"),
        log_file=session_tmp / "logs" / "scoring-e2e.log",
        pid_file=session_tmp / "run" / "scoring-e2e.pid",
        env={
            **{k: v for k, v in os.environ.items() if k.startswith(("FRAUDOPS_", "MLFLOW_"))},
            "FRAUDOPS_SHADOW_SAMPLE_RATE": "1.0",
            "FRAUDOPS_ALIAS_POLL_S": "0.5",
            "FRAUDOPS_WARM_DAYS": "31",  # the longest feature window is 30 days
            "FRAUDOPS_EVENT_CLOCK": "simulated",  # the stream replays 2026-10 event times
            "PYTHONUNBUFFERED": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        },
        cwd=state,
        ready_timeout_s=300.0,
        port=int(e2e_env["FRAUDOPS_SCORING_PORT"]),
    )
    process.start(spec)
    try:
        yield url
    finally:
        process.stop(spec)


@pytest.fixture(scope="module")
def traffic(scoring: str, e2e_warehouse: Any) -> Iterator[Traffic]:
    from fraudops.warehouse import Warehouse

    t = Traffic(url=scoring, warehouse=Warehouse(), cfg=world())
    t.start()
    try:
        yield t
    finally:
        t.stop()


@pytest.fixture(scope="session")
def release_dag(airflow_db: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "fraud_release.py"))
    assert bag.import_errors == {}
    return bag.dags["fraud_release"]
