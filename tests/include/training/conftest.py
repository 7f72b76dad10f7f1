"""Fixtures for the training tests: one synthetic dataset and one trained pair of models per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from training_data import FAST_LGBM, Synthetic, Trained, make_dataset


@pytest.fixture(scope="session")
def synthetic() -> Synthetic:
    return make_dataset()


@pytest.fixture(scope="session")
def trained(synthetic: Synthetic) -> Trained:
    from fraudops.training.train import time_split, train_model

    split = time_split(synthetic.event_time)
    kw: dict[str, Any] = {"split": split}
    lgbm = train_model(
        synthetic.X, synthetic.y, synthetic.event_time, family="lightgbm", lightgbm_params=FAST_LGBM, **kw
    )
    logreg = train_model(synthetic.X, synthetic.y, synthetic.event_time, family="logreg", **kw)
    return Trained(synthetic, split, lgbm, logreg)


@pytest.fixture(scope="session")
def artifact_dir(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LightGBM bundle built once; tests that damage it copy it first."""
    from fraudops.training.package import build_artifact

    d, s = trained.data, trained.split
    info = build_artifact(
        trained.lgbm.model,
        family="lightgbm",
        out_dir=tmp_path_factory.mktemp("artifact") / "bundle",
        feature_spec=d.feature_spec,
        X_reference=d.X.iloc[s.train_idx],
        X_holdout=d.X.iloc[s.holdout_idx],
        metrics={"roc_auc": 0.9, "average_precision": 0.2},
        decision_threshold=0.8,
        latency_budget_ms=50.0,
        reference_rows=5_000,
    )
    return info.path
