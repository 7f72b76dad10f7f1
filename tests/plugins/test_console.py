"""The model console in a real browser (issue #19): Airflow's API server, scheduler and DAG processor
with the fraudops plugin, users of three roles, headless Chromium driven by Selenium 4 through
Debian's chromedriver. A data scientist uploads a skops model and sees intake pass; the release
starts; a viewer's upload is refused (403) in the console and in the API; every action is audited.
Screenshots go to ``test-artifacts/console/``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow_ui import airflow_token, bearer, sign_in
from intake_models import INTAKE_FEATURES, skops_pipeline

pytestmark = [pytest.mark.browser, pytest.mark.byom, pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "console"
USERS = "admin:admin,rita:op,dana:user,vic:viewer"


@pytest.fixture()
def console_stack(
    fraudops_env: Path, intake_world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    from fraudops.config import load_settings
    from fraudops.stack import process
    from fraudops.stack.process import free_port
    from fraudops.stack.services import airflow_specs

    for key in [k for k in os.environ if k.startswith("AIRFLOW")]:
        monkeypatch.delenv(key)  # the tests' private Airflow settings are not the stack's
    monkeypatch.setenv("FRAUDOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FRAUDOPS_AIRFLOW_PORT", str(free_port()))
    monkeypatch.setenv("FRAUDOPS_BQ_DATASET", intake_world["wh"].cfg.dataset)
    monkeypatch.setenv("FRAUDOPS_MODEL_NAME", "console-model")
    monkeypatch.setenv("FRAUDOPS_AIRFLOW_USERS", USERS)
    monkeypatch.setenv("FRAUDOPS_MAX_UPLOAD_MB", "1")
    settings = load_settings()
    specs = [s for s in airflow_specs(settings) if s.name != "airflow-triggerer"]
    try:
        for spec in specs:
            process.start(spec)
        passwords = json.loads(
            (settings.airflow_home / "simple_auth_manager_passwords.json.generated").read_text()
        )
        url = settings.airflow.url
        # Unpaused once the DAG processor has parsed fraud_release (the candidate Asset alone is
        # not enough: fraud_retrain's outlet registers it too, and the 2026-12-07 CI run patched a
        # DAG that did not exist yet, so it stayed paused and the upload started no run).
        deadline, paused = time.monotonic() + 240, True
        while paused and time.monotonic() < deadline:
            token = airflow_token(url, "admin", passwords["admin"])
            got = httpx.patch(
                f"{url}/api/v2/dags/fraud_release", json={"is_paused": False}, headers=bearer(token)
            )
            paused = not (got.status_code == 200 and got.json().get("is_paused") is False)
            if paused:
                time.sleep(2)
        assert not paused, (
            f"fraud_release was not parsed and unpaused within 240 s: {got.status_code} {got.text}"
        )
        yield {"url": url, "passwords": passwords, **intake_world}
    finally:
        for spec in reversed(specs):
            process.stop(spec)


def _outcome(driver: Any, timeout_s: float = 180) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout_s).until(
        lambda d: d.find_element(By.ID, "outcome").get_attribute("data-status") not in (None, "")
    )
    return str(driver.find_element(By.ID, "outcome").text)


def _upload(driver: Any, path: Path, features: str, description: str) -> str:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "file").send_keys(str(path))
    driver.find_element(By.ID, "features").send_keys(features)
    driver.find_element(By.ID, "description").send_keys(description)
    driver.find_element(By.ID, "submit").click()
    return _outcome(driver)


def test_a_data_scientist_uploads_a_skops_model_in_the_console_and_its_release_starts(
    console_stack: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    url, pw = console_stack["url"], console_stack["passwords"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    model = skops_pipeline(console_stack["X"], console_stack["y"], tmp_path)

    sign_in(browser, url, "dana", pw["dana"])
    assert browser.find_element(By.ID, "user").text == "dana"
    assert browser.find_element(By.ID, "role").text == "data_scientist"
    outcome = _upload(browser, model, ", ".join(INTAKE_FEATURES), "scaler + logistic regression")
    checks = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#checks li")]
    browser.save_screenshot(str(ARTIFACTS / "01-upload-passed.png"))
    print("\n" + "\n".join(checks) + "\n" + outcome)
    assert outcome.startswith("Registered console-model version 1"), outcome
    assert [c.split()[1] for c in checks] == [
        "format",
        "features",
        "conversion",
        "screen",
        "parity",
        "threshold",
        "package",
        "verify",
        "register",
        "emit",
    ]
    assert all(c.startswith("✔") for c in checks)
    rows = browser.find_elements(By.CSS_SELECTOR, "#uploads tbody tr")
    assert rows and "dana" in rows[0].text and "sklearn-skops" in rows[0].text

    # The candidate Asset started fraud_release.
    admin = bearer(airflow_token(url, "admin", pw["admin"]))
    deadline, runs = time.monotonic() + 120, list[dict[str, Any]]()
    while not runs and time.monotonic() < deadline:
        doc = httpx.get(f"{url}/api/v2/dags/fraud_release/dagRuns", headers=admin, timeout=30).json()
        runs = [r for r in doc.get("dag_runs", []) if r.get("run_type") == "asset_triggered"]
        time.sleep(2)
    assert len(runs) == 1, runs

    # A bad upload: refused with the check and its reason, shown in the console.
    bad = tmp_path / "model.pkl"
    bad.write_bytes(__import__("pickle").dumps({"w": 1}))
    browser.get(f"{url}/fraudops/console")
    outcome = _upload(browser, bad, ", ".join(INTAKE_FEATURES), "a pickle")
    browser.save_screenshot(str(ARTIFACTS / "02-pickle-refused.png"))
    assert outcome.startswith("Refused (422): pickle:"), outcome

    # A viewer cannot upload: 403 in the console and in the API.
    sign_in(browser, url, "vic", pw["vic"])
    assert browser.find_element(By.ID, "role").text == "viewer"
    outcome = _upload(browser, model, ", ".join(INTAKE_FEATURES), "not allowed")
    browser.save_screenshot(str(ARTIFACTS / "03-viewer-forbidden.png"))
    assert outcome.startswith("Refused (403)") and "needs data_scientist" in outcome, outcome
    with model.open("rb") as f:
        api = httpx.post(
            f"{url}/fraudops/api/models",
            headers=bearer(airflow_token(url, "vic", pw["vic"])),
            files={"file": ("model.skops", f)},
            data={"features": ",".join(INTAKE_FEATURES)},
            timeout=60,
        )
    assert api.status_code == 403 and "needs data_scientist" in api.json()["detail"]

    # Every action is in the audit table with its actor.
    from fraudops.intake.audit import recent_actions

    actions = [(a["actor"], a["action"], a["outcome"]) for a in recent_actions(console_stack["wh"])]
    assert ("dana", "upload", "ok") in actions and ("dana", "upload", "refused") in actions
    assert actions.count(("vic", "upload", "forbidden")) == 2


def test_the_upload_api_refuses_the_anonymous_and_the_oversized(
    console_stack: dict[str, Any], tmp_path: Path
) -> None:
    url, pw = console_stack["url"], console_stack["passwords"]
    anonymous = httpx.post(
        f"{url}/fraudops/api/models",
        files={"file": ("m.onnx", b"x")},
        data={"features": "tx_amount"},
        timeout=30,
    )
    assert anonymous.status_code == 401
    big = httpx.post(
        f"{url}/fraudops/api/models",
        headers=bearer(airflow_token(url, "dana", pw["dana"])),
        files={"file": ("big.onnx", b"\0" * (2 * 2**20))},
        data={"features": "tx_amount"},
        timeout=60,
    )
    assert big.status_code == 413 and "larger than" in big.json()["detail"]
    me = httpx.get(
        f"{url}/fraudops/api/me", headers=bearer(airflow_token(url, "rita", pw["rita"])), timeout=30
    )
    assert me.json() == {"user": "rita", "role": "release_manager"}
