"""shadow_progress against the real BigQuery emulator: dedup, label maturity, mode and version filters."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from fraudops.release.progress import ProgressTarget, ShadowProgress, is_satisfied, shadow_progress

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def _ts(minutes: float) -> str:
    return (T0 + dt.timedelta(minutes=minutes)).isoformat()


def pred(
    txn: str,
    *,
    version: str = "2",
    mode: str = "shadow",
    minute: float = 0,
    error: bool = False,
    model: str = "fraud-detector",
) -> dict[str, Any]:
    return {
        "transaction_id": txn,
        "model_name": model,
        "model_version": version,
        "mode": mode,
        "score": None if error else 0.5,
        "error": "Timeout" if error else None,
        "latency_ms": 1.0,
        "event_time": _ts(minute - 1),
        "served_at": _ts(minute),
    }


def label(txn: str, *, fraud: bool, known_after_min: float) -> dict[str, Any]:
    return {
        "transaction_id": txn,
        "event_time": _ts(-1),
        "label_time": _ts(known_after_min),
        "is_fraud": fraud,
    }


def insert_raw(warehouse: Any, table: str, rows: list[dict[str, Any]]) -> None:
    """Streaming insert, duplicates and all (what a retried micro-batch does to the emulator)."""
    errors = warehouse.client.insert_rows_json(warehouse.table_id(table), rows)
    assert not errors, errors


def test_target_and_reason() -> None:
    p = ShadowProgress(5, 2, 1, 0, None, None, T0)
    ok, reason = is_satisfied(p, ProgressTarget(min_scored=5, min_labeled=3, min_labeled_frauds=1))
    assert not ok and reason == "labeled 2 of 3 needed"
    ok, reason = is_satisfied(p, ProgressTarget(min_scored=5, min_labeled=2, min_labeled_frauds=1))
    assert ok and "scored 5 (>= 5)" in reason
    with pytest.raises(ValueError):
        ProgressTarget(min_scored=-1)
    assert ShadowProgress.from_dict(p.to_dict()) == p


def _progress(**kw: Any) -> ShadowProgress:
    base: dict[str, Any] = {
        "scored": 0,
        "scored_with_label": 0,
        "labeled_frauds": 0,
        "errors": 0,
        "first_served_at": None,
        "last_served_at": None,
        "as_of": T0,
    }
    return ShadowProgress(**{**base, **kw})


def test_reason_reads_matured_frauds_first_with_eta() -> None:
    from fraudops.release.progress import eta, status_line

    # 10 hours of event time, 3,100 scored (310/h), 1,860 of them matured (older than 4 h) with 41
    # frauds among those (2.2 %).
    p = _progress(scored=3100, labeled_frauds=60, matured=1860, matured_frauds=41)
    target = ProgressTarget(min_scored=5000, min_matured_frauds=120)
    ok, reason = is_satisfied(p, target)
    assert not ok and reason == "matured labeled frauds 41 of 120 needed; scored 3,100 of 5,000"
    hours = eta(p, target, first_event_time=T0, now_event_time=T0 + dt.timedelta(hours=10), maturity_hours=4)
    # scored: 5000/310 - 10 = 6.13 h; matured frauds: 120/(41/1860) = 5444 events → 5444/310 - 10 + 4
    assert hours == pytest.approx(5444.0 / 310 - 6, rel=1e-3)
    line = status_line(p, target, hours)
    assert line == f"{reason}; ETA ~{hours:.1f} h event time"
    # Met: 0; cannot be estimated: None (no span, nothing scored, frauds needed but none seen).
    assert (
        eta(p, ProgressTarget(min_scored=10), first_event_time=T0, now_event_time=T0, maturity_hours=4) == 0
    )
    assert eta(p, target, first_event_time=T0, now_event_time=T0, maturity_hours=4) is None
    assert (
        eta(
            _progress(),
            target,
            first_event_time=T0,
            now_event_time=T0 + dt.timedelta(hours=1),
            maturity_hours=4,
        )
        is None
    )
    no_frauds = _progress(scored=100, matured=50)
    assert (
        eta(
            no_frauds,
            target,
            first_event_time=T0,
            now_event_time=T0 + dt.timedelta(hours=1),
            maturity_hours=4,
        )
        is None
    )
    # Only volume missing: linear in the rate, no maturity delay.
    vol = eta(
        no_frauds,
        ProgressTarget(min_scored=300),
        first_event_time=T0,
        now_event_time=T0 + dt.timedelta(hours=1),
        maturity_hours=4,
    )
    assert vol == pytest.approx(2.0)
    assert status_line(no_frauds, target, None).endswith("; ETA unknown")
    assert ShadowProgress.from_dict(p.to_dict()) == p


@pytest.mark.integration
def test_counts_dedup_labels_and_filters(warehouse: Any) -> None:
    preds = [pred(f"t{i}", minute=i) for i in range(6)]
    preds += [pred("t0", minute=0), pred("t1", minute=1), pred("t1", minute=1)]  # replayed batch
    preds += [pred("e1", minute=7, error=True), pred("e1", minute=7, error=True)]
    preds += [pred("t0", mode="production", version="1"), pred("p9", mode="production", version="2")]
    preds += [pred("o1", version="3"), pred("x1", model="other-model")]
    preds += [pred("late", minute=120)]  # served after the snapshot
    preds += [pred("early", minute=-120)]  # before `since`
    insert_raw(warehouse, "predictions", preds)
    insert_raw(
        warehouse,
        "labels",
        [
            label("t0", fraud=True, known_after_min=10),
            label("t0", fraud=True, known_after_min=10),  # duplicate label row
            label("t1", fraud=False, known_after_min=10),
            label("t2", fraud=True, known_after_min=30),  # not known yet at minute 20
            label("e1", fraud=True, known_after_min=10),  # errored prediction: not usable
            label("p9", fraud=True, known_after_min=10),  # production only
        ],
    )
    since = T0 - dt.timedelta(minutes=60)
    p = shadow_progress(warehouse, model_name="fraud-detector", version="2", since=since, label_as_of=_ts(20))
    assert (p.scored, p.scored_with_label, p.labeled_frauds, p.errors) == (6, 2, 1, 1)
    assert p.first_served_at == T0 and p.last_served_at == T0 + dt.timedelta(minutes=7)
    assert p.as_of == T0 + dt.timedelta(minutes=20)

    later = shadow_progress(
        warehouse, model_name="fraud-detector", version="2", since=since.isoformat(), label_as_of=_ts(60)
    )
    assert (later.scored, later.scored_with_label, later.labeled_frauds) == (6, 3, 2)

    prod = shadow_progress(
        warehouse,
        model_name="fraud-detector",
        version="2",
        since=since,
        label_as_of=_ts(60),
        mode="production",
    )
    assert (prod.scored, prod.scored_with_label, prod.labeled_frauds, prod.errors) == (1, 1, 1, 0)

    none = shadow_progress(warehouse, model_name="fraud-detector", version="9", since=since)
    assert (none.scored, none.first_served_at, none.last_served_at) == (0, None, None)
    assert ShadowProgress.from_dict(p.to_dict()) == p
