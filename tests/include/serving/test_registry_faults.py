"""The scoring service when the model registry (MLflow) goes away (issue #18, findings 7 and 9).

Real processes only: each test gets its own MLflow registry server (SQLite) whose artifacts live on
a separate MLflow artifact server (``mlflow server --artifacts-only``), so the tests can stop the
whole registry, or only the store a new version's bundle is fetched from, and start it again on
the same port with the same data. The MLflow client is told to fail fast
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``), as ``fraudops serve`` configures it: the service retries
on its own schedule instead of inside one client call.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_helpers import LiveServer, make_service, metric, point, register, tx, wait_for

from fraudops.registry import get_alias_version, set_alias
from fraudops.serving.app import create_app
from fraudops.stack import process
from fraudops.stack.process import ServiceSpec

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
TOKEN = "faults-token"


@dataclass
class SplitMlflow:
    """A registry server and the artifact server its bundles live on (both restartable)."""

    registry: ServiceSpec
    artifacts: ServiceSpec

    @property
    def url(self) -> str:
        return self.registry.url


def _mlflow(name: str, root: Path, port: int, args: list[str], auth: Any) -> ServiceSpec:
    from fraudops.stack.services import mlflow_spec

    return mlflow_spec(root, root, root, "127.0.0.1", port, name=name, store_args=args, auth=auth)


@pytest.fixture()
def split_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_test_auth: Any
) -> Iterator[SplitMlflow]:
    art_port, reg_port = process.free_port(), process.free_port()
    artifacts = _mlflow(
        "mlflow-artifacts",
        tmp_path / "mlflow-artifacts",
        art_port,
        [
            "--artifacts-only",
            "--serve-artifacts",
            "--artifacts-destination",
            str(tmp_path / "artifact-store"),
        ],
        mlflow_test_auth,
    )
    registry = _mlflow(
        "mlflow-registry",
        tmp_path / "mlflow-registry",
        reg_port,
        [
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'mlflow-registry' / 'mlflow.db'}",
            "--no-serve-artifacts",
            "--default-artifact-root",
            f"mlflow-artifacts://127.0.0.1:{art_port}/",
        ],
        mlflow_test_auth,
    )
    process.start(artifacts)
    try:
        process.start(registry)
        monkeypatch.setenv("FRAUDOPS_MLFLOW_TRACKING_URI", registry.url)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.url)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        yield SplitMlflow(registry, artifacts)
    finally:
        process.stop(registry)
        process.stop(artifacts)


def _champion(client: httpx.Client) -> str | None:
    return (client.get("/version").json()["champion"] or {}).get("version")


def test_a_registry_outage_while_loading_is_retried_and_a_broken_bundle_stays_rejected(
    split_mlflow: SplitMlflow, bundles: dict[str, Path], tmp_path: Path
) -> None:
    """Finding 7: the artifact store is down while a new champion is fetched; it comes back and
    the version loads without a restart. A bundle that fails verification is refused for good."""
    uri, name = split_mlflow.url, "faults-retry"
    va, vb = register(bundles["a"], uri, name), register(bundles["b"], uri, name)
    vx = register(bundles["broken"], uri, name)
    set_alias(name, "champion", va, tracking_uri=uri)
    service = make_service(tmp_path, name)
    server = LiveServer(create_app(service))
    try:
        client = httpx.Client(base_url=server.url, timeout=30)
        wait_for(lambda: client.get("/health").status_code == 200, 120, "champion loaded")

        process.stop(split_mlflow.artifacts)  # the store v{vb}'s bundle is fetched from goes away
        set_alias(name, "champion", vb, tracking_uri=uri)
        key = f"champion@{vb}"

        def waiting() -> dict[str, Any]:
            return dict(client.get("/health").json().get("registry", {}).get("waiting", {}))

        wait_for(lambda: key in waiting(), 60, "the new champion waiting for the registry")
        health = client.get("/health").json()
        assert health["status"] == "ready" and health["champion"] == va, health
        assert health["registry"]["state"] == "waiting for registry", health
        assert waiting()[key]["reason"] == "connection", waiting()
        # Backoff: tried again (1 s, 2 s, ... with jitter), never given up on.
        wait_for(lambda: waiting().get(key, {}).get("attempts", 0) >= 2, 30, "a second attempt")
        doc = client.get("/version").json()
        assert key not in doc["rejected"], doc["rejected"]
        assert client.post("/score", json=tx(1)).json()["model_version"] == va
        unavailable = 'fraudops_registry_unavailable_total{operation="load",reason="connection"}'
        assert metric(client, unavailable) >= 2
        assert metric(client, "fraudops_model_load_failures_total") == 0

        process.start(split_mlflow.artifacts)  # ... and comes back: no restart of the service
        t0 = time.perf_counter()
        attempts = waiting().get(key, {}).get("attempts", "all")
        wait_for(lambda: _champion(client) == vb, 120, "the new champion loaded after the outage")
        print(
            f"\nv{vb} serving {time.perf_counter() - t0:.1f} s after the artifact store answered again "
            f"({attempts} failed attempts, backoff 1 s doubling to 60 s)"
        )
        registry = client.get("/health").json()["registry"]
        assert registry["state"] == "ok" and registry["waiting"] == {}, registry
        assert client.post("/score", json=tx(2)).json()["model_version"] == vb

        set_alias(name, "champion", vx, tracking_uri=uri)  # NaN on every row: verification refuses it
        bad = f"champion@{vx}"
        wait_for(lambda: bad in client.get("/version").json()["rejected"], 120, "broken bundle rejected")
        reason = client.get("/version").json()["rejected"][bad]
        assert reason.startswith("ArtifactError") and "NaN" in reason, reason
        before = metric(client, unavailable)
        time.sleep(3.0)  # ten polls: a broken bundle is not retried
        assert bad not in waiting() and _champion(client) == vb
        assert metric(client, 'fraudops_model_load_failures_total{alias="champion"}') == 1
        assert metric(client, unavailable) == before
    finally:
        server.close()


def test_rollback_runs_from_the_local_cache_with_mlflow_down(
    split_mlflow: SplitMlflow, warehouse: Any, bundles: dict[str, Path], tmp_path: Path
) -> None:
    """Finding 9: with MLflow down, ``/deploy`` rolls back to the previous champion (loaded) and to
    an older one (bundle cache), audited; what it cannot do is a 503 naming the problem; when
    MLflow is back the registry alias follows the rollback and the service stays on it."""
    uri, name = split_mlflow.url, "faults-rollback"
    va, vb, vc = (register(bundles[k], uri, name) for k in ("a", "b", "a"))
    vd = register(bundles["b"], uri, name)  # never deployed: not in the service's cache
    point(warehouse, name, "champion", va, uri)
    service = make_service(tmp_path, name, warehouse)
    server = LiveServer(create_app(service, deploy_token=TOKEN))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        client = httpx.Client(base_url=server.url, timeout=60)
        wait_for(lambda: client.get("/health").status_code == 200, 120, "champion loaded")
        for v in (vb, vc):
            body = {"modelId": name, "version": v, "deploymentMode": "production", "reason": "release"}
            assert client.post("/deploy", json=body, headers=auth).status_code == 200
            wait_for(lambda v=v: _champion(client) == v, 120, f"champion v{v}")
        assert client.get("/version").json()["previous"]["version"] == vb  # va: only on disk now

        process.stop(split_mlflow.registry)  # MLflow is down
        process.stop(split_mlflow.artifacts)

        t0 = time.perf_counter()
        r = client.post("/deploy", json={"modelId": name, "deploymentMode": "rollback"}, headers=auth)
        assert r.status_code == 200, r.text
        wait_for(lambda: _champion(client) == vb, 10, "previous champion serving")
        to_previous = time.perf_counter() - t0
        assert r.json()["version"] == vb and r.json()["registry"] == "pending", r.json()
        assert client.post("/score", json=tx(1)).json()["model_version"] == vb

        t0 = time.perf_counter()
        body = {"modelId": name, "version": va, "deploymentMode": "rollback", "reason": "older"}
        r = client.post("/deploy", json=body, headers=auth)
        assert r.status_code == 200, r.text
        wait_for(lambda: _champion(client) == va, 30, "cached older champion serving")
        to_cached = time.perf_counter() - t0
        print(
            f"\nMLflow down: previous champion v{vb} serving {to_previous:.2f} s after POST /deploy; "
            f"v{va} from the bundle cache {to_cached:.2f} s after"
        )
        assert to_previous < 5.0 and to_cached < 20.0

        # What needs the registry is a 503 that says so.
        for mode, v in (("rollback", vd), ("production", vb)):
            r = client.post(
                "/deploy", json={"modelId": name, "version": v, "deploymentMode": mode}, headers=auth
            )
            assert r.status_code == 503, (mode, r.status_code, r.text)
            doc = r.json()
            assert doc["error"] == "model registry unreachable" and doc["reason"] == "connection", doc
            assert f"v{v}" in doc["detail"], doc
        assert "not in this service's bundle cache" in doc["detail"] or mode == "production"
        assert _champion(client) == va
        health = client.get("/health").json()
        assert health["registry"]["state"] == "waiting for registry", health
        assert [m["version"] for m in health["registry"]["pending_rollbacks"]] == [vb, va], health

        process.start(split_mlflow.artifacts)  # MLflow is back: the alias follows the rollbacks
        process.start(split_mlflow.registry)
        wait_for(lambda: get_alias_version(name, "champion", tracking_uri=uri) == va, 60, "alias moved")
        wait_for(lambda: client.get("/health").json()["registry"]["state"] == "ok", 30, "reconciled")
        time.sleep(1.5)  # several polls: the service stays on the rollback
        assert _champion(client) == va
        rows = warehouse.query(
            "SELECT model_version, previous_version, action, state FROM deployments "
            "WHERE model_name = @n AND action = 'rollback' ORDER BY deployed_at",
            {"n": name},
        )
        assert rows == [
            {"model_version": vb, "previous_version": vc, "action": "rollback", "state": "applied"},
            {"model_version": va, "previous_version": vb, "action": "rollback", "state": "applied"},
        ], rows
    finally:
        server.close()


def test_unreachable_is_told_apart_from_broken(
    bundles: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What MLflow's client really raises against a closed loopback port is "unreachable"; a bundle
    that fails verification is "broken"; the backoff doubles from 1 s, capped at 60 s, jittered."""
    from mlflow.tracking import MlflowClient

    from fraudops.registry import download_artifact_dir
    from fraudops.serving.registry_faults import Backoff, unavailable_reason
    from fraudops.training.package import verify_artifact

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    closed = f"http://127.0.0.1:{process.free_port()}"
    with pytest.raises(Exception) as poll:
        MlflowClient(tracking_uri=closed, registry_uri=closed).get_registered_model("m")
    assert unavailable_reason(poll.value) == "connection", repr(poll.value)
    with pytest.raises(Exception) as fetch:
        download_artifact_dir("m", "1", tmp_path / "dl", tracking_uri=closed, verify=False)
    assert unavailable_reason(fetch.value) == "connection", repr(fetch.value)
    with pytest.raises(Exception) as broken:
        verify_artifact(bundles["broken"])
    assert unavailable_reason(broken.value) is None, repr(broken.value)

    backoff = Backoff()
    assert [backoff.delay(n, lambda: 1.0) for n in (1, 2, 3, 7, 8, 30)] == [1, 2, 4, 60, 60, 60]
    assert [backoff.delay(n, lambda: 0.0) for n in (1, 2, 8)] == [0.5, 1, 30]
