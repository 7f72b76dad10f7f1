"""Synthetic paired shadow evidence for gate tests (no warehouse)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pandas as pd

from fraudops.release.evidence import ShadowEvidence, prepare_paired

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def model_side(
    y: np.ndarray,
    rng: np.random.Generator,
    *,
    strength: float,
    flag_share: float = 0.05,
    latency_ms: float = 1.0,
    error_rate: float = 0.0,
    failure: str = "RuntimeError",
    constant: float | None = None,
) -> dict[str, Any]:
    """Scores separating frauds by ``strength`` (logit units), decisions at the top ``flag_share``;
    ``error_rate`` of the rows fail with the logged error ``failure``."""
    n = len(y)
    logit = strength * y + rng.normal(size=n) - 3.0
    score = 1.0 / (1.0 + np.exp(-logit)) if constant is None else np.full(n, constant)
    threshold = np.quantile(score, 1.0 - flag_share)
    decision = np.where(score >= threshold, "decline", "approve").astype(object)
    error = np.full(n, None, dtype=object)
    failed = rng.random(n) < error_rate
    error[failed] = failure
    score_out = score.astype(object)
    score_out[failed] = None
    decision[failed] = None
    return {
        "score": score_out,
        "decision": decision,
        "latency_ms": rng.gamma(4.0, latency_ms / 4.0, size=n),
        "fallback": np.zeros(n, dtype=bool),
        "error": error,
        "feature_set": np.full(n, "fs1", dtype=object),
        "present": np.ones(n, dtype=bool),
    }


def make_evidence(
    *,
    n: int = 6000,
    fraud_rate: float = 0.05,
    seed: int = 7,
    champion: dict[str, Any] | None = None,
    challenger: dict[str, Any] | None = None,
    stage: str = "promotion",
    parity_break: float = 0.0,
) -> ShadowEvidence:
    """Paired frame: ``champion``/``challenger`` are ``model_side`` kwargs (incumbent/candidate)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < fraud_rate).astype(int)
    inc = model_side(y, rng, **(champion or {"strength": 2.0}))
    can = model_side(y, rng, **(challenger or {"strength": 2.0}))
    features = [json.dumps([float(i % 97), float(y[i])]) for i in range(n)]
    can_features = list(features)
    for i in np.flatnonzero(rng.random(n) < parity_break):
        can_features[i] = json.dumps([-1.0, 0.0])
    # promotion: production = incumbent (champion); probation: production = candidate (new champion)
    prod, shadow = (inc, can) if stage == "promotion" else (can, inc)
    prod_feat, shadow_feat = (features, can_features) if stage == "promotion" else (can_features, features)
    raw = pd.DataFrame(
        {
            "transaction_id": [f"tx{i}" for i in range(n)],
            "event_time": [T0 + dt.timedelta(minutes=i) for i in range(n)],
            "amount": rng.lognormal(3.0, 1.0, size=n),
            **{f"prod_{k}": v for k, v in prod.items()},
            **{f"shadow_{k}": v for k, v in shadow.items()},
            "prod_features": prod_feat,
            "shadow_features": shadow_feat,
            # fraud labels arrive; genuine stays unlabeled (matured → genuine)
            "is_fraud": pd.array([True if v else None for v in y], dtype="boolean"),
            "label_time": [T0 + dt.timedelta(days=20)] * n,
        }
    )
    label_as_of = T0 + dt.timedelta(days=30)
    candidate_side = "shadow" if stage == "promotion" else "prod"
    frame = prepare_paired(
        raw, candidate_side=candidate_side, label_as_of=label_as_of, label_maturity_hours=168
    )
    return ShadowEvidence(
        stage=stage,  # type: ignore[arg-type]
        model_name="fraud-detector",
        candidate_version="2",
        incumbent_version="1",
        since=T0,
        until=T0 + dt.timedelta(days=5),
        label_as_of=label_as_of,
        label_maturity_hours=168,
        frame=frame,
    )
