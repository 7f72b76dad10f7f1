"""Thresholds matched to an alert budget on the same events."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fraudops.release.operating_point import match_threshold


def test_flags_at_most_the_budget_and_as_close_as_possible() -> None:
    rng = np.random.default_rng(0)
    s = rng.random(10_000)
    for budget in (0.001, 0.01, 0.0333, 0.5):
        pt = match_threshold(s, budget)
        flagged = pt.flags(s).mean()
        assert flagged == pytest.approx(pt.achieved) and flagged <= budget
        assert flagged > budget - 1 / len(s)  # distinct scores: one event short at most
        # the lowest such threshold: one level lower would exceed the budget
        below = s[s < pt.threshold].max()
        assert (s >= below).mean() > budget
        assert pt.n == len(s) and pt.kind == "alert_rate" and pt.budget == budget


def test_ties_can_make_the_budget_unattainable() -> None:
    s = np.array([0.1] * 90 + [0.9] * 10)
    pt = match_threshold(s, 0.05)  # the top level alone flags 10 %
    assert pt.threshold == math.inf and pt.achieved == 0.0 and not pt.flags(s).any()
    assert pt.to_dict()["threshold"] is None  # JSON-safe
    pt = match_threshold(s, 0.1)
    assert pt.threshold == 0.9 and pt.achieved == pytest.approx(0.1)
    pt = match_threshold(np.array([0.1] * 80 + [0.5] * 15 + [0.9] * 5), 0.12)
    assert pt.threshold == 0.9 and pt.achieved == pytest.approx(0.05)  # 20 % would exceed 12 %


def test_monotone_transform_gives_the_transformed_threshold_and_the_same_flags() -> None:
    rng = np.random.default_rng(1)
    s = np.round(rng.beta(1, 20, 20_000), 4)  # with ties
    pt = match_threshold(s, 0.01)

    def transform(x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) ** 4 * 3.0 + 1.0

    pt2 = match_threshold(transform(s), 0.01)
    assert pt2.threshold == pytest.approx(float(transform(np.array(pt.threshold))), rel=1e-12)
    assert np.array_equal(pt.flags(s), pt2.flags(transform(s)))
    assert pt2.achieved == pt.achieved


def test_empty_and_non_finite_input() -> None:
    pt = match_threshold(np.array([]), 0.01)
    assert pt.threshold == math.inf and pt.n == 0 and pt.achieved == 0.0
    pt = match_threshold(np.array([np.nan, 0.2, 0.4, np.inf]), 0.5)
    assert pt.n == 2 and pt.threshold == 0.4  # NaN/inf ignored: measured on finite scores
    with pytest.raises(ValueError):
        match_threshold(np.array([0.1]), 0.0)
    with pytest.raises(ValueError):
        match_threshold(np.array([0.1]), 1.0)


def test_fpr_budget_is_matched_on_matured_genuine_rows() -> None:
    from fraudops.release.policy import GatePolicy
    from fraudops.release.quality import match_points

    rng = np.random.default_rng(2)
    y = (rng.random(20_000) < 0.05).astype(int)
    s = rng.random(20_000) + y
    genuine = y == 0
    policy = GatePolicy(budget_kind="fpr", alert_budget=0.02)
    cand, inc = match_points(s, s * 2, genuine, policy)
    assert cand.kind == "fpr" and cand.n == int(genuine.sum())
    assert cand.flags(s)[genuine].mean() <= 0.02 and np.array_equal(cand.flags(s), inc.flags(s * 2))
    assert cand.flags(s).mean() > 0.05  # the alert rate includes the frauds it catches
