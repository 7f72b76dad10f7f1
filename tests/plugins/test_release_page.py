"""The release page inside Airflow: a real api-server loads the plugin, serves the page from the
emulator's data, lists it in the UI's navigation, and headless Chromium renders it (screenshot)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DAY = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)


def _seed(warehouse: Any) -> None:
    served = dt.datetime.now(dt.UTC)
    warehouse.upsert(
        "predictions",
        [
            {
                "transaction_id": f"t{i}",
                "model_name": "page-model",
                "model_version": "1",
                "mode": "production",
                "score": 0.9 if i % 7 == 0 else 0.05,
                "decision": "decline" if i % 7 == 0 else "approve",
                "amount": 50.0 + i,
                "event_time": DAY + dt.timedelta(hours=i),
                "served_at": served,
                "fallback": False,
            }
            for i in range(120)
        ],
    )
    warehouse.upsert(
        "labels",
        [
            {"transaction_id": f"t{i}", "event_time": DAY, "label_time": served, "is_fraud": True}
            for i in range(0, 120, 5)
        ],
    )
    warehouse.upsert(
        "gate_decisions",
        [
            {
                "decision_id": "d1",
                "model_name": "page-model",
                "challenger_version": "2",
                "champion_version": "1",
                "stage": "promotion",
                "policy_version": "p1",
                "status": "promote",
                "reason": "all checks passed: ΔAP +0.0800",
                "evidence": '{"evidence": {"quality": {"ap_incumbent": 0.3, "ap_candidate": 0.38, '
                '"ap_delta": 0.08, "capture_incumbent": 0.6, "capture_candidate": 0.7, '
                '"fpr_incumbent": 0.004, "fpr_candidate": 0.003}}}',
                "decided_at": served,
            }
        ],
    )


@pytest.fixture()
def api_server(airflow_db: Path, warehouse: Any, mlflow_server: str, session_tmp: Path) -> Iterator[str]:
    from fraudops.stack.process import free_port

    port = free_port()
    cfg = warehouse.cfg
    env = {
        **os.environ,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
        "FRAUDOPS_BQ_PROJECT": cfg.project,
        "FRAUDOPS_BQ_DATASET": cfg.dataset,
        "FRAUDOPS_BQ_ENDPOINT": cfg.endpoint,
        "FRAUDOPS_MLFLOW_TRACKING_URI": mlflow_server,
        "FRAUDOPS_MODEL_NAME": "page-model",
        "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), os.environ.get("PYTHONPATH", "")]),
    }
    log = (session_tmp / "api-server.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "airflow"), "api-server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=3).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"api-server did not start; see {log.name}")
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)
        log.close()


def test_release_page_in_airflow_with_a_chromium_screenshot(
    api_server: str, warehouse: Any, tmp_path: Path
) -> None:
    _seed(warehouse)
    page = httpx.get(f"{api_server}/fraudops/releases", timeout=60)
    assert page.status_code == 200, page.text[:500]
    html = page.text
    assert "fraudops releases — page-model" in html
    assert 'class="promote">promote' in html and "ΔAP +0.0800" in html
    assert html.count("data:image/png;base64,") == 2
    data = httpx.get(f"{api_server}/fraudops/releases.json", timeout=60).json()
    assert data["decisions"][0]["status"] == "promote" and len(data["daily"]) == 5

    # Airflow's UI gets the nav entry that embeds the page.
    token = httpx.get(f"{api_server}/auth/token", timeout=10, follow_redirects=True)
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"} if token.status_code < 300 else {}
    plugins = httpx.get(f"{api_server}/api/v2/plugins", headers=headers, timeout=30).json()["plugins"]
    mine = next(p for p in plugins if p["name"] == "fraudops_releases")
    assert mine["external_views"][0]["url_route"] == "fraudops-releases"
    assert mine["fastapi_apps"][0]["url_prefix"] == "/fraudops"

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is installed by `make setup` (Debian package)"
    shot = tmp_path / "releases.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--window-size=1280,1600",
            f"--screenshot={shot}",
            f"{api_server}/fraudops/releases",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 1600)
    colors = img.getcolors(maxcolors=1 << 20) or []
    # A rendered page with text and two charts: many distinct colours, mostly white background,
    # and the charts' blue/orange series present (a blank or error page has neither).
    assert len(colors) > 200
    pixels = list(img.getdata())
    white = sum(1 for p in pixels if p == (255, 255, 255)) / len(pixels)
    assert 0.3 < white < 0.98
    blue = sum(1 for r, g, b in pixels if b > 150 and r < 80 and 90 < g < 150)
    orange = sum(1 for r, g, b in pixels if r > 230 and 100 < g < 160 and b < 60)
    assert blue > 500 and orange > 500, (blue, orange)
