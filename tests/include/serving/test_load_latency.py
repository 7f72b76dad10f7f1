"""A new champion over its latency budget at load time (fresh-clone run 4 of round 2).

The scoring service verifies a bundle before it serves it, including its single-row p99 latency.
That measurement depends on how busy the host is: in run 4 a good model measured 3.08 ms against a
2 ms budget while a test suite shared the machine, was refused for good, and ``promote`` waited out
its timeout three times. Now a latency failure is measured again after a backoff and refused only
when it is over budget on every load; a refusal ends ``promote``'s wait at once.

Real MLflow server, real bundles, a real uvicorn server (``LiveServer``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_helpers import LiveServer, make_service, metric, register, tx, wait_for

from fraudops.exceptions import LatencyBudgetError, PermanentError
from fraudops.registry import set_alias
from fraudops.serving.app import create_app
from fraudops.serving.registry_faults import Backoff
from fraudops.serving.service import ScoringService

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


def _over_budget(src: Path, dest: Path) -> Path:
    """``src`` with a latency budget no model meets (the manifest is not among the hashed files)."""
    shutil.copytree(src, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["latency_budget_ms"] = 1e-6
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def _service(tmp: Path, name: str) -> ScoringService:
    """Three loads over budget refuse a version, measured again after 0.5–1 s."""
    service: ScoringService = make_service(tmp, name)
    service.latency_attempts = 3
    service.latency_backoff = Backoff(base_s=0.5, cap_s=1.0)
    return service


def test_a_champion_over_budget_on_every_load_is_measured_again_then_refused(
    fraudops_env: Path, mlflow_server: str, bundles: dict[str, Path], tmp_path: Path
) -> None:
    from fraudops.clients.scoring import champion_is, wait_for_service

    name = "latency-refused"
    va = register(bundles["a"], mlflow_server, name)
    vs = register(_over_budget(bundles["a"], tmp_path / "slow"), mlflow_server, name)
    set_alias(name, "champion", va, tracking_uri=mlflow_server)
    service = _service(tmp_path, name)
    server = LiveServer(create_app(service))
    try:
        client = httpx.Client(base_url=server.url, timeout=30)
        wait_for(lambda: client.get("/health").status_code == 200, 120, "champion loaded")
        set_alias(name, "champion", vs, tracking_uri=mlflow_server)
        key = f"champion@{vs}"

        def waiting() -> dict[str, Any]:
            return dict(client.get("/health").json()["registry"]["waiting"])

        wait_for(lambda: key in waiting(), 60, "the slow version measured again later")
        health = client.get("/health").json()
        # Still serving v{va}; a latency retry is not a registry outage.
        assert health["status"] == "ready" and health["champion"] == va, health
        assert health["registry"]["state"] == "ok", health["registry"]
        assert waiting()[key]["reason"] == "latency", waiting()
        error = waiting()[key]["error"]
        assert "LatencyBudgetError" in error and "best of 3 rounds" in error, error
        assert client.post("/score", json=tx(1)).json()["model_version"] == va

        wait_for(lambda: key in client.get("/version").json()["rejected"], 60, "refused after 3 loads")
        reason = client.get("/version").json()["rejected"][key]
        assert reason.startswith("LatencyBudgetError") and reason.endswith("on 3 loads"), reason
        assert key not in waiting()
        assert metric(client, 'fraudops_model_load_retries_total{alias="champion"}') == 2
        assert metric(client, 'fraudops_model_load_failures_total{alias="champion"}') == 1
        assert client.post("/score", json=tx(2)).json()["model_version"] == va

        # What ``promote`` waits on stops at once with the service's reason.
        with pytest.raises(PermanentError, match=f"refused {name} v{vs} as champion: LatencyBudgetError"):
            wait_for_service(server.url, champion_is(vs, name), f"champion v{vs}", timeout_s=60)
    finally:
        server.close()


def test_a_champion_over_budget_while_the_host_is_busy_loads_when_it_measures_within(
    fraudops_env: Path,
    mlflow_server: str,
    bundles: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first two loads measure over budget (as on a busy host); the third is within it: the
    version serves, nothing is refused. The measurement itself is the real one from the third load
    on; only the first two outcomes are forced, since a busy host cannot be made busy on cue."""
    name = "latency-busy"
    va = register(bundles["a"], mlflow_server, name)
    vb = register(bundles["b"], mlflow_server, name)
    set_alias(name, "champion", va, tracking_uri=mlflow_server)
    service = _service(tmp_path, name)
    real = service._build_slot
    loads: list[str] = []

    def busy_then_quiet(alias: str, version: str, scorer: bool) -> Any:
        loads.append(version)
        if version == vb and loads.count(vb) <= 2:
            raise LatencyBudgetError(3.0756, 2.0, rounds=3)
        return real(alias, version, scorer)

    monkeypatch.setattr(service, "_build_slot", busy_then_quiet)
    server = LiveServer(create_app(service))
    try:
        client = httpx.Client(base_url=server.url, timeout=30)
        wait_for(lambda: client.get("/health").status_code == 200, 120, "champion loaded")
        set_alias(name, "champion", vb, tracking_uri=mlflow_server)
        wait_for(
            lambda: (client.get("/version").json()["champion"] or {}).get("version") == vb,
            60,
            "the new champion loaded on its third load",
        )
        doc = client.get("/version").json()
        assert doc["rejected"] == {} and doc["registry"]["waiting"] == {}, doc
        assert loads.count(vb) == 3, loads
        assert metric(client, 'fraudops_model_load_retries_total{alias="champion"}') == 2
        assert metric(client, "fraudops_model_load_failures_total") == 0
        assert client.post("/score", json=tx(3)).json()["model_version"] == vb
    finally:
        server.close()
