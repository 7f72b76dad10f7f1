"""Synthetic training data for the training tests: ~1% fraud with a signal trees can learn.

The fraud signal is mostly an interaction (``f0 * f1`` large with either sign pattern), which a
linear model on the raw features cannot represent, so LightGBM should beat the logistic baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraudops.training.train import LightGBMParams, TimeSplit, TrainResult

N_FEATURES = 8

#: Small and fast: enough trees to learn the interaction, two threads at most.
FAST_LGBM = LightGBMParams(n_estimators=150, learning_rate=0.1, num_threads=2, early_stopping_rounds=30)


@dataclass(frozen=True)
class Synthetic:
    X: pd.DataFrame
    y: np.ndarray
    event_time: pd.Series
    amount: np.ndarray
    card_id: np.ndarray
    feature_spec: dict[str, object]


def make_feature_spec(n_features: int = N_FEATURES, spec_id: str = "fs-test") -> dict[str, object]:
    return {"id": spec_id, "features": [{"name": f"f{i}", "version": 1} for i in range(n_features)]}


def make_dataset(n: int = 20_000, seed: int = 7, days: int = 20, n_cards: int = 3_000) -> Synthetic:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    # Interaction (f0*f1 large: XOR-like in sign) + a threshold effect; tuned to ~1% positives.
    logit = -7.0 + 5.9 * (X[:, 0] * X[:, 1] > 2.0) + 2.5 * (X[:, 2] > 2.0)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    # Event times shuffled relative to row order, so the split must sort by time itself.
    seconds = np.sort(rng.uniform(0, days * 86_400, n))
    order = rng.permutation(n)
    event_time = pd.Series(start + pd.to_timedelta(seconds[order], unit="s"), name="event_time")
    amount = np.round(rng.gamma(2.0, 40.0, n) * np.where(y == 1, 2.5, 1.0), 2)
    card_id = np.array([f"card-{i}" for i in rng.integers(0, n_cards, n)])
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(N_FEATURES)])
    return Synthetic(frame, y, event_time, amount, card_id, make_feature_spec())


def make_extract(n: int = 5_000, seed: int = 3) -> pd.DataFrame:
    """A raw training extract (transactions columns + is_fraud) that passes the default suite."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    return pd.DataFrame(
        {
            "transaction_id": [f"tx-{i}" for i in range(n)],
            "event_time": start + pd.to_timedelta(np.sort(rng.uniform(0, 7 * 86_400, n)), unit="s"),
            "card_id": [f"card-{i}" for i in rng.integers(0, 500, n)],
            "customer_id": [f"cust-{i}" for i in rng.integers(0, 400, n)],
            "terminal_id": [f"term-{i}" for i in rng.integers(0, 200, n)],
            "merchant_id": [f"m-{i}" for i in rng.integers(0, 50, n)],
            "amount": np.round(rng.gamma(2.0, 40.0, n), 2),
            "currency": "EUR",
            "channel": rng.choice(["card_present", "ecommerce", "mobile"], n),
            "is_fraud": rng.random(n) < 0.01,
        }
    )


@dataclass(frozen=True)
class Trained:
    """Both families fitted on the same time split of one dataset."""

    data: Synthetic
    split: TimeSplit
    lgbm: TrainResult
    logreg: TrainResult
