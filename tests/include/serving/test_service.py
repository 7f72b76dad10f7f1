"""The scoring service against real MLflow and the BigQuery emulator, over real HTTP (uvicorn).

Covers: hot swap under load with zero failed requests, the control API (401/403/200 + audit row),
fallback on a broken champion, rejection of an unverifiable version, crashing and hanging shadow
workers with production unaffected, and a BigQuery outage with spool + replay counting exactly.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_helpers import NAN_ABOVE, LiveServer, make_service, point, register, tx, wait_for

from fraudops.config import load_settings
from fraudops.serving.app import create_app

pytestmark = pytest.mark.integration
TOKEN = "test-token-123"
#: A CI job's token that may put challengers in shadow and nothing else.
SHADOW_ONLY = "shadow-only-token-456"
SCOPED = json.dumps({"ci-bot": {"token": SHADOW_ONLY, "scopes": ["shadow"]}})


def _serve(service: Any, live: list[LiveServer]) -> httpx.Client:
    """``service`` behind a live server with the control API (closed when the test ends) and a
    client, once a champion is loaded."""
    server = LiveServer(create_app(service, deploy_token=TOKEN, deploy_tokens=SCOPED))
    live.append(server)
    client = httpx.Client(base_url=server.url, timeout=10)
    wait_for(lambda: client.get("/health").status_code == 200, 90, "champion loaded")
    return client


def _version(client: httpx.Client) -> dict[str, Any]:
    doc: dict[str, Any] = client.get("/version").json()
    return doc


def test_hot_swap_under_load_and_deploy_api(
    fraudops_env: Path, warehouse: Any, bundles: dict[str, Path], live: list[LiveServer], tmp_path: Path
) -> None:
    uri = load_settings().mlflow.tracking_uri
    name = "serve-swap"
    va, vb = register(bundles["a"], uri, name), register(bundles["b"], uri, name)
    point(warehouse, name, "champion", va, uri)
    service = make_service(tmp_path, name, warehouse)
    client = _serve(service, live)

    results: list[tuple[int, str | None]] = []
    per_thread: dict[int, list[str | None]] = {0: [], 1: []}
    stop = threading.Event()

    def fire(k: int) -> None:
        with httpx.Client(base_url=client.base_url, timeout=10) as c:
            i = 0
            while not stop.is_set():
                i += 1
                r = c.post("/score", json=tx(1_000_000 * k + i))
                body = r.json()
                results.append((r.status_code, body.get("model_version")))
                if not body.get("fallback"):  # a fallback is answered by the previous version on purpose
                    per_thread[k].append(body.get("model_version"))

    threads = [threading.Thread(target=fire, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        body = {"modelId": name, "version": vb, "deploymentMode": "production", "reason": "test"}
        assert client.post("/deploy", json=body).status_code == 401
        assert client.post("/deploy", json=body, headers={"Authorization": "Bearer nope"}).status_code == 403
        r = client.post("/deploy", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200, r.text
        assert r.json()["previousVersion"] == va and r.json()["moved"] is True
        wait_for(lambda: (_version(client)["champion"] or {}).get("version") == vb, 90, "swap to b")
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    statuses = [s for s, _ in results]
    assert len(results) > 50 and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    # Each client sees one clean cut-over (the two clients' responses interleave arbitrarily).
    for versions in per_thread.values():
        assert versions[0] == va and versions[-1] == vb
        assert va not in versions[versions.index(vb) :]
    assert _version(client)["previous"]["version"] == va  # kept loaded for fallback

    rows = warehouse.query(
        "SELECT alias, model_version, previous_version, action FROM deployments WHERE model_name = @n "
        "ORDER BY deployed_at",
        {"n": name},
    )
    assert rows == [  # the test's own first move (audited, as every move must be), then /deploy's
        {"alias": "champion", "model_version": va, "previous_version": None, "action": "promote"},
        {"alias": "champion", "model_version": vb, "previous_version": va, "action": "promote"},
    ]
    # A scoped token: may shadow, may not promote or roll back; its rows name it, not the body's actor.
    scoped = {"Authorization": f"Bearer {SHADOW_ONLY}"}
    refused = client.post("/deploy", json={**body, "version": va}, headers=scoped)
    assert refused.status_code == 403, refused.text
    assert "the token of 'ci-bot' may not deploy in production mode (scopes: shadow)" in refused.text
    back = {"modelId": name, "deploymentMode": "rollback"}
    assert client.post("/deploy", json=back, headers=scoped).status_code == 403
    shadow = {"modelId": name, "version": va, "deploymentMode": "shadow", "actor": "rita"}
    r = client.post("/deploy", json=shadow, headers=scoped)
    assert r.status_code == 200, r.text
    moved = warehouse.query(
        "SELECT alias, action, actor FROM deployments WHERE model_name = @n ORDER BY deployed_at", {"n": name}
    )
    assert moved[2:] == [{"alias": f"challenger-{va}", "action": "shadow", "actor": "token:ci-bot"}]
    assert len(moved) == 3  # the refused promotion and rollback moved nothing
    # Bad deploy bodies name their fields; unknown versions are 404.
    bad = client.post(
        "/deploy",
        json={"modelId": name, "deploymentMode": "sideways"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "deploymentMode"
    missing = {"modelId": name, "version": "999", "deploymentMode": "shadow"}
    assert (
        client.post("/deploy", json=missing, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
    )
    metrics = client.get("/metrics").text
    assert (
        f'fraudops_model_latency_seconds_bucket{{le="0.001",mode="production",model_version="{vb}"}}'
        in metrics
    )
    assert "fraudops_request_latency_seconds_count" in metrics


def test_fallback_on_a_broken_champion_and_rejected_bundle(
    fraudops_env: Path, warehouse: Any, bundles: dict[str, Path], live: list[LiveServer], tmp_path: Path
) -> None:
    uri = load_settings().mlflow.tracking_uri
    name = "serve-fallback"
    va = register(bundles["a"], uri, name)
    vf = register(bundles["fragile"], uri, name)
    vx = register(bundles["broken"], uri, name)
    point(warehouse, name, "champion", va, uri)
    service = make_service(tmp_path, name, warehouse)
    client = _serve(service, live)

    point(warehouse, name, "champion", vf, uri)  # passes verification: NaN only on huge amounts
    wait_for(lambda: (_version(client)["champion"] or {}).get("version") == vf, 90, "swap to fragile")
    ok = client.post("/score", json=tx(1, amount=120.0)).json()
    assert ok["model_version"] == vf and ok["fallback"] is False
    r = client.post("/score", json=tx(2, amount=NAN_ABOVE * 2))
    assert r.status_code == 200
    fb = r.json()
    assert fb["model_version"] == va and fb["fallback"] is True and 0.0 <= fb["score"] <= 1.0
    metrics = client.get("/metrics").text
    assert f'fraudops_fallbacks_total{{model_version="{vf}",reason="nan"}} 1.0' in metrics

    point(warehouse, name, "champion", vx, uri)  # NaN everywhere: verification must refuse it
    wait_for(lambda: f"champion@{vx}" in _version(client)["rejected"], 90, "broken bundle rejected")
    assert _version(client)["champion"]["version"] == vf
    assert client.post("/score", json=tx(3)).json()["model_version"] == vf
    assert 'fraudops_model_load_failures_total{alias="champion"} 1.0' in client.get("/metrics").text

    service.writer.flush()
    rows = warehouse.query(
        "SELECT transaction_id, model_version, fallback, error FROM predictions WHERE transaction_id = 'tx-2'"
    )
    assert rows == [
        {"transaction_id": "tx-2", "model_version": va, "fallback": True, "error": f"champion v{vf}: nan"}
    ]


@pytest.mark.slow
def test_crashing_and_hanging_shadow_workers_leave_production_alone(
    fraudops_env: Path, warehouse: Any, bundles: dict[str, Path], live: list[LiveServer], tmp_path: Path
) -> None:
    uri = load_settings().mlflow.tracking_uri
    name = "serve-shadow"
    va, vb = register(bundles["a"], uri, name), register(bundles["b"], uri, name)
    point(warehouse, name, "champion", va, uri)
    for alias in ("challenger-ok", "challenger-crash", "challenger-hang"):
        point(warehouse, name, alias, vb, uri)
    service = make_service(
        tmp_path, name, warehouse, shadow=True, shadow_sample_rate=1.0, shadow_hang_timeout_s=1.5
    )
    assert service.shadow is not None
    service.shadow.faults.update({"challenger-crash": "crash", "challenger-hang": "hang"})
    client = _serve(service, live)
    wait_for(lambda: len(_version(client)["challengers"]) == 3, 90, "three workers")
    wait_for(
        lambda: _version(client)["challengers"]["challenger-ok"]["state"] == "running", 120, "ok worker up"
    )

    latencies, statuses = [], []
    t_end = time.monotonic() + 6.0
    i = 0
    while time.monotonic() < t_end:
        i += 1
        r = client.post("/score", json=tx(i))
        statuses.append(r.status_code)
        latencies.append(float(r.headers["X-Score-Latency-Ms"]))
        time.sleep(0.005)
    status = _version(client)["challengers"]
    assert set(statuses) == {200}
    assert status["challenger-crash"]["restarts"] >= 1, status
    assert status["challenger-hang"]["restarts"] >= 1, status
    assert status["challenger-ok"]["processed"] > 0 and status["challenger-ok"]["restarts"] == 0, status
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    assert p99 < 25.0, f"production p99 {p99:.2f} ms with failing challengers (shared 2-core machine)"
    metrics = client.get("/metrics").text
    assert 'fraudops_shadow_restarts_total{alias="challenger-crash",reason="crashed"}' in metrics
    assert 'fraudops_shadow_restarts_total{alias="challenger-hang",reason="hung"}' in metrics
    service.writer.flush()
    wait_for(
        lambda: (
            warehouse.query(
                "SELECT COUNT(*) AS n FROM predictions WHERE mode = 'shadow' AND alias = 'challenger-ok'"
            )[0]["n"]
            > 0
        ),
        30,
        "shadow predictions logged",
    )
    # Events a crashed worker could not take are logged as shed rows (no score), not lost.
    shed = warehouse.query(
        "SELECT COUNT(*) AS n, COUNTIF(score IS NOT NULL) AS scored FROM predictions "
        "WHERE mode = 'shadow' AND alias = 'challenger-crash' AND error = 'shed:down'"
    )[0]
    assert shed["n"] > 0 and shed["scored"] == 0, shed


def test_bigquery_outage_spools_and_replays_exactly(
    fraudops_env: Path, bundles: dict[str, Path], live: list[LiveServer], tmp_path: Path
) -> None:
    from fraudops.config import WarehouseConfig
    from fraudops.stack import process
    from fraudops.stack.services import bqemulator_spec
    from fraudops.warehouse import Warehouse

    uri = load_settings().mlflow.tracking_uri
    name = "serve-outage"
    va = register(bundles["a"], uri, name)
    port, grpc = process.free_port(), process.free_port()
    spec = bqemulator_spec(tmp_path / "bq", tmp_path / "logs", tmp_path / "run", "outage-test", port, grpc)
    process.start(spec)
    try:
        wh = Warehouse(
            WarehouseConfig(
                project="outage-test", dataset="fraud", endpoint=f"http://127.0.0.1:{port}", timeout_s=3.0
            )
        )
        wh.ensure_schema()
        point(wh, name, "champion", va, uri)
        service = make_service(tmp_path, name, wh, log_retry_interval_s=0.5)
        client = _serve(service, live)
        for i in range(100):
            assert client.post("/score", json=tx(i)).status_code == 200
        service.writer.flush()
        assert wh.count("predictions") == 100

        process.stop(spec)  # BigQuery goes away; scoring must not notice
        t0 = time.perf_counter()
        for i in range(100, 300):
            assert client.post("/score", json=tx(i)).status_code == 200
        assert time.perf_counter() - t0 < 30
        service.writer.flush()
        during = service.writer.snapshot()
        # Every row is spooled before its answer; the 200 of the outage wait on disk.
        assert during.spooled_rows == 300 and during.written == 100 and during.pending_files >= 1

        process.start(spec)  # ... and comes back: the writer's thread replays on its own
        for i in range(250, 320):  # more traffic meanwhile, some of it re-sent (a client retry)
            assert client.post("/score", json=tx(i)).status_code == 200
        wait_for(lambda: service.writer.snapshot().pending_files == 0, 90, "spool replayed")
        service.writer.flush()
        after = service.writer.snapshot()
        # Every spooled row was shipped, the outage's 200 as replays (re-sent rows: still exact).
        assert after.pending_files == 0 and after.buffered == 0
        assert after.written == after.spooled_rows == 370 and after.replayed_rows >= 200
        rows = wh.query("SELECT COUNT(*) AS n, COUNT(DISTINCT transaction_id) AS k FROM predictions")
        assert rows == [{"n": 320, "k": 320}]
    finally:
        process.stop(spec)


@pytest.mark.reliability
def test_an_alias_moved_outside_the_platform_is_not_served(
    fraudops_env: Path, warehouse: Any, bundles: dict[str, Path], live: list[LiveServer], tmp_path: Path
) -> None:
    """Issue #18, finding 10: whoever reaches MLflow and moves ``champion`` without the platform's
    audit row (here: the registry API directly) does not get their version served; the service
    keeps the audited champion, counts and reports the refusal, and serves the version once a
    platform move records it. Moving the alias back to an older, once-audited version is refused
    too: only the newest row of the alias counts."""
    from serving_helpers import metric

    from fraudops.registry import set_alias

    uri = load_settings().mlflow.tracking_uri
    name = "serve-audit"
    va, vb = register(bundles["a"], uri, name), register(bundles["b"], uri, name)
    point(warehouse, name, "champion", va, uri)
    service = make_service(tmp_path, name, warehouse)
    client = _serve(service, live)

    def waiting() -> dict[str, Any]:
        return dict(client.get("/health").json()["registry"]["waiting"])

    set_alias(name, "champion", vb, tracking_uri=uri)  # no intent, no row
    wait_for(lambda: f"champion@{vb}" in waiting(), 30, "the unaudited version refused")
    health = client.get("/health").json()
    assert health["status"] == "ready" and health["champion"] == va, health
    assert health["registry"]["state"] == "ok", health  # not the registry's fault
    refused = waiting()[f"champion@{vb}"]
    assert refused["reason"] == "unaudited alias move" and f"newest audit row names v{va}" in refused["error"]
    time.sleep(3 * 0.3)  # several alias polls: still the audited champion, counted once
    assert _version(client)["champion"]["version"] == va
    assert client.post("/score", json=tx(1)).json()["model_version"] == va
    assert metric(client, 'fraudops_unaudited_alias_moves_total{alias="champion"}') == 1

    point(warehouse, name, "champion", vb, uri)  # the platform adopts the move: a row names vb
    wait_for(lambda: _version(client)["champion"]["version"] == vb, 60, "audited version served")
    assert f"champion@{vb}" not in waiting()

    set_alias(name, "champion", va, tracking_uri=uri)  # back to an older, once-audited version
    wait_for(lambda: f"champion@{va}" in waiting(), 30, "the move back refused")
    assert _version(client)["champion"]["version"] == vb
    assert client.post("/score", json=tx(2)).json()["model_version"] == vb
