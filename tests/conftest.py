"""Shared fixtures: real services on free ports in temp folders, started once per test session.

Tests never touch a running `make run` stack: every service gets its own port and state folder
and is stopped at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

# Airflow: no examples, no default connections, a private home (set before anything imports it).
_AIRFLOW_HOME = Path(os.environ.get("FRAUDOPS_TEST_TMP", "/tmp")) / f"fraudops-test-airflow-{os.getpid()}"
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
# Every MLflow server the tests start runs MLflow's basic-auth app with this one account (a random
# password per session), which the tests' clients and every process they start read from here.
os.environ.setdefault("MLFLOW_TRACKING_USERNAME", "fraudops-tests")
os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", __import__("secrets").token_urlsafe(16))
# Make sure `airflow`, `mlflow`, `bqemulator` resolve to this venv.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def _sigterm_to_interrupt(signum: int, frame: object) -> None:
    # `timeout` and CI runners stop pytest with SIGTERM; turning it into KeyboardInterrupt lets the
    # session fixtures run their teardown, so no emulator or MLflow server outlives the run.
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _sigterm_to_interrupt)

#: Fixtures that start (or need) a real service: a test that uses one, directly or through another
#: fixture, is an integration test whatever its own markers say, so `make test-fast`
#: (``-m "not slow and not integration"``) never starts a service.
SERVICE_FIXTURES = frozenset(
    {"bq_emulator", "mlflow_server", "airflow_db", "redis_url", "live", "scoring", "traffic", "release_dag"}
)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The private AIRFLOW_HOME (its SQLite metadata DB, logs, the api-server's generated
    passwords) goes with the session, so a test run leaves nothing behind in /tmp."""
    import shutil

    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


#: Test files that drive real-time traffic through real processes and judge what happens in
#: wall-clock time (the lifecycle's whole stack, the release DAG deciding on live shadow traffic,
#: latency under load, outages under load). `make test` runs two xdist workers: these files form
#: one work unit, run one after another on one worker, first and in this order, so two of them
#: never compete for the 2 cores; every other file is a unit of its own (its module fixtures are
#: built once) that the workers share (``pytest_xdist_make_scheduler`` below). Two lanes (the
#: lifecycle on one worker, the other files on the other) were tried in session 20: the lifecycle
#: took 33 minutes instead of 14, the rest of the suite waited behind both lanes (14 % of the tests
#: done after 41 minutes), and two release e2e tests failed beside the lifecycle's stack.
REALTIME = (
    "tests/e2e/test_lifecycle.py",
    "tests/e2e/test_release.py",
    "tests/include/serving/test_reliability_load.py",
    "tests/include/serving/test_openapi_fuzz.py",
    "tests/include/serving/test_load_latency.py",
)


def _relpath(item: pytest.Item) -> str:
    return Path(str(item.path)).resolve().relative_to(REPO).as_posix()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Under xdist (``--no-loadscope-reorder``: units are handed out in collection order) the
        # real-time unit first, the longest lane, in REALTIME's order; the rest as collected.
        rank = {path: i for i, path in enumerate(REALTIME)}
        items.sort(key=lambda item: rank.get(_relpath(item), len(REALTIME)))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` with one change: the REALTIME files are one unit. (xdist's own
    ``loadgroup`` marks do nothing under pytest 9, whose node ids no longer read the ``_nodeid``
    that xdist 3.8 rewrites, so the grouping is done here, on the scheduler's side.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Lanes(LoadScopeScheduling):  # type: ignore[misc]  # xdist ships no type information
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "realtime" if path in REALTIME else path

    return Lanes(config, log)


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fraudops")


@pytest.fixture(scope="session")
def bq_emulator(session_tmp: Path) -> Iterator[object]:
    """A real bqemulator on free ports; yields its WarehouseConfig (dataset created, schema applied)."""
    from fraudops.config import WarehouseConfig
    from fraudops.stack import process
    from fraudops.stack.services import bqemulator_spec
    from fraudops.warehouse import Warehouse

    port, grpc = process.free_port(), process.free_port()
    data = session_tmp / "bigquery"
    spec = bqemulator_spec(data, session_tmp / "logs", session_tmp / "run", "fraudops-test", port, grpc)
    process.start(spec)
    cfg = WarehouseConfig(
        project="fraudops-test",
        dataset="fraud",
        endpoint=f"http://127.0.0.1:{port}",
        emulator_grpc_port=grpc,
        timeout_s=30.0,
    )
    Warehouse(cfg).ensure_schema()
    try:
        yield cfg
    finally:
        process.stop(spec)


@pytest.fixture()
def warehouse(bq_emulator: object, request: pytest.FixtureRequest) -> Iterator[object]:
    """A Warehouse on a fresh dataset of the session emulator (one dataset per test)."""
    import re

    from fraudops.warehouse import Warehouse

    name = "t_" + re.sub(r"[^a-zA-Z0-9_]", "_", request.node.name)[:60]
    cfg: Any = replace(bq_emulator, dataset=name)  # type: ignore[type-var]
    wh = Warehouse(cfg)
    wh.ensure_schema()
    try:
        yield wh
    finally:
        wh.drop_dataset()


@pytest.fixture(scope="session")
def mlflow_test_auth(session_tmp: Path) -> Any:
    """The account of every MLflow server the session starts (the environment's credentials)."""
    from fraudops.stack.services import mlflow_auth

    return mlflow_auth(session_tmp / "mlflow-auth" / "credentials.json")


@pytest.fixture(scope="session")
def mlflow_server(session_tmp: Path, mlflow_test_auth: Any) -> Iterator[str]:
    """A real MLflow tracking + registry server (SQLite backend, basic auth) on a free port; yields
    its URI."""
    from fraudops.stack import process
    from fraudops.stack.services import mlflow_spec

    port = process.free_port()
    spec = mlflow_spec(
        session_tmp / "mlflow",
        session_tmp / "logs",
        session_tmp / "run",
        "127.0.0.1",
        port,
        auth=mlflow_test_auth,
    )
    process.start(spec)
    try:
        yield spec.url
    finally:
        process.stop(spec)


@pytest.fixture()
def fraudops_env(
    bq_emulator: object, mlflow_server: str, session_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Point fraudops settings (env vars) at the session's emulator and MLflow; returns the state dir."""
    cfg = bq_emulator
    state = session_tmp / "state"
    state.mkdir(exist_ok=True)
    monkeypatch.setenv("FRAUDOPS_STATE_DIR", str(state))
    monkeypatch.setenv("FRAUDOPS_BQ_PROJECT", cfg.project)  # type: ignore[attr-defined]
    monkeypatch.setenv("FRAUDOPS_BQ_DATASET", cfg.dataset)  # type: ignore[attr-defined]
    monkeypatch.setenv("FRAUDOPS_BQ_ENDPOINT", cfg.endpoint)  # type: ignore[attr-defined]
    monkeypatch.setenv("FRAUDOPS_MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    return state


# DAG files import `fraudops_airflow` from plugins/ (Airflow puts plugins/ and dags/ on sys.path).
for _p in (REPO / "plugins", REPO / "dags"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's metadata DB (SQLite in the private AIRFLOW_HOME), migrated once per session."""
    import subprocess

    _AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        env=dict(os.environ),
        check=True,
        capture_output=True,
        timeout=300,
    )
    return _AIRFLOW_HOME


@pytest.fixture()
def small_world() -> object:
    """A small simulated world (fast to backfill and train on, still ~0.5% fraud with every scenario)."""
    from fraudops.simulate import SimulationConfig

    return SimulationConfig(n_cards=4000, n_customers=3500, n_merchants=300, n_terminals=800)


@pytest.fixture()
def small_bootstrap_plan() -> object:
    """A first champion that trains in about a minute: 14 simulated days of a 4,000-card world."""
    from fraudops.stack.bootstrap import BootstrapPlan

    return BootstrapPlan(
        days=14, window_days=7, label_maturity_days=3, history_days=4, n_estimators=40, n_cards=4000
    )


@pytest.fixture(scope="session")
def intake_world(bq_emulator: Any) -> Iterator[dict[str, Any]]:
    """For model intake (``byom``/``browser`` tests): eight simulated days in a dataset of the
    session's emulator (what intake samples), and training data from the same world (point-in-time
    features of ``intake_models.INTAKE_FEATURES`` with their labels) to train uploaded models on."""
    import numpy as np
    from intake_models import INTAKE_FEATURES

    from fraudops.features import FeatureSpec, build_offline
    from fraudops.simulate import SimulationConfig, backfill, generate
    from fraudops.warehouse import Warehouse

    cfg = SimulationConfig(n_cards=1500, n_customers=1300, n_merchants=100, n_terminals=300)
    wh = Warehouse(replace(bq_emulator, dataset="intake_world"))
    wh.ensure_schema()
    backfill(wh, "2026-05-01", 8, 5, cfg)
    sim = generate("2026-05-01", 6, 5, cfg)
    spec = FeatureSpec.from_names(INTAKE_FEATURES)
    X = build_offline(sim.transactions, sim.labels, spec).loc[sim.transactions.transaction_id.to_numpy()]
    fraud = set(sim.labels.loc[sim.labels.is_fraud.astype(bool), "transaction_id"])
    y = sim.transactions.transaction_id.isin(fraud).astype(int).to_numpy()
    try:
        yield {"wh": wh, "X": X.to_numpy(dtype=np.float32), "y": y}
    finally:
        wh.drop_dataset()


# A headless Chromium (Debian's, driven by Selenium 4 through Debian's chromedriver) for the
# console's browser tests (tests/plugins, and the console release in tests/e2e).
@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "chromium and chromium-driver are installed by `make setup` (Debian)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1280,1400",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
