"""The gate policy: one frozen, typed, versioned object for the whole release lifecycle.

Why one object: a promotion or a rollback must be explainable months later. Every decision row in
``gate_decisions`` stores the policy ``version`` and ``fingerprint`` it was taken under, and the
policy is plain data (``to_dict``/``from_dict``) so it can travel through XCom, be logged to MLflow
and be reviewed in a pull request like any other change. Changing a threshold means bumping
``version``.

Thresholds follow Evidently's style: typed fields, each with a docstring (exposed as the field's
description). Sample sizes are not magic numbers: :func:`required_sample` derives them from the
precision the policy wants on the fraud capture rate, with absolute floors on top.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Evidently drift methods whose value is a p-value (drift when value < threshold). Every other
#: supported method is a distance (drift when value >= threshold).
P_VALUE_METHODS: frozenset[str] = frozenset(
    {"ks", "chisquare", "z", "t_test", "mannw", "anderson", "cramer_von_mises", "fisher_exact", "g_test"}
)

DriftMethod = Literal[
    "wasserstein",
    "psi",
    "jensenshannon",
    "hellinger",
    "kl_div",
    "ks",
    "anderson",
    "cramer_von_mises",
    "mannw",
]


class GatePolicy(BaseModel):
    """Every threshold the release gates use: shadow promotion and post-promotion probation."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    version: str = "2026-11-29.2"
    """Policy version, stored with every decision; bump it whenever any value below changes."""

    # -- statistics -------------------------------------------------------------------------
    confidence_level: float = Field(default=0.95, gt=0.5, lt=1.0)
    """Two-sided confidence level of every bootstrap interval (and of the sample-size formula)."""
    bootstrap_resamples: int = Field(default=1000, ge=100)
    """Paired bootstrap resamples (stratified by label) for ΔAP and Δcapture-rate intervals."""
    bootstrap_seed: int = 20261129
    """Seed of the bootstrap: the same evidence always gives the same interval and decision."""

    # -- sample size ------------------------------------------------------------------------
    capture_rate_precision: float = Field(default=0.05, gt=0.0, lt=0.5)
    """Wanted half-width of the confidence interval on the fraud capture rate (absolute)."""
    expected_capture_rate: float = Field(default=0.7, gt=0.0, lt=1.0)
    """Capture rate assumed in the sample-size formula (use the champion's; 0.5 is worst case)."""
    min_labeled_frauds_floor: int = Field(default=100, ge=1)
    """Never decide on quality with fewer labeled frauds than this, whatever the formula says."""
    min_scored_events_floor: int = Field(default=5000, ge=1)
    """Never decide with fewer paired scored events than this (operational checks need volume too)."""
    label_maturity_hours: float = Field(default=168.0, ge=0.0)
    """Events older than this (vs ``label_as_of``) without a label count as genuine; younger
    unlabeled events are left out of quality metrics (most genuine transactions never get a label)."""

    # -- operations -------------------------------------------------------------------------
    max_p99_latency_ms: float = Field(default=10.0, gt=0.0)
    """p99 of the challenger's ``latency_ms`` (features + inference, measured in the shadow worker
    process). The serving SLA is 5 ms end to end at the API; the shadow pool runs in a separate,
    more contended process, so its in-process model latency gets 2x headroom here."""
    max_error_rate: float = Field(default=0.001, ge=0.0, le=1.0)
    """Share of production events the challenger failed on: error set, score NULL or no shadow row."""
    min_score_std: float = Field(default=1e-6, ge=0.0)
    """Constant-score guard: a challenger whose score standard deviation is below this is rejected."""
    min_distinct_scores: int = Field(default=10, ge=1)
    """Constant-score guard: fewer distinct score values than this is rejected."""
    max_feature_parity_mismatch: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of shadow events whose feature vector differs from production's for the same
    transaction (same feature set). Shadow receives production's vector, so anything above 0 is a bug."""
    feature_parity_tolerance: float = Field(default=1e-9, ge=0.0)
    """Absolute tolerance when comparing two feature vectors element-wise."""

    # -- quality vs champion (same labeled events) ------------------------------------------
    max_ap_regression: float = Field(default=0.02, ge=0.0)
    """Non-inferiority margin: promote only if the lower CI bound of ΔAP (challenger − champion)
    is above ``-max_ap_regression``."""
    min_ap_gain: float = 0.0
    """The point estimate of ΔAP must be at least this (0: not worse on the sample)."""
    max_capture_rate_regression: float = Field(default=0.05, ge=0.0)
    """Lower CI bound of Δ fraud capture rate (each model at its own threshold) must be above minus this."""

    # -- business ---------------------------------------------------------------------------
    max_fpr_increase: float = Field(default=0.002, ge=0.0)
    """Challenger's false-positive rate may exceed the champion's by at most this (absolute)."""
    max_money_caught_drop: float = Field(default=0.05, ge=0.0, le=1.0)
    """Fraud money caught may drop by at most this share of all fraud money in the window."""
    max_false_decline_money_increase: float = Field(default=0.002, ge=0.0, le=1.0)
    """Genuine money falsely declined may rise by at most this share of all genuine money."""

    # -- drift ------------------------------------------------------------------------------
    score_drift_method: DriftMethod = "psi"
    """Evidently method comparing the challenger's shadow scores to the champion's on the same events."""
    max_score_drift: float = Field(default=0.25, gt=0.0)
    """Score drift bound (PSI 0.25 is the classic "major shift")."""
    feature_drift_method: DriftMethod = "wasserstein"
    """Evidently method per feature, shadow window vs the challenger's training reference. Fixed, so
    results do not silently change with sample size (Evidently's default switches at 1000 rows)."""
    feature_drift_threshold: float = Field(default=0.1, gt=0.0)
    """Per-feature drift threshold for ``feature_drift_method`` (normed Wasserstein: 0.1 std)."""
    max_drifted_feature_share: float = Field(default=0.5, ge=0.0, le=1.0)
    """Reject when more than this share of features drifted vs the training reference."""
    feature_drift_margin: float = Field(default=0.05, ge=0.0, le=1.0)
    """Unless live traffic is as far from the champion's training data: a challenger whose drifted
    share is at most the champion's own (same window) plus this is not a worse fit (one or two of
    34 features is the noise of a per-feature test; a CI run rejected 82 % against 79 %)."""
    drift_max_rows: int = Field(default=50_000, ge=100)
    """Rows per side given to Evidently (seeded sample above this) to bound runtime."""

    # -- probation --------------------------------------------------------------------------
    probation_min_scored_events: int = Field(default=2000, ge=1)
    """Production events of the new champion needed before probation decides (else wait)."""
    probation_min_labeled_frauds: int = Field(default=50, ge=1)
    """Matured labeled frauds needed for the probation quality check (else it is skipped)."""
    probation_max_error_rate_increase: float = Field(default=0.001, ge=0.0)
    """New champion's error rate may exceed the old champion's (now in shadow) by at most this."""
    probation_max_p99_latency_ms: float = Field(default=5.0, gt=0.0)
    """p99 ``latency_ms`` of the new champion in production (the serving SLA)."""
    probation_max_alert_rate_ratio: float = Field(default=1.5, ge=1.0)
    """Decline rate of the new champion / decline rate of the old champion on the same events."""
    probation_max_ap_regression: float = Field(default=0.02, ge=0.0)
    """Lower CI bound of ΔAP (new − old champion, matured labels) must be above minus this."""

    # -- helpers ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GatePolicy:
        return cls.model_validate(data)

    @property
    def fingerprint(self) -> str:
        """Stable hash of every value (not just the version): catches an edit without a version bump."""
        doc = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(doc.encode()).hexdigest()[:16]

    @property
    def z(self) -> float:
        """Two-sided normal quantile for ``confidence_level`` (1.96 at 95%)."""
        return NormalDist().inv_cdf(0.5 + self.confidence_level / 2)


DEFAULT_POLICY = GatePolicy()


@dataclass(frozen=True)
class SampleRequirement:
    """How much shadow evidence a decision needs, and where the numbers come from."""

    min_labeled_frauds: int
    min_scored_events: int
    #: Labeled frauds the precision formula alone asks for (before the floor).
    frauds_from_precision: int
    expected_fraud_rate: float
    expected_capture_rate: float
    half_width: float
    z: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def required_sample(policy: GatePolicy, expected_fraud_rate: float) -> SampleRequirement:
    """Events needed so the capture-rate CI half-width is at most ``policy.capture_rate_precision``.

    Normal approximation of a binomial proportion: ``n_frauds = z² · r(1−r) / δ²`` with ``r`` the
    expected capture rate and ``δ`` the half-width; then ``n_events = n_frauds / fraud_rate``.
    Both are raised to the policy's absolute floors.
    """
    if not 0.0 < expected_fraud_rate < 1.0:
        raise ValueError(f"expected_fraud_rate must be in (0, 1), got {expected_fraud_rate}")
    r, delta, z = policy.expected_capture_rate, policy.capture_rate_precision, policy.z
    from_precision = math.ceil(z * z * r * (1.0 - r) / (delta * delta))
    frauds = max(from_precision, policy.min_labeled_frauds_floor)
    events = max(math.ceil(frauds / expected_fraud_rate), policy.min_scored_events_floor)
    return SampleRequirement(
        min_labeled_frauds=frauds,
        min_scored_events=events,
        frauds_from_precision=from_precision,
        expected_fraud_rate=expected_fraud_rate,
        expected_capture_rate=r,
        half_width=delta,
        z=z,
    )


def is_p_value_method(method: str) -> bool:
    return method in P_VALUE_METHODS
