"""Time-aware model selection: forward-chaining folds with a gap, and the Optuna search in a budget."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from training_data import Synthetic

from fraudops.training.selection import forward_folds, search_lightgbm
from fraudops.training.train import LightGBMParams


def test_forward_folds_train_on_the_past_only_with_a_gap_before_each_block() -> None:
    rng = np.random.default_rng(1)
    t = pd.Series(pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.uniform(0, 20, 5000), unit="D"))
    y = (rng.random(5000) < 0.05).astype(int)
    folds = forward_folds(t, y, n_folds=3, gap_days=2.0, valid_frac=0.1)
    assert len(folds) == 3
    previous_end = None
    for fold in folds:
        train_t, valid_t = t.iloc[fold.train_idx], t.iloc[fold.valid_idx]
        assert train_t.max() < valid_t.min() - pd.Timedelta(days=2)  # never a row from the gap
        assert not set(fold.train_idx) & set(fold.valid_idx)
        if previous_end is not None:  # consecutive blocks, in time order
            assert pd.Timestamp(fold.valid_start) == previous_end
        previous_end = pd.Timestamp(fold.valid_end)
    assert pd.Timestamp(folds[-1].valid_end) == t.max() and folds[-1].valid_idx.size > 0
    # Each later fold learns from more of the past.
    assert [f.train_idx.size for f in folds] == sorted(f.train_idx.size for f in folds)
    with pytest.raises(ValueError, match="no forward fold has frauds on both sides"):
        forward_folds(t, y, n_folds=3, gap_days=30.0)
    with pytest.raises(ValueError, match="n_folds"):
        forward_folds(t, y, n_folds=0)


def test_the_search_starts_from_the_configured_parameters_and_keeps_its_budget(synthetic: Synthetic) -> None:
    base = LightGBMParams(n_estimators=60, early_stopping_rounds=10, num_leaves=2, learning_rate=0.3)
    result = search_lightgbm(
        synthetic.X,
        synthetic.y,
        synthetic.event_time,
        base,
        budget_s=60.0,
        gap_days=1.0,
        max_trials=4,
        seed=3,
    )
    assert result.n_trials == 4 and len(result.fold_scores) == len(result.folds) == 3
    # Trial 0 is the configured model: the choice can only be as good or better on the same folds.
    assert result.best_score >= result.default_score
    assert result.best_score == pytest.approx(float(np.mean(result.fold_scores)))
    assert set(result.chosen) == {
        "num_leaves",
        "learning_rate",
        "min_child_samples",
        "colsample_bytree",
        "reg_lambda",
        "imbalance",
    }
    assert result.params.num_leaves == result.chosen["num_leaves"] and result.params.n_estimators == 60
    flat = result.flat()
    assert flat["search_trials"] == 4 and str(flat["search_fold_ap"]).count(",") == 2

    quick = search_lightgbm(
        synthetic.X, synthetic.y, synthetic.event_time, base, budget_s=0.5, gap_days=1.0, max_trials=10_000
    )
    # The budget stops new trials; the one running when it ran out finishes.
    assert 1 <= quick.n_trials < 50 and quick.seconds < 30
    with pytest.raises(ValueError, match="budget_s"):
        search_lightgbm(synthetic.X, synthetic.y, synthetic.event_time, base, budget_s=0)


def test_the_folds_pick_the_feature_set_that_carries_the_signal(synthetic: Synthetic) -> None:
    """A planted informative column: the set holding it wins on the folds; noise alone loses; the
    preferred set wins ties (and any margin within the tolerance)."""
    from fraudops.training.selection import compare_feature_sets

    rng = np.random.default_rng(5)
    X = synthetic.X.copy()
    X["signal"] = synthetic.y * 1.5 + rng.normal(size=len(X))
    X["noise"] = rng.normal(size=len(X))
    base_cols = [c for c in synthetic.X.columns][:2]  # a weak base
    sets = {"none": base_cols, "with_signal": [*base_cols, "signal"], "with_noise": [*base_cols, "noise"]}
    params = LightGBMParams(n_estimators=60, early_stopping_rounds=10, num_leaves=8)
    choice = compare_feature_sets(
        X, synthetic.y, synthetic.event_time, sets, params, prefer="none", gap_days=1.0
    )
    assert choice.chosen == "with_signal", choice.mean_ap
    assert choice.mean_ap["with_signal"] > choice.mean_ap["none"] + 0.05
    assert all(len(v) == len(choice.folds) for v in choice.fold_ap.values())
    same = compare_feature_sets(
        X,
        synthetic.y,
        synthetic.event_time,
        {"a": base_cols, "b": base_cols},
        params,
        prefer="b",
        gap_days=1.0,
    )
    assert same.chosen == "b" and same.mean_ap["a"] == same.mean_ap["b"]
    lenient = compare_feature_sets(
        X, synthetic.y, synthetic.event_time, sets, params, prefer="none", gap_days=1.0, tolerance=1.0
    )
    assert lenient.chosen == "none"
    with pytest.raises(ValueError, match="prefer"):
        compare_feature_sets(X, synthetic.y, synthetic.event_time, sets, params, prefer="nope")
