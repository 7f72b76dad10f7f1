"""Decisions and drift values round-trip into the warehouse (real emulator)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from release_synthetic import SMALL_POLICY, make_evidence

from fraudops.release.drift import ColumnDrift, DriftResult, drift_rows, record_drift
from fraudops.release.gates import decide_promotion
from fraudops.release.recording import record_decision

POLICY = SMALL_POLICY


@pytest.mark.integration
def test_record_decision_and_drift_round_trip(warehouse: Any) -> None:
    ev = make_evidence(champion={"strength": 1.5}, challenger={"strength": 3.0, "error_rate": 0.05})
    decision = decide_promotion(ev, POLICY, expected_fraud_rate=0.05)
    assert decision.status == "reject"
    kw = {"model_name": "fraud-detector", "challenger_version": "2", "champion_version": "1"}
    row = record_decision(warehouse, decision, dag_run_id="scheduled__2026-11-29", **kw)
    record_decision(warehouse, decision, dag_run_id="scheduled__2026-11-29", **kw)  # retried task
    stored = warehouse.query(
        f"SELECT * FROM `{warehouse.table_id('gate_decisions')}` WHERE model_name = @m",
        {"m": "fraud-detector"},
    )
    assert len(stored) == 1
    got = stored[0]
    assert got["decision_id"] == row["decision_id"]
    assert (got["status"], got["stage"], got["policy_version"]) == ("reject", "promotion", "test.1")
    assert got["reason"] == decision.reason and got["reason"].startswith("error rate")
    evidence = json.loads(got["evidence"])
    assert evidence["deciding_check"] == "error_rate"
    assert evidence["policy_fingerprint"] == POLICY.fingerprint

    window = (dt.datetime(2026, 11, 1, tzinfo=dt.UTC), dt.datetime(2026, 11, 6, tzinfo=dt.UTC))
    result = DriftResult(
        "feature_drift",
        (ColumnDrift("a", "wasserstein", 0.3, 0.1, True), ColumnDrift("b", "wasserstein", 0.02, 0.1, False)),
        0.5,
        0.5,
        False,
        100,
        100,
    )
    rows = drift_rows(
        result,
        run_id="run-1",
        model_name="fraud-detector",
        model_version="2",
        window_start=window[0],
        window_end=window[1],
    )
    assert record_drift(warehouse, rows) == 3
    assert record_drift(warehouse, rows) == 0  # idempotent by (run_id, check, column_name)
    back = warehouse.query_df(
        f"SELECT column_name, method, value, threshold, drifted, window_start "
        f"FROM `{warehouse.table_id('drift_metrics')}` WHERE run_id = @r ORDER BY column_name",
        {"r": "run-1"},
    )
    assert list(back["column_name"]) == ["__dataset__", "a", "b"]
    assert list(back["drifted"]) == [False, True, False]
    assert back.loc[1, "value"] == pytest.approx(0.3)
    assert back.loc[1, "window_start"] == window[0]
