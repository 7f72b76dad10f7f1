"""The release page's numbers and HTML (pure parts), and its query against the real emulator."""

from __future__ import annotations

import datetime as dt
import json
import math

import pandas as pd
import pytest

from fraudops.release.report import ReleaseOverview, daily_rates, render_page

DAY = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)


def _daily() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "day": [DAY, DAY + dt.timedelta(days=1)],
            "events": [1000, 500],
            "declines": [30, 0],
            "frauds": [20, 0],
            "caught": [15, 0],
            "false_declines": [15, 0],
            "fraud_money": [2000.0, 0.0],
            "money_caught": [1500.0, 0.0],
            "false_decline_money": [900.0, 0.0],
            "fallbacks": [2, 0],
            "model_version": ["1", "2"],
        }
    )


def test_daily_rates() -> None:
    d = daily_rates(_daily())
    assert d.loc[0, "capture_rate"] == pytest.approx(15 / 20)
    assert d.loc[0, "false_positive_rate"] == pytest.approx(15 / 980)
    assert math.isnan(d.loc[1, "capture_rate"])  # no frauds that day: undefined, not 0
    assert d.loc[1, "false_positive_rate"] == 0.0
    assert daily_rates(_daily().iloc[:0]).empty


def test_page_shows_aliases_decisions_and_charts() -> None:
    quality = {
        "ap_candidate": 0.41,
        "ap_incumbent": 0.30,
        "ap_delta": 0.11,
        "capture_candidate": 0.8,
        "capture_incumbent": 0.7,
        "fpr_candidate": 0.004,
        "fpr_incumbent": 0.005,
        "money_caught_candidate": 1234.0,
        "money_caught_incumbent": 1000.0,
    }
    decisions = [
        {
            "stage": "promotion",
            "status": "promote",
            "reason": "all checks passed: ΔAP +0.1100",
            "challenger_version": "2",
            "champion_version": "1",
            "policy_version": "2026-11-29.1",
            "decided_at": DAY,
            "quality": quality,
        },
        {
            "stage": "promotion",
            "status": "reject",
            "reason": "constant scores <script>",
            "challenger_version": "3",
            "champion_version": "2",
            "policy_version": "2026-11-29.1",
            "decided_at": DAY,
            "quality": {},
        },
    ]
    overview = ReleaseOverview(
        "fraud-detector", {"champion": "2", "challenger-4": "4"}, {}, decisions, daily_rates(_daily())
    )
    page = render_page(overview)
    assert "champion: <b>v2</b>" in page and "challenger-4: v4 (shadow)" in page
    assert 'class="promote">promote' in page and 'class="reject">reject' in page
    assert "&lt;script&gt;" in page and "<script>" not in page  # reasons are escaped
    assert "+0.1100" in page and "0.800 / 0.700" in page
    assert page.count("data:image/png;base64,") == 2  # shadow comparison + daily metrics


def test_page_shows_the_shadow_pool_and_its_stream_backlog() -> None:
    overview = ReleaseOverview("fraud-detector", {"champion": "2"}, {}, [], daily_rates(_daily()))
    assert "The scoring service did not answer" in render_page(overview)
    overview.shadow = {}
    assert "No challenger in shadow" in render_page(overview)
    overview.shadow = {
        "challenger-7": {
            "version": "7",
            "transport": "redis-stream",
            "state": "running",
            "sample_rate": 0.25,
            "mirrored": 12345,
            "shed": 3,
            "lag": 410,
            "pending": 64,
            "dead_letters": 1,
            "workers": {"shadow-1": {}, "shadow-2": {}},
        },
        "challenger-<b>": {"version": "<i>", "state": "running", "sample_rate": 0.1, "processed": 5},
    }
    page = render_page(overview)
    row = page.split('id="shadow"')[1].split("</table>")[0]
    assert "<td>redis-stream</td>" in row and "<td>12,345</td>" in row
    assert "<td>410</td><td>64</td><td>1</td><td>2</td>" in row  # lag, pending, dead letters, workers
    assert "challenger-&lt;b&gt;" in row and "<td>process</td>" in row and "<i>" not in row


@pytest.mark.integration
def test_overview_from_the_warehouse(warehouse: object, mlflow_server: str) -> None:
    from fraudops.release.report import release_overview

    served = DAY + dt.timedelta(hours=1)
    rows = [
        {
            "transaction_id": f"t{i}",
            "model_name": "page-model",
            "model_version": "1",
            "mode": "production",
            "score": 0.9 if i < 3 else 0.1,
            "decision": "decline" if i < 3 else "approve",
            "amount": 100.0,
            "event_time": DAY + dt.timedelta(minutes=i),
            "served_at": served,
            "fallback": False,
        }
        for i in range(10)
    ]
    warehouse.upsert("predictions", rows)  # type: ignore[attr-defined]
    warehouse.upsert(  # type: ignore[attr-defined]
        "labels",
        [
            {"transaction_id": t, "event_time": DAY, "label_time": served, "is_fraud": fraud}
            for t, fraud in (("t0", True), ("t1", True), ("t5", True), ("t2", False))
        ],
    )
    warehouse.upsert(  # type: ignore[attr-defined]
        "gate_decisions",
        [
            {
                "decision_id": "d1",
                "model_name": "page-model",
                "challenger_version": "2",
                "champion_version": "1",
                "stage": "promotion",
                "policy_version": "p",
                "status": "reject",
                "reason": "error rate 0.2 > 0.01",
                "evidence": json.dumps({"evidence": {"quality": {"ap_delta": -0.2}}}),
                "decided_at": served,
            }
        ],
    )
    overview = release_overview(warehouse, "page-model", mlflow_server)  # type: ignore[arg-type]
    assert overview.aliases == {}  # model not in the registry: the page still renders
    assert [d["status"] for d in overview.decisions] == ["reject"]
    assert overview.decisions[0]["quality"] == {"ap_delta": -0.2}
    day = overview.daily.iloc[0]
    assert (day.events, day.frauds, day.caught, day.false_declines) == (10, 3, 2, 1)
    assert day.capture_rate == pytest.approx(2 / 3)
    assert day.money_caught == pytest.approx(200.0)
    assert "error rate 0.2" in render_page(overview)
