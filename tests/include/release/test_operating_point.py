"""Thresholds matched to an alert budget on the same events."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fraudops.release.operating_point import match_threshold


def test_flags_exactly_the_budget() -> None:
    rng = np.random.default_rng(0)
    s = rng.random(10_000)
    for budget in (0.001, 0.01, 0.0333, 0.5):
        pt = match_threshold(s, budget)
        flagged = pt.flags(s).mean()
        assert flagged == pytest.approx(pt.achieved) and flagged == pytest.approx(budget)
        # distinct scores: all above the threshold flagged, the one at it drawn with what is left
        on_score = s >= pt.threshold if pt.tie_share == 1.0 else s > pt.threshold
        assert on_score.mean() == pytest.approx(pt.ranked)
        assert budget - 1 / len(s) < pt.ranked <= budget and 0.0 < pt.tie_share <= 1.0
        assert pt.n == len(s) and pt.kind == "alert_rate" and pt.budget == budget


def test_ties_at_the_threshold_are_drawn_to_attain_the_budget() -> None:
    s = np.array([0.1] * 90 + [0.9] * 10)
    pt = match_threshold(s, 0.05)  # the top level alone holds 10 %: half of it is drawn
    assert (pt.threshold, pt.ranked, pt.drawn) == (0.9, 0.0, 1.0) and pt.tie_share == pytest.approx(0.5)
    assert pt.achieved == pytest.approx(0.05) and list(pt.flags(np.array([0.95, 0.9, 0.5]))) == [
        1.0,
        0.5,
        0.0,
    ]
    pt = match_threshold(s, 0.1)  # attained exactly: nothing drawn
    assert pt.threshold == 0.9 and pt.tie_share == 1.0 and pt.achieved == pytest.approx(0.1)
    assert pt.drawn == 0.0 and pt.flags(s).sum() == 10
    pt = match_threshold(np.array([0.1] * 80 + [0.5] * 15 + [0.9] * 5), 0.12)
    # 5 % above, and 7 of the 15 tied at 0.5
    assert pt.threshold == 0.5 and pt.tie_share == pytest.approx(7 / 15) and pt.ranked == pytest.approx(0.05)
    assert pt.achieved == pytest.approx(0.12) and pt.drawn == pytest.approx(7 / 12)
    assert pt.to_dict()["tie_share"] == pytest.approx(7 / 15)


def test_the_service_draw_flags_the_tie_share_of_tied_events_on_average() -> None:
    from fraudops.serving.rows import decide, tie_draw

    ids = [f"tx-{i}" for i in range(40_000)]
    at = [decide(0.5, 0.5, tie_share=0.3, key=k) for k in ids]
    assert abs(at.count("decline") / len(ids) - 0.3) < 0.01
    # the same transaction always gets the same answer (a retry, another replica)
    assert [decide(0.5, 0.5, tie_share=0.3, key=k) for k in ids[:500]] == at[:500]
    assert all(0.0 <= tie_draw(k) < 1.0 for k in ids[:500])
    assert decide(0.51, 0.5, tie_share=0.01, key="x") == "decline"
    assert decide(0.49, 0.5, tie_share=1.0, key="x") == "approve"
    assert {decide(0.5, 0.5, tie_share=1.0, key=k) for k in ids[:100]} == {"decline"}
    # not drawn into a decline: an event at the threshold is still in the review band
    assert {decide(0.5, 0.5, review_band=0.1, tie_share=1e-9, key=k) for k in ids[:100]} == {"review"}


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
    assert (
        pt.threshold == math.inf and pt.n == 0 and pt.achieved == 0.0 and not pt.flags(np.array([0.3])).any()
    )
    assert pt.to_dict()["threshold"] is None  # JSON-safe
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
