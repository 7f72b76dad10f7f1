"""Synthetic paired shadow evidence for gate tests (no warehouse)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Literal

import numpy as np
import pandas as pd

from fraudops.release.evidence import ShadowEvidence, prepare_paired
from fraudops.release.policy import GatePolicy

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)

#: Small-sample policy for the synthetic evidence (6000 events, 5 % fraud, ~300 frauds): floors low
#: enough to decide, an alert budget equal to ``model_side``'s default flag share (so a served
#: decline rate is on budget), and a ΔAP margin of 0.1 (565 planned frauds: the confidence sequences
#: are tuned near the synthetic sample size).
SMALL_POLICY = GatePolicy(
    version="test.1",
    alert_budget=0.05,
    max_ap_regression=0.1,
    min_labeled_frauds_floor=50,
    min_scored_events_floor=1000,
    max_error_rate=0.01,
    max_p99_latency_ms=10.0,
    max_fpr_increase=0.005,
    probation_min_scored_events=1000,
    probation_min_labeled_frauds=50,
    probation_max_p99_latency_ms=5.0,
)


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
    label_as_of: dt.datetime | None = None,
    maturity_hours: float = 168.0,
    label_delay: dt.timedelta = dt.timedelta(days=20),
    labeled_events: slice | None = None,
) -> ShadowEvidence:
    """Paired frame: ``champion``/``challenger`` are ``model_side`` kwargs (incumbent/candidate).

    Events are one a minute from ``T0`` (6000 events: about 4.2 days); fraud labels arrive
    ``label_delay`` after ``T0``. By default labels are read 30 days after ``T0`` with a 168 h
    maturity, so every event is matured and every fraud label known; pass ``label_as_of`` /
    ``maturity_hours`` to make events (or labels) young, and ``labeled_events`` to give fraud
    labels only to those events (the other frauds' labels have not arrived).
    """
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
    labeled = y.copy()
    if labeled_events is not None:
        keep = np.zeros(n, dtype=bool)
        keep[labeled_events] = True
        labeled[~keep] = 0
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
            "is_fraud": pd.array([True if v else None for v in labeled], dtype="boolean"),
            "label_time": [T0 + label_delay] * n,
        }
    )
    label_as_of = T0 + dt.timedelta(days=30) if label_as_of is None else label_as_of
    # Labels are only known once they have arrived (the SQL filters label_time <= label_as_of).
    if T0 + label_delay > label_as_of:
        raw["is_fraud"] = pd.array([None] * n, dtype="boolean")
        raw["label_time"] = pd.NaT
    candidate_side: Literal["prod", "shadow"] = "shadow" if stage == "promotion" else "prod"
    frame = prepare_paired(
        raw, candidate_side=candidate_side, label_as_of=label_as_of, label_maturity_hours=maturity_hours
    )
    return ShadowEvidence(
        stage=stage,  # type: ignore[arg-type]
        model_name="fraud-detector",
        candidate_version="2",
        incumbent_version="1",
        since=T0,
        until=T0 + dt.timedelta(days=5),
        label_as_of=label_as_of,
        label_maturity_hours=maturity_hours,
        frame=frame,
    )
