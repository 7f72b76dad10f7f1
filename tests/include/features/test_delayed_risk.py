"""Label-delay-aware risk features (issue #23): windows shifted back by the label delay, exact at
their boundaries offline and online, smoothed rates, and the delay a retrain reads off its data."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from fraudops.exceptions import FeatureSpecError
from fraudops.features import REGISTRY, EmbeddedBackend, FeatureSpec, build_offline
from fraudops.features.definitions import (
    DAY_US,
    LAG_FAMILIES,
    PRIOR_RATE,
    PRIOR_WEIGHT,
    families_for,
    lookback_days,
)
from fraudops.features.delay import choose_risk_delay, fixed_risk_delay, grid_delay
from fraudops.features.parity import compare, stream_online

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
US = dt.timedelta(microseconds=1)
SPEC = FeatureSpec.from_names(
    [
        f"terminal_lag3d_{kind}_{w}"
        for kind in ("tx_count", "fraud_count", "fraud_rate")
        for w in ("1d", "7d", "30d")
    ]
)


def _rate(frauds: int, count: int) -> float:
    return (frauds + PRIOR_WEIGHT * PRIOR_RATE) / (count + PRIOR_WEIGHT)


def _frame(rows: list[tuple[str, dt.datetime, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transaction_id": [r[0] for r in rows],
            "event_time": pd.to_datetime([r[1] for r in rows], utc=True),
            "card_id": [f"card-{i}" for i in range(len(rows))],
            "terminal_id": [r[2] for r in rows],
            "merchant_id": "m-1",
            "amount": 10.0,
        }
    )


def _boundary_world() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Terminal T: events placed exactly on the 3-day shift and on its 1 d / 7 d edges, fraud
    labels known just before, exactly at and after the scored event."""
    q = T0 + 40 * DAY  # the scored event
    end = q - 3 * DAY  # the delayed windows end here (inclusive)
    rows = [
        ("a-at-end", end, "T"),  # in every window (t_j <= t - d)
        ("b-after-end", end + US, "T"),  # too recent: excluded
        ("c-1d-edge", end - DAY, "T"),  # t_j = t - d - 1d: outside 1 d (half-open), inside 7 d
        ("d-inside-1d", end - DAY + US, "T"),
        ("e-7d-edge", end - 7 * DAY, "T"),  # outside 7 d, inside 30 d
        ("f-30d-edge", end - 30 * DAY, "T"),  # outside 30 d
        ("g-30d-in", end - 30 * DAY + US, "T"),
        ("h-other", end - 2 * DAY, "U"),  # another terminal
        ("q", q, "T"),
    ]
    tx = _frame(rows)
    labels = pd.DataFrame(
        {
            "transaction_id": [
                "a-at-end",
                "d-inside-1d",
                "e-7d-edge",
                "g-30d-in",
                "c-1d-edge",
                "b-after-end",
            ],
            "event_time": pd.to_datetime(
                [end, end - DAY + US, end - 7 * DAY, end - 30 * DAY + US, end - DAY, end + US], utc=True
            ),
            # known before q; known before q; exactly at q (not known); after q; before q; before q
            "label_time": pd.to_datetime([q - US, end, q, q + DAY, end, end + 2 * US], utc=True),
            "is_fraud": [True, True, True, True, True, True],
            "label_source": "chargeback",
        }
    )
    return tx, labels


def test_delayed_windows_are_exact_at_their_edges_offline_and_online() -> None:
    tx, labels = _boundary_world()
    expected = {
        # 1 d: a, d | 7 d: a, c, d | 30 d: a, c, d, e, g
        "terminal_lag3d_tx_count_1d": 2,
        "terminal_lag3d_tx_count_7d": 3,
        "terminal_lag3d_tx_count_30d": 5,
        # known before q: a, d, c (e is known exactly at q: not before; g only after q; b is too recent)
        "terminal_lag3d_fraud_count_1d": 2,
        "terminal_lag3d_fraud_count_7d": 3,
        "terminal_lag3d_fraud_count_30d": 3,
        "terminal_lag3d_fraud_rate_1d": _rate(2, 2),
        "terminal_lag3d_fraud_rate_7d": _rate(3, 3),
        "terminal_lag3d_fraud_rate_30d": _rate(3, 5),
    }
    offline = build_offline(tx, labels, SPEC)
    online = stream_online(tx, labels, SPEC, EmbeddedBackend())
    assert offline.loc["q"].to_dict() == expected
    assert compare(offline, online).ok
    # the very first event of a terminal: nothing in any window, the rate is the prior
    first = offline.loc["f-30d-edge"]
    assert first["terminal_lag3d_tx_count_30d"] == 0
    assert first["terminal_lag3d_fraud_rate_30d"] == pytest.approx(PRIOR_RATE)


def test_an_unshifted_window_misses_what_the_delayed_one_sees() -> None:
    """The point of the shift: with every label 3 days late, the 7-day known-fraud count of the
    unshifted window is 0 on every row; the delayed one counts the frauds whose labels are in."""
    rng = np.random.default_rng(0)
    n = 3000
    t = T0 + pd.to_timedelta(np.sort(rng.uniform(0, 30 * 86400, n)), unit="s")
    tx = _frame([(f"tx-{i}", t[i], f"T{i % 5}") for i in range(n)])
    fraud = rng.random(n) < 0.05
    labels = pd.DataFrame(
        {
            "transaction_id": tx["transaction_id"][fraud],
            "event_time": tx["event_time"][fraud],
            "label_time": tx["event_time"][fraud] + pd.Timedelta(days=7, hours=1),
            "is_fraud": True,
            "label_source": "chargeback",
        }
    )
    spec = FeatureSpec.from_names(["terminal_fraud_count_7d", "terminal_lag7d_fraud_count_7d"])
    feats = build_offline(tx, labels, spec)
    assert (feats["terminal_fraud_count_7d"] == 0).all()
    late = tx["event_time"] > T0 + 15 * DAY
    assert (feats.loc[late.to_numpy(), "terminal_lag7d_fraud_count_7d"] > 0).mean() > 0.9


def test_a_delayed_family_brings_the_state_it_reads() -> None:
    assert families_for(["merchant_lag7d_fraud_rate_7d"]) == ["merchant", "merchant_lag7d"]
    assert lookback_days(["terminal", "terminal_lag14d", "merchant_lag3d"]) == 44
    assert lookback_days(["card"]) == 30
    assert set(LAG_FAMILIES) == {
        f"{e}_lag{d}" for e in ("terminal", "merchant") for d in ("1d", "3d", "7d", "14d")
    }


def test_definitions_carry_their_delay_and_the_default_spec_takes_one_delay() -> None:
    d = REGISTRY.get("terminal_lag7d_fraud_rate_30d")
    assert d.delay == "7d" and d.window == "30d" and d.to_row()["label_delay"] == "7d"
    assert REGISTRY.get("terminal_fraud_rate_30d").delay is None
    base = FeatureSpec.default()
    assert not any("_lag" in n for n in base.names)
    three = FeatureSpec.default(delay="3d")
    added = [n for n in three.names if n not in base.names]
    assert len(added) == 18 and all("_lag3d_" in n for n in added)
    with pytest.raises(FeatureSpecError, match="unknown label delay"):
        FeatureSpec.default(delay="2d")


# -- which delay -------------------------------------------------------------------------------
def _labels_with_delays(days: np.ndarray, as_of_us: int) -> tuple[np.ndarray, np.ndarray]:
    e = as_of_us - 20 * DAY_US - (np.arange(len(days)) * 1_000_000)
    return e, e + (days * DAY_US).astype(np.int64)


def test_the_delay_is_the_smallest_registered_one_covering_the_labels() -> None:
    as_of = 100 * DAY_US
    rng = np.random.default_rng(1)
    # 60 % within hours, the rest after ~2-3 days: 80 % are in by 3 days
    days = np.where(rng.random(400) < 0.6, rng.uniform(0, 0.3, 400), rng.uniform(1.5, 2.9, 400))
    e, lt = _labels_with_delays(days, as_of)
    choice = choose_risk_delay(np.zeros(20_000), e, lt, as_of_us=as_of, coverage=0.8, fallback_days=7)
    assert choice.source == "curve" and choice.delay == "3d" and choice.n_frauds == 400
    assert choice.coverage_by_delay["3d"] == 1.0 and choice.coverage_by_delay["1d"] < 0.8
    # the folds then choose among none and every delay whose window holds >= 10 % of its labels
    assert choice.candidates() == ["none", "1d", "3d", "7d", "14d"] and choice.curve_delay == "3d"
    assert choice.candidates(min_coverage=0.7) == ["none", "3d", "7d", "14d"]
    assert choice.global_fraud_rate == pytest.approx(400 / 20_000)
    # a fixed 7-day delay (the public data set's): exactly 7 d
    e, lt = _labels_with_delays(np.full(100, 7.0), as_of)
    seven = choose_risk_delay([], e, lt, as_of_us=as_of, coverage=0.95, fallback_days=1)
    assert seven.delay == "7d" and seven.candidates() == ["none", "7d", "14d"]  # 1 d, 3 d: no labels
    # labels slower than the grid: the longest delay
    e, lt = _labels_with_delays(np.full(100, 13.5), as_of)
    assert choose_risk_delay([], e, lt, as_of_us=as_of, coverage=0.9, fallback_days=1).delay == "14d"


def test_too_few_observed_labels_fall_back_to_the_label_maturity() -> None:
    as_of = 100 * DAY_US
    e, lt = _labels_with_delays(np.full(20, 1.0), as_of)
    recent = np.full(500, as_of - DAY_US)  # recent events: their labels may not have arrived yet
    choice = choose_risk_delay(
        [],
        np.concatenate([e, recent]),
        np.concatenate([lt, recent + DAY_US // 2]),
        as_of_us=as_of,
        coverage=0.8,
        fallback_days=5,
    )
    assert choice.source == "fallback" and choice.delay == "7d" and choice.n_frauds == 20
    assert "20 fully observed" in choice.note
    assert fixed_risk_delay("1d", coverage=0.8).source == "param"
    assert [grid_delay(x) for x in (0, 0.5, 1, 1.01, 3, 6.9, 7, 20)] == [
        "1d",
        "1d",
        "1d",
        "3d",
        "3d",
        "7d",
        "7d",
        "14d",
    ]
    with pytest.raises(ValueError, match="unknown label delay"):
        fixed_risk_delay("5d", coverage=0.8)
