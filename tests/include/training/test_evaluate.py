"""Holdout metrics: hand-checked business numbers, and the plots exist."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from training_data import Trained

from fraudops.training.evaluate import (
    card_precision_at_k,
    compute_metrics,
    evaluate,
    feature_importance,
    threshold_at_fpr,
)


def test_business_metrics_by_hand() -> None:
    y = np.array([1, 0, 0, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.6, 0.05])
    amount = np.array([100.0, 50.0, 10.0, 70.0, 30.0, 5.0])
    cards = np.array(["a", "b", "c", "d", "e", "f"])
    times = pd.Series(pd.to_datetime(["2026-01-01"] * 6, utc=True))
    m = compute_metrics(y, scores, amount=amount, card_id=cards, event_time=times, threshold=0.5, k=2)
    assert m["money_caught"] == 100.0
    assert m["money_falsely_declined"] == 80.0
    assert m["fraud_capture_rate"] == 0.5
    assert m["false_positive_rate"] == 0.5
    assert m["money_capture_rate"] == pytest.approx(100 / 170)
    assert m["card_precision_at_2"] == 0.5  # top-2 cards a (fraud), b (genuine)
    assert m["recall_at_fpr_0.001"] == 0.5  # only 'a' ranks above every genuine
    assert all(isinstance(v, float) for v in m.values())
    # Calibration: mean squared error of the scores as probabilities.
    assert m["brier_score"] == pytest.approx((0.01 + 0.64 + 0.01 + 0.64 + 0.36 + 0.0025) / 6)
    # At an alert budget of a third of the events: the top 2 (a fraud, b genuine) are flagged.
    b = compute_metrics(y, scores, amount=amount, card_id=cards, event_time=times, alert_budget=1 / 3)
    assert (b["alert_rate_at_budget"], b["capture_at_budget"], b["precision_at_budget"]) == (1 / 3, 0.5, 0.5)
    assert b["money_capture_at_budget"] == pytest.approx(100 / 170)
    assert b["card_k_at_budget"] == 2.0 and b["card_precision_at_budget"] == 0.5
    with pytest.raises(ValueError, match="alert_budget"):
        compute_metrics(y, scores, amount=amount, card_id=cards, event_time=times, alert_budget=0.0)


def test_card_precision_can_leave_out_cards_already_known_compromised() -> None:
    """Day 2's best-scored card had a fraud on day 1: it is blocked already, and an analyst who
    reviews it again finds nothing new; with ``exclude_known`` day 2's top card is the next one."""
    y = np.array([1, 0, 1, 1, 0])
    scores = np.array([0.9, 0.5, 0.95, 0.4, 0.6])
    cards = np.array(["a", "b", "a", "c", "d"])
    times = pd.Series(pd.to_datetime(["2026-01-01"] * 2 + ["2026-01-02"] * 3, utc=True))
    assert card_precision_at_k(y, scores, cards, times, k=1) == 1.0  # a, then a again
    assert card_precision_at_k(y, scores, cards, times, k=1, exclude_known=True) == 0.5  # a, then d
    assert card_precision_at_k(y, scores, cards, times, k=2, exclude_known=True) == 0.5  # {a, b}; {d, c}


def test_card_precision_uses_max_score_per_card_and_day() -> None:
    y = np.array([0, 1, 0, 0, 0, 1])
    scores = np.array([0.1, 0.3, 0.9, 0.2, 0.8, 0.7])
    cards = np.array(["a", "a", "b", "c", "d", "c"])
    times = pd.Series(pd.to_datetime(["2026-01-01"] * 3 + ["2026-01-02"] * 3, utc=True))
    # Day 1: top-1 card is b (0.9, genuine) → 0. Day 2: top-1 is d (0.8, genuine) → 0.
    assert card_precision_at_k(y, scores, cards, times, k=1) == 0.0
    # k=2: day 1 {b, a} → a compromised → 0.5; day 2 {d, c} → c compromised → 0.5.
    assert card_precision_at_k(y, scores, cards, times, k=2) == 0.5


def test_evaluate_on_holdout_writes_plots(trained: Trained, tmp_path: Path) -> None:
    d, s = trained.data, trained.split
    thr = threshold_at_fpr(d.y[s.valid_idx], trained.lgbm.predict_proba(d.X.iloc[s.valid_idx]), 0.01)
    h = s.holdout_idx
    result = evaluate(
        d.y[h],
        trained.lgbm.predict_proba(d.X.iloc[h]),
        amount=d.amount[h],
        card_id=d.card_id[h],
        event_time=d.event_time.iloc[h],
        threshold=thr,
        plots_dir=tmp_path,
    )
    m = result.metrics
    assert 0.8 < m["roc_auc"] <= 1.0
    assert m["recall_at_fpr_0.001"] <= m["recall_at_fpr_0.005"] <= m["recall_at_fpr_0.01"]
    assert 0.0 <= m["card_precision_at_100"] <= 1.0
    assert m["false_positive_rate"] < 0.03  # threshold picked at 1% FPR on validation
    for png in result.plots.values():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(result.plots) == {"pr_curve", "score_distribution", "reliability"}
    # Class-weighted training inflates scores: worse calibrated than always saying "no fraud" (the
    # fraud rate), which is what the Brier score and the reliability plot are there to show.
    assert m["fraud_rate"] < m["brier_score"] < 0.25
    assert m["alert_rate_at_budget"] >= 0.01 and m["capture_at_budget"] >= m["recall_at_fpr_0.001"]


def test_feature_importance_finds_the_planted_signal(trained: Trained) -> None:
    """The synthetic data's label depends on f0*f1 and f2 only."""
    names = list(trained.data.X.columns)
    gain = feature_importance(trained.lgbm.model, names)
    assert set(list(gain)[:3]) == {"f0", "f1", "f2"} and sum(gain.values()) == pytest.approx(1.0)
    coef = feature_importance(trained.logreg.model, names)
    assert next(iter(coef)) == "f2" and sum(coef.values()) == pytest.approx(1.0)
    with pytest.raises(TypeError, match="no feature importance"):
        feature_importance(object(), names)
