"""The threshold a release chose travels with the version: the scoring service serves a version at
its ``served_threshold`` registry tag (set at promotion) instead of the manifest's, for the champion
and for shadow workers, and keeps the value cached with the bundle for when MLflow is down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_helpers import LiveServer, point, register, wait_for

from fraudops.config import load_settings
from fraudops.registry import SERVED_THRESHOLD_TAG, SERVED_TIE_SHARE_TAG, set_version_tag
from fraudops.serving.app import create_app
from fraudops.serving.models import SERVED_FILE, BundleCache
from fraudops.serving.options import ServingOptions
from fraudops.serving.service import ScoringService

pytestmark = pytest.mark.integration


def test_version_tag_is_the_served_threshold(
    fraudops_env: Path,
    warehouse: Any,
    bundles: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = load_settings().mlflow.tracking_uri
    name = "serve-threshold"
    tagged, plain = register(bundles["a"], uri, name), register(bundles["b"], uri, name)
    manifest = json.loads((bundles["b"] / "manifest.json").read_text())["decision_threshold"]
    set_version_tag(name, tagged, SERVED_THRESHOLD_TAG, "0.1234", tracking_uri=uri)
    set_version_tag(name, tagged, SERVED_TIE_SHARE_TAG, "0.25", tracking_uri=uri)
    point(warehouse, name, "champion", tagged, uri)
    point(warehouse, name, f"challenger-{plain}", plain, uri)
    options = ServingOptions(
        settings=load_settings(),
        alias_poll_s=0.3,
        warm_days=0,
        work_dir=tmp_path / "serving",
        shadow_sample_rate=0.0,
        log_flush_interval_s=0.2,
        event_clock="simulated",
    )
    service = ScoringService(options, warehouse=warehouse, model_name=name, shadow=False)
    server = LiveServer(create_app(service))
    try:
        client = httpx.Client(base_url=server.url, timeout=10)
        wait_for(lambda: client.get("/health").status_code == 200, 90, "champion loaded")
        doc = client.get("/version").json()
        assert doc["champion"]["version"] == tagged
        assert doc["champion"]["decision_threshold"] == pytest.approx(0.1234)
        assert doc["champion"]["tie_share"] == pytest.approx(0.25)
    finally:
        server.close()

    # Cached with the bundle: with the registry unreachable, the cached value is served.
    cache = BundleCache(options.root / "bundles", uri)
    assert json.loads((cache.root / name / tagged / SERVED_FILE).read_text()) == {
        SERVED_THRESHOLD_TAG: 0.1234,
        SERVED_TIE_SHARE_TAG: 0.25,
    }
    assert cache.served_threshold(name, plain) is None  # no tag: the manifest's threshold
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    from fraudops.stack.process import free_port

    offline = BundleCache(options.root / "bundles", f"http://127.0.0.1:{free_port()}")
    assert offline.served_threshold(name, tagged) == pytest.approx(0.1234)
    assert offline.cached_tie_share(name, tagged) == pytest.approx(0.25)
    assert offline.served_threshold(name, "999") is None
    # A shadow slot (no scorer loaded) carries the tag too, else the manifest's threshold.
    slot = service._load(f"challenger-{plain}", plain, scorer=False)
    assert slot is not None and slot.threshold == pytest.approx(float(manifest))
    set_version_tag(name, plain, SERVED_THRESHOLD_TAG, "0.2", tracking_uri=uri)
    slot = service._load(f"challenger-{plain}", plain, scorer=False)
    assert slot is not None and slot.threshold == pytest.approx(0.2)
    assert service.cache.cached_tie_share(name, plain) == 1.0  # no tie share tag: all ties declined
    for hostile in ("7", "0", "nan", "half"):  # out of range or not a number: ignored
        set_version_tag(name, plain, SERVED_TIE_SHARE_TAG, hostile, tracking_uri=uri)
        assert service.cache.served_threshold(name, plain) == pytest.approx(0.2)
        assert service.cache.cached_tie_share(name, plain) == 1.0
