"""The scale profile's parts that need no service (issue #20): its settings (hostile values
refused), the profile recorded by ``fraudops up --profile``, the HAProxy configuration (checked by
HAProxy itself), keepalive (restarts its child, stops on SIGTERM) and the feature router's
degraded mode when the shared state is unreachable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fraudops.exceptions import ConfigError


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FRAUDOPS_PROFILE", "huge"),
        ("FRAUDOPS_SCALE_REPLICAS", "0"),
        ("FRAUDOPS_SCALE_REPLICAS", "65"),
        ("FRAUDOPS_SCALE_REPLICAS", "three"),
        ("FRAUDOPS_SCALE_SHADOW_WORKERS", "-1"),
        ("FRAUDOPS_SCALE_CELERY_WORKERS", "0"),
        ("FRAUDOPS_SCALE_DEAD_LETTER_AFTER", "0"),
        ("FRAUDOPS_SCALE_REDIS_PORT", "6390; rm -rf /"),
    ],
)
def test_hostile_scale_settings_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    from fraudops.config import load_settings

    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name.removeprefix("FRAUDOPS_").split("_")[0]):
        load_settings()


def test_the_profile_is_recorded_and_the_scale_profile_brings_its_redis(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from fraudops.config import load_settings, profile_file

    monkeypatch.setenv("FRAUDOPS_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("FRAUDOPS_PROFILE", raising=False)
    monkeypatch.delenv("FRAUDOPS_REDIS_URL", raising=False)
    assert load_settings().profile == "local" and load_settings().redis_url == ""
    profile_file(tmp_path).parent.mkdir(parents=True)
    profile_file(tmp_path).write_text("scale")
    monkeypatch.setenv("FRAUDOPS_SCALE_REDIS_PORT", "7001")
    s = load_settings()
    assert s.profile == "scale" and s.redis_url == "redis://127.0.0.1:7001/0"
    assert s.scale.replica_ports() == [8101, 8102, 8103]
    monkeypatch.setenv("FRAUDOPS_PROFILE", "local")  # the environment wins over the record
    assert load_settings().profile == "local"


def test_haproxy_accepts_the_generated_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from fraudops.config import load_settings
    from fraudops.stack.scale import haproxy_config

    monkeypatch.setenv("FRAUDOPS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("FRAUDOPS_PROFILE", "scale")
    monkeypatch.setenv("FRAUDOPS_SCALE_REPLICAS", "4")
    text = haproxy_config(load_settings())
    assert text.count("    server scoring-") == 4
    assert "retry-on conn-failure empty-response response-timeout 503" in text
    assert "option http-buffer-request" in text
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    exe = "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else "haproxy"
    check = subprocess.run([exe, "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def _child(pid_file: Path) -> int:
    return int(json.loads(pid_file.read_text())["pid"])


def test_keepalive_restarts_its_child_and_stops_with_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fraudops.stack.keepalive",
            "--child-pid-file",
            str(pid_file),
            "--",
            sys.executable,
            "-c",
            "import time; time.sleep(600)",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists():
            assert time.monotonic() < deadline, "no child started"
            time.sleep(0.05)
        first = _child(pid_file)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not pid_file.exists() or _child(pid_file) == first:
            assert time.monotonic() < deadline, "the killed child was not started again"
            time.sleep(0.05)
        second = _child(pid_file)
        assert json.loads(pid_file.read_text())["restarts"] == 1
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        with pytest.raises(ProcessLookupError):
            os.kill(second, 0)  # the child got the SIGTERM too (reaped by keepalive)
        assert not pid_file.exists()
        assert "exited with code -9; starting it again" in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_router_scores_on_a_local_store_while_the_shared_state_is_unreachable() -> None:
    """Redis on a closed port: the first event finds it unreachable; scoring goes on with the
    features of a local store started at the outage, every event counted and kept for the replay."""
    from serving.serving_helpers import tx

    from fraudops.features.online import EmbeddedBackend, OnlineFeatureStore, RedisBackend
    from fraudops.features.spec import FeatureSpec
    from fraudops.serving.features import FeatureRouter
    from fraudops.serving.schema import ScoreRequest
    from fraudops.stack.process import free_port

    counted: list[int] = []
    router = FeatureRouter(
        backend=RedisBackend(f"redis://127.0.0.1:{free_port()}/0"), on_degraded=lambda: counted.append(1)
    )
    spec = FeatureSpec.default()
    router.store = OnlineFeatureStore(spec, EmbeddedBackend())
    router.store.backend = router.backend  # configured, then Redis (down) as its state
    router.union = spec
    router._slices = router._slices_for([spec])
    events = [ScoreRequest.model_validate(tx(i, card="c-1")).to_transaction() for i in range(5)]
    got = [router.compute(ev) for ev in events]
    local = OnlineFeatureStore(spec, EmbeddedBackend())
    assert got == [local.update_and_vector(ev) for ev in events]
    assert router.outage["degraded"] is True and router.outage["events"] == 5 and len(counted) == 5
    assert len(router._outage) == 5  # kept for the replay into Redis once it answers


def test_the_scale_profile_starts_its_services_in_dependency_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Redis before the replicas (their state), the replicas before HAProxy (it checks them), the
    shadow workers after Redis, PostgreSQL before Airflow, Celery workers after the scheduler."""
    from fraudops.config import load_settings
    from fraudops.stack.services import Stack, airflow_env

    monkeypatch.setenv("FRAUDOPS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("FRAUDOPS_PROFILE", "scale")
    monkeypatch.setenv("FRAUDOPS_SCALE_REPLICAS", "2")
    settings = load_settings()
    names = [s.name for s in Stack(settings).specs()]
    assert names == [
        "bigquery-emulator",
        "mlflow",
        "redis",
        "scoring-1",
        "scoring-2",
        "haproxy",
        "shadow-1",
        "shadow-2",
        "postgres",
        "airflow",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker-1",
        "airflow-worker-2",
    ]
    env = airflow_env(settings)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6390/1"  # not the state's db 0
    pw_file = tmp_path / "run" / "postgres_password"
    assert oct(pw_file.stat().st_mode & 0o777) == "0o600"
    monkeypatch.setenv("FRAUDOPS_PROFILE", "local")
    local = load_settings()
    assert [s.name for s in Stack(local).specs()][:3] == ["bigquery-emulator", "mlflow", "scoring"]
    assert airflow_env(local)["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
