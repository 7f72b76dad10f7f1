"""Time-ordered splits and the two model families on a signal where trees should win."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score
from training_data import FAST_LGBM, Synthetic, Trained

from fraudops.training.train import SplitConfig, predict_proba, time_split, train_model


def test_time_split_never_leaks_future_into_train(synthetic: Synthetic) -> None:
    ts = pd.to_datetime(synthetic.event_time, utc=True)
    split = time_split(synthetic.event_time, SplitConfig(valid_frac=0.2, holdout_frac=0.2))
    parts = (split.train_idx, split.valid_idx, split.holdout_idx)
    # A partition of all rows...
    assert sum(len(p) for p in parts) == len(ts)
    assert len(np.unique(np.concatenate(parts))) == len(ts)
    # ...ordered in time, with the cut-offs between the sets.
    assert ts.iloc[split.train_idx].max() < split.valid_start <= ts.iloc[split.valid_idx].min()
    assert ts.iloc[split.valid_idx].max() < split.holdout_start <= ts.iloc[split.holdout_idx].min()
    assert abs(len(split.holdout_idx) / len(ts) - 0.2) < 0.01


def test_time_split_ties_go_to_the_later_set() -> None:
    times = pd.Series(pd.to_datetime(["2026-01-01"] * 5 + ["2026-01-02"] * 5 + ["2026-01-03"] * 5, utc=True))
    split = time_split(times, SplitConfig(valid_frac=0.3, holdout_frac=0.3))
    assert len(split.train_idx) == 5 and len(split.valid_idx) == 5 and len(split.holdout_idx) == 5


def test_time_split_with_explicit_cutoffs(synthetic: Synthetic) -> None:
    cfg = SplitConfig(
        valid_start=pd.Timestamp("2026-01-10", tz="UTC"), holdout_start=pd.Timestamp("2026-01-15", tz="UTC")
    )
    split = time_split(synthetic.event_time, cfg)
    ts = pd.to_datetime(synthetic.event_time, utc=True)
    assert (ts.iloc[split.train_idx] < cfg.valid_start).all()
    assert (ts.iloc[split.holdout_idx] >= cfg.holdout_start).all()


def test_lightgbm_beats_baseline_on_interaction(trained: Trained) -> None:
    d, h = trained.data, trained.split.holdout_idx
    ap_lgbm = average_precision_score(d.y[h], trained.lgbm.predict_proba(d.X.iloc[h]))
    ap_logreg = average_precision_score(d.y[h], trained.logreg.predict_proba(d.X.iloc[h]))
    print(f"holdout AP: lightgbm={ap_lgbm:.4f} logreg={ap_logreg:.4f}")
    assert ap_lgbm > 2 * ap_logreg
    assert ap_lgbm > 0.1
    assert trained.lgbm.best_iteration is not None and trained.lgbm.best_iteration <= FAST_LGBM.n_estimators
    assert trained.lgbm.params["scale_pos_weight"] > 50  # ~1% positives → ~99


def test_lightgbm_is_deterministic(synthetic: Synthetic, trained: Trained) -> None:
    again = train_model(
        synthetic.X, synthetic.y, synthetic.event_time, split=trained.split, lightgbm_params=FAST_LGBM
    )
    X = synthetic.X.iloc[trained.split.holdout_idx]
    assert np.array_equal(predict_proba(again.model, X), trained.lgbm.predict_proba(X))


def test_bad_inputs_are_rejected(synthetic: Synthetic) -> None:
    with pytest.raises(ValueError, match="unknown model family"):
        train_model(synthetic.X, synthetic.y, synthetic.event_time, family="xgboost")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same rows"):
        train_model(synthetic.X.iloc[:10], synthetic.y, synthetic.event_time)
