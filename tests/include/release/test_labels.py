"""The label-delay curve and the label maturity read off it (pure, and against the real emulator)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pytest

from fraudops.release.labels import (
    LabelDelayCurve,
    MaturityEstimate,
    curve_from_delays,
    effective_maturity,
    label_delay_curve,
    maturity_from_curve,
)
from fraudops.release.policy import GatePolicy

AS_OF = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def test_curve_quantiles_and_horizon_cut() -> None:
    curve = curve_from_delays([5.0, 1.0, -2.0, 3.0, 100.0, np.nan, 2.0, 4.0, 48.0], horizon_hours=48)
    # −2 (clock skew) counts as 0; 100 > horizon never arrived; NaN dropped; 48 = horizon kept
    assert curve.delays_hours == (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 48.0)
    assert curve.n_frauds == 7 and curve.horizon_hours == 48.0
    assert curve.hours_for(0.5) == 3.0  # ⌈3.5⌉ = 4th delay
    assert curve.hours_for(6 / 7) == 5.0 and curve.hours_for(0.9) == 48.0 and curve.hours_for(1.0) == 48.0
    assert curve.coverage_at(3.0) == pytest.approx(4 / 7) and curve.coverage_at(-1.0) == 0.0
    assert curve.coverage_at(1000.0) == 1.0
    doc = curve.to_dict()
    assert doc["n_frauds"] == 7 and doc["quantiles_hours"]["0.5"] == 3.0 and "delays_hours" not in doc
    with pytest.raises(ValueError):
        curve.hours_for(0.0)
    empty = curve_from_delays([], horizon_hours=10)
    assert (
        empty.n_frauds == 0 and math.isnan(empty.hours_for(0.9)) and empty.to_dict()["quantiles_hours"] == {}
    )


def test_curve_quantile_matches_the_empirical_distribution() -> None:
    rng = np.random.default_rng(0)
    d = rng.lognormal(3.0, 1.0, 5000)
    curve = curve_from_delays(d, horizon_hours=1e9)
    for q in (0.5, 0.9, 0.95):
        h = curve.hours_for(q)
        assert (d <= h).mean() >= q and (d < h).mean() < q
        assert curve.coverage_at(h) >= q


def test_maturity_from_curve_falls_back_to_the_policy_with_too_few_frauds() -> None:
    policy = GatePolicy(min_label_curve_frauds=10, label_coverage=0.9, label_maturity_hours=72.0)
    few = curve_from_delays([1.0, 2.0, 3.0], horizon_hours=100)
    est = maturity_from_curve(few, policy)
    assert est.source == "policy" and est.hours == 72.0 and est.coverage is None
    assert est.note.startswith("3 fully observed fraud labels < 10 needed") and est.curve is not None
    assert maturity_from_curve(None, policy).source == "policy"
    enough = curve_from_delays(list(range(1, 21)), horizon_hours=100)
    est = maturity_from_curve(enough, policy)
    assert est.source == "curve" and est.hours == 18.0 and est.coverage == 0.9  # ⌈0.9·20⌉ = 18th
    assert "90% of fraud labels arrive within 18.0 h" in est.note
    assert MaturityEstimate.from_dict(est.to_dict()) == est
    assert isinstance(enough, LabelDelayCurve)


def _tx(tx: str, age_hours: float) -> dict[str, Any]:
    return {
        "transaction_id": tx,
        "event_time": AS_OF - age_hours * HOUR,
        "card_id": "c1",
        "terminal_id": "t1",
        "amount": 10.0,
    }


def _lab(tx: str, age_hours: float, delay_hours: float, fraud: bool = True) -> dict[str, Any]:
    event = AS_OF - age_hours * HOUR
    return {
        "transaction_id": tx,
        "event_time": event,
        "label_time": event + delay_hours * HOUR,
        "is_fraud": fraud,
    }


@pytest.mark.integration
def test_label_delay_curve_from_the_warehouse(warehouse: Any) -> None:
    """Horizon 48 h, lookback 72 h: the curve is built on events 48–120 h old at ``as_of``."""
    # (tx, event age h, label delay h, fraud)
    cases = [
        ("in1", 100, 2, True),
        ("in2", 60, 10, True),
        ("in3", 110, 30, True),
        ("in4", 80, 40, True),
        ("dup", 70, 8, True),  # labelled twice: the first fraud label counts (5 h, below)
        ("late", 110, 60, True),  # later than the horizon: never arrives, for the platform
        ("genuine", 90, 3, False),  # genuine labels are not fraud label delays
        ("young", 20, 1, True),  # younger than the horizon: right-censored, left out
        ("young2", 47, 2, True),
        ("old", 200, 3, True),  # before the lookback window
    ]
    warehouse.upsert("transactions", [_tx(tx, age) for tx, age, _, _ in cases])
    warehouse.upsert("labels", [_lab(tx, age, delay, fraud) for tx, age, delay, fraud in cases])
    errors = warehouse.client.insert_rows_json(
        warehouse.table_id("labels"),
        [
            {
                **_lab("dup", 70, 5),
                "event_time": (AS_OF - 70 * HOUR).isoformat(),
                "label_time": (AS_OF - 65 * HOUR).isoformat(),
            }
        ],
    )
    assert not errors, errors
    curve = label_delay_curve(warehouse, as_of=AS_OF, horizon_hours=48, lookback_hours=72)
    assert curve.delays_hours == pytest.approx((2.0, 5.0, 10.0, 30.0, 40.0))
    assert curve.n_frauds == 5 and curve.horizon_hours == 48
    # A day earlier the window held events 72-144 h old by today's clock: in2 (60 h) and dup (70 h)
    # were still younger than the horizon.
    earlier = label_delay_curve(warehouse, as_of=AS_OF - 24 * HOUR, horizon_hours=48, lookback_hours=72)
    assert earlier.delays_hours == pytest.approx((2.0, 30.0, 40.0))  # in1, in3, in4
    policy = GatePolicy(
        label_delay_horizon_hours=48,
        label_curve_lookback_hours=72,
        label_coverage=0.8,
        min_label_curve_frauds=5,
        label_maturity_hours=99.0,
    )
    est = effective_maturity(warehouse, policy, as_of=AS_OF)
    assert est.source == "curve" and est.hours == pytest.approx(30.0) and est.coverage == 0.8
    strict = policy.model_copy(update={"min_label_curve_frauds": 6})
    est = effective_maturity(warehouse, strict, as_of=AS_OF)
    assert est.source == "policy" and est.hours == 99.0
