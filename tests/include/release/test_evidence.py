"""collect_shadow_evidence / collect_production_window against the real BigQuery emulator."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def _label(tx: str, days: float, is_fraud: bool) -> dict[str, Any]:
    return {"transaction_id": tx, "event_time": T0, "label_time": T0 + days * DAY, "is_fraud": is_fraud}


def _pred(tx: str, version: str, mode: str, score: float | None, i: int, **kw: Any) -> dict[str, Any]:
    row = {
        "transaction_id": tx,
        "request_id": f"r-{tx}-{mode}",
        "model_name": "fraud-detector",
        "model_version": version,
        "mode": mode,
        "score": score,
        "decision": "decline" if (score or 0) >= 0.5 else "approve",
        "latency_ms": 1.0 + i / 10,
        "fallback": False,
        "error": None,
        "amount": 10.0 * (i + 1),
        "event_time": T0 + dt.timedelta(hours=i),
        "feature_set": "fs1",
        "features": json.dumps([float(i), 1.0]),
        "served_at": T0 + dt.timedelta(hours=i, seconds=1),
    }
    row.update(kw)
    return row


@pytest.mark.integration
def test_collect_shadow_evidence_pairs_dedups_and_labels(warehouse: Any) -> None:
    from fraudops.release.evidence import collect_production_window, collect_shadow_evidence

    rows = []
    for i in range(6):
        tx = f"tx{i}"
        rows.append(_pred(tx, "1", "production", 0.1 * i, i))
        if i != 4:  # the challenger never scored tx4 (scored tx5 after it: tx4 is lost, not pending)
            rows.append(_pred(tx, "2", "shadow", 0.9 - 0.1 * i, i))
    rows.append(_pred("tx_out", "1", "production", 0.3, 400))  # outside the window
    rows.append(_pred("tx0", "3", "shadow", 0.5, 0))  # another model version
    assert warehouse.upsert("predictions", rows) == len(rows)
    # A duplicate delivery of tx1's shadow row (upsert would collapse it: write it raw).
    warehouse.execute(
        f"INSERT INTO `{warehouse.table_id('predictions')}` "
        "(transaction_id, model_name, model_version, mode, score, served_at, event_time) "
        "VALUES (@tx, 'fraud-detector', '2', 'shadow', @score, @served, @event)",
        {"tx": "tx1", "score": 0.123, "served": T0 + DAY, "event": T0 + dt.timedelta(hours=1)},
    )
    label_as_of = T0 + dt.timedelta(days=10)
    warehouse.upsert(
        "labels",
        [
            _label("tx4", 1, True),
            _label("tx3", 2, False),
            _label("tx0", 20, True),  # known only after label_as_of: must not be used
        ],
    )
    # A conflicting second label for tx2 (raw insert: upsert would keep the first): fraud wins.
    warehouse.upsert("labels", [_label("tx2", 1, False)])
    warehouse.execute(
        f"INSERT INTO `{warehouse.table_id('labels')}` (transaction_id, event_time, label_time, is_fraud) "
        "VALUES ('tx2', @event, @label_time, TRUE)",
        {"event": T0, "label_time": T0 + 3 * DAY},
    )
    ev = collect_shadow_evidence(
        warehouse,
        model_name="fraud-detector",
        challenger_version="2",
        champion_version="1",
        since=T0,
        until=T0 + dt.timedelta(days=2),
        label_as_of=label_as_of,
        label_maturity_hours=24 * 7,
    )
    f = ev.frame.set_index("transaction_id")
    assert list(f.index) == [f"tx{i}" for i in range(6)]
    assert ev.n_events == 6 and ev.n_candidate_scored == 5
    assert f.loc["tx1", "candidate_score"] == pytest.approx(0.8)  # first served wins over the duplicate
    assert f.loc["tx1", "incumbent_score"] == pytest.approx(0.1)
    assert not f.loc["tx4", "candidate_present"]
    assert f.loc["tx4", "label"] == 1.0 and f.loc["tx3", "label"] == 0.0
    assert f.loc["tx0", "label"] == 0.0  # unlabeled as of label_as_of and matured: genuine
    assert f.loc["tx2", "label"] == 1.0
    assert ev.n_labeled == 3 and ev.n_evaluable == 6 and ev.n_evaluable_frauds == 2
    assert json.loads(f.loc["tx2", "candidate_features"]) == [2.0, 1.0]

    young = collect_shadow_evidence(
        warehouse,
        model_name="fraud-detector",
        challenger_version="2",
        champion_version="1",
        since=T0,
        until=T0 + dt.timedelta(days=2),
        label_as_of=T0 + dt.timedelta(days=1, hours=12),
        label_maturity_hours=24 * 7,
    )
    # Only the labels known by then (tx4 fraud, tx2's first label: genuine) — and no event has
    # matured, so none of them enters quality metrics, not even tx4's fast fraud label.
    assert young.n_labeled == 2 and young.n_evaluable == 0 and young.n_evaluable_frauds == 0
    yf = young.frame.set_index("transaction_id")
    assert bool(yf.loc["tx4", "is_fraud"]) and not yf["matured"].any() and yf["label"].isna().all()

    # Probation: version 2 in production, version 1 keeps scoring in shadow.
    warehouse.upsert(
        "predictions",
        [_pred("px0", "2", "production", 0.7, 30), _pred("px0", "1", "shadow", 0.2, 30)],
    )
    prob = collect_production_window(
        warehouse,
        model_name="fraud-detector",
        new_champion_version="2",
        old_champion_version="1",
        since=T0 + dt.timedelta(days=1),
        until=T0 + dt.timedelta(days=3),
        label_as_of=label_as_of,
    )
    assert prob.stage == "probation" and prob.candidate_version == "2"
    assert prob.n_events == 1
    row = prob.frame.iloc[0]
    assert row["candidate_score"] == pytest.approx(0.7) and row["incumbent_score"] == pytest.approx(0.2)


@pytest.mark.integration
def test_capacity_sheds_leave_the_pairing_and_a_down_worker_counts_as_errors(warehouse: Any) -> None:
    """The scoring service logs every shed sampled event as a shadow row ``error='shed:<reason>'``.
    Queue-full and throttled sheds are capacity protection: out of the evidence (and counted);
    ``shed:down`` is a challenger that was not running: it stays in as that model's error."""
    from fraudops.release.evidence import collect_shadow_evidence, ok_mask
    from fraudops.release.progress import shadow_progress

    errors = {0: None, 1: "shed:queue_full", 2: "shed:throttled", 3: "shed:down", 4: None}
    rows = [_pred("sx5", "1", "production", 0.2, 5)]  # still in the worker's queue: not yet an error
    for i, error in errors.items():
        tx = f"sx{i}"
        rows.append(_pred(tx, "1", "production", 0.2, i))
        score = None if error else 0.3
        shed = {"error": error, "features": "null", "latency_ms": None} if error else {}
        rows.append(_pred(tx, "2", "shadow", score, i, **shed))
    assert warehouse.upsert("predictions", rows) == len(rows)
    ev = collect_shadow_evidence(
        warehouse,
        model_name="fraud-detector",
        challenger_version="2",
        champion_version="1",
        since=T0,
        until=T0 + DAY,
        label_as_of=T0 + 10 * DAY,
        label_maturity_hours=1,
    )
    f = ev.frame.set_index("transaction_id")
    assert sorted(f.index) == ["sx0", "sx3", "sx4"]
    assert ev.n_capacity_shed == 2 and ev.summary()["n_capacity_shed"] == 2
    assert ok_mask(ev.frame, "candidate").tolist() == [True, False, True]  # sx3: shed:down = error
    assert ev.summary()["n_events"] == 3  # sx5 (after the shadow watermark) is pending, left out
    progress = shadow_progress(warehouse, model_name="fraud-detector", version="2", since=T0)
    assert (progress.scored, progress.errors) == (2, 1)


def test_prepare_paired_labels_only_matured_events() -> None:
    """Pure: matured events get their label (unlabeled → genuine); young events get NaN, even when
    a fast fraud label has already arrived."""
    import numpy as np
    import pandas as pd

    from fraudops.release.evidence import SIDE_COLUMNS, prepare_paired

    n = 4
    raw = pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(n)],
            # two old events (48 h before label_as_of), two young (1 h before)
            "event_time": [T0, T0, T0 + dt.timedelta(hours=47), T0 + dt.timedelta(hours=47)],
            "amount": [1.0, 2.0, None, 4.0],
            **{f"prod_{c}": [None] * n for c in SIDE_COLUMNS if c != "present"},
            **{f"shadow_{c}": [None] * n for c in SIDE_COLUMNS if c != "present"},
            "prod_present": [True] * n,
            "shadow_present": [False] * n,
            "is_fraud": pd.array([True, None, True, None], dtype="boolean"),
            "label_time": [T0 + dt.timedelta(hours=2)] * n,
        }
    )
    raw["prod_score"] = [0.1, 0.2, 0.3, 0.4]
    frame = prepare_paired(raw, candidate_side="shadow", label_as_of=T0 + 2 * DAY, label_maturity_hours=24)
    assert frame["matured"].tolist() == [True, True, False, False]
    assert frame["label"].tolist()[:2] == [1.0, 0.0] and np.isnan(frame["label"].iloc[2:]).all()
    assert frame["incumbent_score"].tolist() == [0.1, 0.2, 0.3, 0.4]  # production = champion
    assert frame["amount"].tolist() == [1.0, 2.0, 0.0, 4.0]
    assert "prod_score" in raw.columns  # the caller's frame is left alone
