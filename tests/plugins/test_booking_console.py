"""Shadow-slot booking in the console (issue #19): a data scientist books a registered challenger;
the console measures its cost (its bundle verified on this machine), places it within the shadow
pool's budget and schedules ``fraud_release`` in Airflow with ``run_after`` = the placed start; a
second booking at the same time does not fit and is queued to the end of the first; a viewer may
look but not book; a booking is cancelled by its booker or a release manager (not by another data
scientist), with its queued run; the booking form works in headless Chromium. A real ``airflow
api-server`` with the plugin (``api_server``), MLflow and the emulator; the scheduler is not
needed: the runs wait, queued, for their start."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow_dags import serialize_to_db
from airflow_ui import airflow_token, bearer, sign_in
from bundles import tiny_bundle

pytestmark = [pytest.mark.integration, pytest.mark.browser]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"


def test_book_schedule_queue_and_refuse(
    fraudops_env: Path, api_server: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from fraudops.config import load_settings
    from fraudops.intake.audit import recent_actions
    from fraudops.registry import register_artifact
    from fraudops.warehouse import Warehouse

    settings = load_settings()
    name = settings.mlflow.model_name
    reg = register_artifact(
        tiny_bundle(tmp_path / "bundle"), tracking_uri=settings.mlflow.tracking_uri, model_name=name
    )
    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags"))
    serialize_to_db(bag.dags["fraud_release"], tmp_path / "empty")
    url, pw = api_server["url"], api_server["passwords"]
    dana, vic = (bearer(airflow_token(url, u, pw[u])) for u in ("dana", "vic"))
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).replace(microsecond=0)
    ask = {"version": reg.version, "start_at": start.isoformat(), "duration_minutes": 90}

    r = httpx.post(
        f"{url}/fraudops/api/bookings", json={**ask, "request_id": "form-1"}, headers=dana, timeout=120
    )
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["state"] == "booked" and first["start_at"] == start.isoformat(), first
    assert first["booked_by"] == "dana" and first["dag_run_id"].startswith("booking__"), first
    assert first["latency_ms"] > 0 and 110 < first["memory_mb"] < 200, first  # measured, not assumed
    assert first["replayed"] is False
    # The same request again (a lost response, retried): the same booking and run, nothing new
    # (Airflow's 409 for the run it holds is taken as done); the header works as the body field.
    for again in (
        httpx.post(
            f"{url}/fraudops/api/bookings", json={**ask, "request_id": "form-1"}, headers=dana, timeout=120
        ),
        httpx.post(
            f"{url}/fraudops/api/bookings",
            json=ask,
            headers={**dana, "Idempotency-Key": "form-1"},
            timeout=120,
        ),
    ):
        assert again.status_code == 200, again.text
        doc = again.json()
        assert doc["replayed"] is True and doc["booking_id"] == first["booking_id"], doc
        assert doc["dag_run_id"] == first["dag_run_id"] and doc["start_at"] == first["start_at"], doc
    r = httpx.post(f"{url}/fraudops/api/bookings", json={**ask, "request_id": ""}, headers=dana, timeout=30)
    assert r.status_code == 201, r.text  # an empty id is no id: a new booking (cancelled below)
    spare = r.json()
    assert httpx.post(
        f"{url}/fraudops/api/bookings/{spare['booking_id']}/cancel", headers=dana, timeout=60
    ).is_success
    r = httpx.post(f"{url}/fraudops/api/bookings", json={**ask, "request_id": 7}, headers=dana, timeout=30)
    assert r.status_code == 422 and "request_id must be" in r.text, r.text

    r = httpx.post(f"{url}/fraudops/api/bookings", json=ask, headers=dana, timeout=120)
    assert r.status_code == 201, r.text
    second = r.json()
    assert second["state"] == "queued" and second["start_at"] == first["end_at"], (first, second)
    assert "queued to start then" in second["reason"], second

    # Airflow holds both release runs, queued until their start, with the booking's conf.
    for booking in (first, second):
        r = httpx.get(
            f"{url}/api/v2/dags/fraud_release/dagRuns/{booking['dag_run_id']}",
            headers=bearer(airflow_token(url, "rita", pw["rita"])),
            timeout=30,
        )
        assert r.status_code == 200, r.text
        run = r.json()
        assert run["state"] == "queued" and run["conf"]["version"] == reg.version, run
        assert dt.datetime.fromisoformat(
            run["run_after"].replace("Z", "+00:00")
        ) == dt.datetime.fromisoformat(booking["start_at"]), run

    # The calendar: one booking, then the other, never both.
    cal = httpx.get(f"{url}/fraudops/api/bookings", headers=vic, timeout=30).json()
    assert cal["budget"]["memory_mb"] == 200
    loads = [len(seg["bookings"]) for seg in cal["calendar"]]
    assert max(loads) == 1 and loads.count(1) >= 2, cal["calendar"]

    # A viewer cannot book; nonsense is refused with the reason; an unknown version is named.
    assert httpx.post(f"{url}/fraudops/api/bookings", json=ask, headers=vic, timeout=30).status_code == 403
    for bad, why in (
        ({**ask, "version": "x"}, "version must be"),
        ({**ask, "start_at": "2020-01-01T00:00:00+00:00"}, "in the past"),
        ({**ask, "duration_minutes": 0.5}, "between 1 and"),
        ({**ask, "requires_approval": "yes"}, "true or false"),
        ({**ask, "version": "999"}, "cannot fetch"),
        ({**ask, "start_at": "tomorrow-ish"}, "bad start_at or duration_minutes"),
        ({**ask, "duration_minutes": "an hour"}, "bad start_at or duration_minutes"),
        ([ask], "a JSON object is required"),
    ):
        r = httpx.post(f"{url}/fraudops/api/bookings", json=bad, headers=dana, timeout=120)
        assert r.status_code == 422 and why in r.text, (bad, r.text)
    r = httpx.post(
        f"{url}/fraudops/api/bookings",
        content=b"{not json",
        headers={**dana, "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 422 and "a JSON object is required" in r.text, r.text
    # Cancelling: not a viewer, not another data scientist; the booker, or a release manager. The
    # queued release run goes with it, and the capacity is free again.
    eli, rita = (bearer(airflow_token(url, u, pw[u])) for u in ("eli", "rita"))

    def cancel(booking: dict[str, Any], who: dict[str, str]) -> httpx.Response:
        return httpx.post(
            f"{url}/fraudops/api/bookings/{booking['booking_id']}/cancel", headers=who, timeout=60
        )

    assert cancel(second, vic).status_code == 403
    r = cancel(second, eli)
    assert r.status_code == 403 and "needs release_manager" in r.text, r.text
    r = cancel(second, dana)
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    assert cancel(second, dana).status_code == 200  # again: already cancelled
    r = httpx.get(f"{url}/api/v2/dags/fraud_release/dagRuns/{second['dag_run_id']}", headers=rita, timeout=30)
    assert r.status_code == 404, r.text
    r = cancel(first, rita)  # a release manager may cancel anyone's
    assert r.status_code == 200, r.text
    assert httpx.post(f"{url}/fraudops/api/bookings/nope/cancel", headers=dana, timeout=30).status_code == 404
    r = httpx.post(f"{url}/fraudops/api/bookings", json=ask, headers=dana, timeout=120)
    assert r.status_code == 201 and r.json()["state"] == "booked", r.text  # the slot is free again

    # The console's form, in headless Chromium: a 30-minute slot starting now (before the one above).
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    sign_in(browser, url, "dana", pw["dana"])
    browser.find_element(By.ID, "book-version").send_keys(reg.version)
    duration = browser.find_element(By.ID, "book-duration")
    duration.clear()
    duration.send_keys("30")
    browser.find_element(By.ID, "book").click()
    WebDriverWait(browser, 120).until(
        lambda d: d.find_element(By.ID, "booking-outcome").get_attribute("data-status") not in (None, "")
    )
    said = browser.find_element(By.ID, "booking-outcome").text
    assert browser.find_element(By.ID, "booking-outcome").get_attribute("data-status") == "201", said
    assert said.startswith(f"Booked v{reg.version} from ") and "(booked: fits the pool" in said, said
    WebDriverWait(browser, 30).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#bookings tbody tr")) >= 4
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "06-booking.png"))

    acts = [(a["actor"], a["action"], a["outcome"]) for a in recent_actions(Warehouse(settings.warehouse))]
    assert acts.count(("dana", "book", "ok")) == 5 and ("vic", "book", "forbidden") in acts, acts
    assert acts.count(("dana", "book", "replayed")) == 2, acts
    assert ("eli", "cancel_booking", "forbidden") in acts and ("rita", "cancel_booking", "ok") in acts, acts


def test_a_running_challengers_sample_rate_is_changed_by_its_booker_or_a_release_manager(
    fraudops_env: Path, api_server: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    """A challenger scoring in shadow (a real scoring service with its pool) samples the rate its
    booking asked for; its booker changes it (the booking re-costed, the service's worker at the
    new rate, the change audited with the console user as actor); another data scientist and a
    viewer may not; outside the pool's limits is refused with them; a release manager changes it
    in the console in headless Chromium."""
    import sys

    from fraudops.config import load_settings
    from fraudops.intake.audit import recent_actions
    from fraudops.pipeline.booking import find_booking
    from fraudops.registry import move_alias, register_artifact, set_sample_rate
    from fraudops.stack import process
    from fraudops.stack.process import ServiceSpec, http_ok
    from fraudops.warehouse import Warehouse

    settings = load_settings()
    name, uri = settings.mlflow.model_name, settings.mlflow.tracking_uri
    wh = Warehouse(settings.warehouse)
    champ, chall = (
        register_artifact(
            tiny_bundle(tmp_path / k, n_estimators=n), tracking_uri=uri, model_name=name
        ).version
        for k, n in (("champ", 8), ("chall", 9))
    )
    move_alias(wh, model_name=name, alias="champion", version=champ, action="promote", tracking_uri=uri)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags"))
    serialize_to_db(bag.dags["fraud_release"], tmp_path / "empty")
    url, pw = api_server["url"], api_server["passwords"]
    dana, eli, vic = (bearer(airflow_token(url, u, pw[u])) for u in ("dana", "eli", "vic"))
    r = httpx.post(
        f"{url}/fraudops/api/bookings",
        json={"version": chall, "duration_minutes": 120, "sample_rate": 0.2, "request_id": "rates-1"},
        headers=dana,
        timeout=120,
    )
    assert r.status_code == 201, r.text
    booking = r.json()
    assert booking["sample_rate"] == 0.2, booking
    run = httpx.get(
        f"{url}/api/v2/dags/fraud_release/dagRuns/{booking['dag_run_id']}",
        headers=bearer(airflow_token(url, "rita", pw["rita"])),
        timeout=30,
    ).json()
    assert run["conf"]["shadow_sample_rate"] == 0.2, run  # the release sets it when it deploys
    for bad, why in (
        ({"sample_rate": 0.9}, "outside the shadow pool's limits"),
        ({"sample_rate": "x"}, "a number"),
    ):
        r = httpx.post(
            f"{url}/fraudops/api/bookings",
            json={"version": chall, **bad, "request_id": "r"},
            headers=dana,
            timeout=60,
        )
        assert r.status_code == 422 and why in r.text, r.text

    # What the release's deploy_shadow does: the alias, then the booking's rate.
    alias = f"challenger-{chall}"
    move_alias(wh, model_name=name, alias=alias, version=chall, action="shadow", tracking_uri=uri)
    set_sample_rate(wh, model_name=name, alias=alias, rate=0.2, actor="fraud_release", tracking_uri=uri)
    port = api_server["scoring_port"]
    spec = ServiceSpec(
        name="scoring-console",
        command=[sys.executable, "-m", "fraudops.serving", "--log-level", "warning"],
        url=f"http://127.0.0.1:{port}",
        health=lambda: http_ok(f"http://127.0.0.1:{port}/health"),
        log_file=tmp_path / "scoring.log",
        pid_file=tmp_path / "scoring.pid",
        env={
            "FRAUDOPS_STATE_DIR": str(api_server["state_dir"]),  # the console's deploy token
            "FRAUDOPS_SCORING_PORT": str(port),
            "FRAUDOPS_WARM_DAYS": "0",
            "FRAUDOPS_EVENT_CLOCK": "simulated",
            "FRAUDOPS_ALIAS_POLL_S": "0.5",
            "FRAUDOPS_LOG_FLUSH_S": "0.5",
        },
        cwd=tmp_path,
        ready_timeout_s=180.0,
        port=port,
    )
    process.start(spec)
    try:

        def worker() -> dict[str, Any]:
            doc = httpx.get(f"{url}/fraudops/api/challengers", headers=vic, timeout=30).json()
            rows = [c for c in doc["challengers"] if c["alias"] == alias]
            return rows[0] if rows else {}

        deadline = time.monotonic() + 120
        while worker().get("state") != "running" or worker().get("sample_rate") != 0.2:
            assert time.monotonic() < deadline, worker()
            time.sleep(1)
        assert worker()["booked_by"] == "dana" and worker()["booking_id"] == booking["booking_id"]
        deployed_at = dt.datetime.now(dt.UTC)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as scoring:
            for i in range(400):
                r = scoring.post("/score", json=_tx(i))
                assert r.status_code == 200, r.text
        last_request = time.time()
        _release_started(booking["dag_run_id"], name, chall, champ, alias, deployed_at)
        shadow_rows = (
            "SELECT COUNTIF(score IS NOT NULL) AS n FROM predictions WHERE model_name = @n "
            "AND model_version = @v AND mode = 'shadow' AND served_at >= @t"
        )
        at = {"n": name, "v": chall, "t": deployed_at}
        deadline = time.monotonic() + 60
        while (scored := wh.query(shadow_rows, at)[0]["n"]) < 30:  # ~0.2 × 400
            assert time.monotonic() < deadline, scored
            time.sleep(1)
        # The wait (and so the console) counts predictions once they are SETTLE_S old.
        from fraudops.pipeline.release import SETTLE_S

        time.sleep(max(0.0, SETTLE_S + 1 - (time.time() - last_request)))
        scored = wh.query(shadow_rows, at)[0]["n"]
        # Following the release: the run's progress against what the gate needs, with its plot.
        runs = httpx.get(f"{url}/fraudops/api/releases", headers=vic, timeout=60).json()
        mine = [r for r in runs if r["dag_run_id"] == booking["dag_run_id"]]
        assert mine and mine[0]["state"] == "queued", runs
        shown = mine[0]["follow"]
        assert shown["version"] == chall and shown["champion"] == champ, shown
        assert shown["needs"]["scored"] == 100 and shown["needs"]["matured_frauds"] == 5, shown
        assert shown["progress"]["scored"] == scored > 0, (shown["progress"], scored)
        assert sum(h["scored"] for h in shown["series"]) == scored, shown["series"]
        assert shown["status"].startswith("matured labeled frauds 0 of 5 needed"), shown["status"]

        def change(who: dict[str, str], rate: Any) -> httpx.Response:
            return httpx.post(
                f"{url}/fraudops/api/challengers/{alias}/sample_rate",
                json={"sample_rate": rate, "reason": "more evidence sooner"},
                headers=who,
                timeout=60,
            )

        assert change(vic, 0.3).status_code == 403
        r = change(eli, 0.3)
        assert r.status_code == 403 and "did not upload or book needs release_manager" in r.text, r.text
        r = change(dana, 0.9)
        assert r.status_code == 422 and "outside the shadow pool's limits [0.01, 0.5]" in r.text, r.text
        assert change(dana, "lots").status_code == 422
        r = httpx.post(
            f"{url}/fraudops/api/challengers/champion/sample_rate", json={"sample_rate": 0.2}, headers=dana
        )
        assert r.status_code == 422 and "not a challenger alias" in r.text, r.text
        r = change(dana, 0.3)
        assert r.status_code == 200, r.text
        assert (r.json()["sampleRate"], r.json()["previousSampleRate"]) == (0.3, 0.2), r.text
        resized = find_booking(wh, booking["booking_id"])
        assert resized is not None and resized.sample_rate == 0.3, resized
        assert resized.cpu_cores == pytest.approx(booking["cpu_cores"] * 1.5), (resized, booking)
        deadline = time.monotonic() + 30
        while worker().get("sample_rate") != 0.3:
            assert time.monotonic() < deadline, worker()
            time.sleep(0.5)
        rows = wh.query(
            "SELECT actor, reason FROM deployments WHERE model_name = @n AND alias = @a "
            "AND action = 'sample_rate' ORDER BY deployed_at",
            {"n": name, "a": alias},
        )
        assert [r["actor"] for r in rows] == ["fraud_release", "console:dana"], rows
        assert rows[1]["reason"] == "sample rate 0.2 -> 0.3: more evidence sooner", rows

        # A release manager, in the console in headless Chromium.
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        sign_in(browser, url, "rita", pw["rita"])
        card = f'#releases .release[data-run="{booking["dag_run_id"]}"]'
        WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, f"{card} svg.plot"))
        text = browser.find_element(By.CSS_SELECTOR, card).text
        assert f"v{chall} against champion v{champ}" in text and f"{scored} of 100" in text, text
        assert len(browser.find_elements(By.CSS_SELECTOR, f"{card} svg.plot polyline")) == 2
        browser.execute_script("arguments[0].scrollIntoView()", browser.find_element(By.CSS_SELECTOR, card))
        browser.save_screenshot(str(ARTIFACTS / "08-release-progress.png"))
        row = f'#challengers tr[data-alias="{alias}"]'
        WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
        box = browser.find_element(By.CSS_SELECTOR, f"{row} input.rate")
        box.clear()
        box.send_keys("0.05")
        browser.find_element(By.CSS_SELECTOR, f"{row} button.set-rate").click()
        WebDriverWait(browser, 60).until(
            lambda d: d.find_element(By.ID, "rate-outcome").get_attribute("data-status") not in (None, "")
        )
        said = browser.find_element(By.ID, "rate-outcome").text
        assert browser.find_element(By.ID, "rate-outcome").get_attribute("data-status") == "200", said
        assert said == f"{alias} (v{chall}) now samples 0.05 of live traffic (was 0.3).", said
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "07-sample-rate.png"))
        deadline = time.monotonic() + 30
        while worker().get("sample_rate") != 0.05:
            assert time.monotonic() < deadline, worker()
            time.sleep(0.5)
    finally:
        process.stop(spec)
    acts = [(a["actor"], a["action"], a["outcome"]) for a in recent_actions(wh)]
    assert ("eli", "sample_rate", "forbidden") in acts and ("vic", "sample_rate", "forbidden") in acts, acts
    assert ("dana", "sample_rate", "ok") in acts and ("rita", "sample_rate", "ok") in acts, acts
    assert ("dana", "sample_rate", "refused") in acts, acts


def test_a_booking_is_moved_by_its_booker_or_a_release_manager_and_its_release_run_follows(
    fraudops_env: Path, api_server: dict[str, Any], tmp_path: Path
) -> None:
    """Moving a booking whose release has not started: placed again (queued behind a booking that
    fills the pool then), its queued ``fraud_release`` run re-scheduled at the new start with the
    same conf; the same move again changes nothing; not by another data scientist or a viewer."""
    from airflow.dag_processing.dagbag import DagBag

    from fraudops.config import load_settings
    from fraudops.intake.audit import recent_actions
    from fraudops.registry import register_artifact
    from fraudops.warehouse import Warehouse

    settings = load_settings()
    name, uri = settings.mlflow.model_name, settings.mlflow.tracking_uri
    version = register_artifact(
        tiny_bundle(tmp_path / "m", n_estimators=10), tracking_uri=uri, model_name=name
    ).version
    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags"))
    serialize_to_db(bag.dags["fraud_release"], tmp_path / "empty")
    url, pw = api_server["url"], api_server["passwords"]
    dana, eli, vic, rita = (bearer(airflow_token(url, u, pw[u])) for u in ("dana", "eli", "vic", "rita"))
    hour = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).replace(minute=0, second=0, microsecond=0)

    def book(start: dt.datetime, rid: str) -> dict[str, Any]:
        body = {
            "version": version,
            "start_at": start.isoformat(),
            "duration_minutes": 60,
            "sample_rate": 0.2,
            "requires_approval": True,
            "request_id": rid,
        }
        r = httpx.post(f"{url}/fraudops/api/bookings", json=body, headers=dana, timeout=120)
        assert r.status_code == 201, r.text
        return dict(r.json())

    first, blocker = book(hour, "move-1"), book(hour + dt.timedelta(hours=4), "move-2")

    def move(booking: dict[str, Any], who: dict[str, str], body: Any) -> httpx.Response:
        return httpx.post(
            f"{url}/fraudops/api/bookings/{booking['booking_id']}/move", json=body, headers=who, timeout=60
        )

    def run_of(booking: dict[str, Any]) -> dict[str, Any]:
        r = httpx.get(
            f"{url}/api/v2/dags/fraud_release/dagRuns/{booking['dag_run_id']}", headers=rita, timeout=30
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    later = hour + dt.timedelta(hours=2)
    for _ in range(2):  # the same move again: placed the same, the run there once
        r = move(first, dana, {"start_at": later.isoformat()})
        assert r.status_code == 200, r.text
        assert r.json()["start_at"] == later.isoformat() and r.json()["state"] == "booked", r.text
    run = run_of(first)
    assert (
        run["state"] == "queued"
        and dt.datetime.fromisoformat(run["run_after"].replace("Z", "+00:00")) == later
    )
    assert run["conf"]["requires_approval"] is True and run["conf"]["shadow_sample_rate"] == 0.2, run
    assert run["conf"]["version"] == version, run

    assert move(first, vic, {"start_at": later.isoformat()}).status_code == 403
    r = move(first, eli, {"start_at": later.isoformat()})
    assert r.status_code == 403 and "needs release_manager" in r.text, r.text
    for bad, status, why in (
        ({}, 422, "start_at (ISO 8601) is required"),
        ({"start_at": "soon"}, 422, "bad start_at"),
        ({"start_at": "2020-01-01T00:00:00+00:00"}, 422, "in the past"),
        ({"start_at": later.isoformat(), "duration_minutes": 0.1}, 422, "between 1 and"),
    ):
        r = move(first, dana, bad)
        assert r.status_code == status and why in r.text, (bad, r.text)
    assert move({"booking_id": "nope"}, dana, {"start_at": later.isoformat()}).status_code == 404

    # A release manager moves it onto the other booking: the pool holds one, so it is queued.
    onto = hour + dt.timedelta(hours=4, minutes=30)
    r = move(first, rita, {"start_at": onto.isoformat()})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["state"] == "queued" and doc["start_at"] == blocker["end_at"], (doc, blocker)
    assert "queued to start then" in doc["reason"], doc
    run = run_of(first)
    assert dt.datetime.fromisoformat(run["run_after"].replace("Z", "+00:00")) == dt.datetime.fromisoformat(
        blocker["end_at"]
    ), run
    acts = [(a["actor"], a["action"], a["outcome"]) for a in recent_actions(Warehouse(settings.warehouse))]
    assert acts.count(("dana", "move_booking", "ok")) == 2 and ("rita", "move_booking", "ok") in acts, acts
    assert ("eli", "move_booking", "forbidden") in acts and ("dana", "move_booking", "refused") in acts, acts


def _tx(i: int) -> dict[str, Any]:
    """A valid /score body (simulated clock: 2026-06-01 event times, one a second)."""
    return {
        "transaction_id": f"console-tx-{i}",
        "card_id": f"c-{i % 50}",
        "terminal_id": f"t-{i % 20}",
        "merchant_id": f"m-{i % 10}",
        "amount": 10.0 + i % 90,
        "timestamp": f"2026-06-01T00:{(i // 60) % 60:02d}:{i % 60:02d}Z",
        "region": "eu-west",
        "device_id": f"d-{i % 30}",
        "channel": "ecom",
        "currency": "EUR",
    }


def _release_started(
    run_id: str, name: str, version: str, champion: str, alias: str, deployed_at: dt.datetime
) -> None:
    """The return values ``resolve`` and ``deploy_shadow`` write when the booked run starts (its
    scheduler is not part of this module's stack), in Airflow's own XCom table: what the console
    reads to follow the run."""
    from airflow.models.xcom import XComModel

    from fraudops.pipeline.release import ReleaseParams
    from fraudops.pipeline.release_types import Candidate, ShadowDeployment
    from fraudops.release.policy import DEFAULT_POLICY

    cand = Candidate(
        model_name=name,
        version=version,
        champion=champion,
        alias=alias,
        params=ReleaseParams(model_name=name, version=version, shadow_sample_rate=0.2).to_dict(),
        policy=DEFAULT_POLICY.to_dict(),
        policy_fingerprint=DEFAULT_POLICY.fingerprint,
        min_scored_events=100,
        min_labeled_frauds=5,
        planned_scored_events=5000,
        planned_labeled_frauds=120,
        label_maturity_hours=12.0,
    )
    deploy = ShadowDeployment(ok=True, deployed_at=deployed_at, alias=alias, shadow_sample_rate=0.2)
    for task_id, value in (("resolve", cand.to_xcom()), ("deploy_shadow", deploy.to_xcom())):
        XComModel.set("return_value", value, dag_id="fraud_release", task_id=task_id, run_id=run_id)
