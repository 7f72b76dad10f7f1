"""The gate policy: one frozen, typed, versioned object for the whole release lifecycle.

Why one object: a promotion or a rollback must be explainable months later. Every decision row in
``gate_decisions`` stores the policy ``version`` and ``fingerprint`` it was taken under, and the
policy is plain data (``to_dict``/``from_dict``) so it can travel through XCom, be logged to MLflow
and be reviewed in a pull request like any other change. Changing a threshold means bumping
``version``.

Thresholds follow Evidently's style: typed fields, each with a docstring (exposed as the field's
description). Sample sizes are not magic numbers: :func:`required_sample` derives them from the
ΔAP margin, the wanted power and the confidence sequence's width, with absolute floors on top.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fraudops.vocabulary import Stage

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

    version: str = "2026-12-05.2"
    """Policy version, stored with every decision; bump it whenever any value below changes."""

    # -- statistics -------------------------------------------------------------------------
    confidence_level: float = Field(default=0.95, gt=0.5, lt=1.0)
    """1 − α of every confidence sequence (anytime-valid: the error stays ≤ α however often the
    gate looks) and of the fixed-sample intervals shown next to them."""
    bootstrap_seed: int = 20261129
    """Seed of the seeded subsampling (drift rows): the same evidence always gives the same decision."""

    # -- operating point --------------------------------------------------------------------
    budget_kind: Literal["alert_rate", "fpr"] = "alert_rate"
    """What the alert budget limits: the share of all scored events flagged (``alert_rate``, the
    declines a team can afford) or the share of matured genuine events flagged (``fpr``)."""
    alert_budget: float = Field(default=0.01, gt=0.0, lt=1.0)
    """The budget both models are compared at (each model's threshold matched to it on the same
    events), and the one the new champion is served at after promotion."""
    budget_tolerance: float = Field(default=0.5, gt=0.0, lt=1.0)
    """Relative band around the budget: a challenger whose scores cannot attain the budget within
    it (ties) is rejected; in probation the served decline rate must stay within it (judged on a
    confidence sequence)."""

    # -- decision rule ----------------------------------------------------------------------
    decision_mode: Literal["non_inferiority", "superiority"] = "non_inferiority"
    """``non_inferiority``: promote a challenger shown no worse than ``max_ap_regression`` (a fresher
    model of equal quality ships); ``superiority``: promote only one shown better than
    ``min_ap_gain`` (an equal model keeps the champion)."""
    max_ap_regression: float = Field(default=0.05, gt=0.0)
    """Non-inferiority margin δ on ΔAP (challenger − champion, same matured events): promote when
    the confidence sequence's lower bound is above −δ; reject when its upper bound is below −δ."""
    min_ap_gain: float = Field(default=0.0, ge=0.0)
    """Superiority mode: promote when the lower bound is above this; reject when the upper bound is."""
    ap_planning_gain: float = Field(default=0.05, gt=0.0)
    """Superiority mode: the gain the sample is sized to detect with ``power``."""
    power: float = Field(default=0.9, gt=0.5, lt=1.0)
    """Wanted probability of promoting an equal (non-inferiority) or better-by-``ap_planning_gain``
    (superiority) challenger once the sample requirement is met."""
    ap_delta_sd_per_fraud: float = Field(default=0.55, gt=0.0)
    """Standard deviation of ΔAP's per-event influence, scaled to one fraud (σ·sqrt(fraud rate)).
    Sizes the sample; every decision reports the observed value (``sd_per_fraud``), and
    ``make bench-gate`` measured 0.48-0.54 for independently trained models (0.55 leaves headroom)."""

    # -- sample size ------------------------------------------------------------------------
    min_labeled_frauds_floor: int = Field(default=100, ge=1)
    """Never decide on quality with fewer matured labeled frauds than this, whatever the formula says."""
    min_scored_events_floor: int = Field(default=5000, ge=1)
    """Never decide with fewer paired scored events than this (operational checks need volume too)."""

    # -- label maturity ---------------------------------------------------------------------
    label_coverage: float = Field(default=0.95, gt=0.0, le=1.0)
    """An event is *matured* once this share of eventual fraud labels has arrived for events of its
    age (read off the warehouse's label-delay curve). Only matured events enter quality metrics."""
    label_maturity_hours: float = Field(default=168.0, ge=0.0)
    """Fallback maturity when the warehouse has too few fully observed frauds for a delay curve."""
    label_delay_horizon_hours: float = Field(default=60 * 24.0, gt=0.0)
    """The longest label delay waited for; later labels count as never arriving."""
    label_curve_lookback_hours: float = Field(default=30 * 24.0, gt=0.0)
    """Event window (ending ``label_delay_horizon_hours`` ago) the delay curve is estimated on."""
    min_label_curve_frauds: int = Field(default=50, ge=1)
    """Fully observed fraud labels needed to trust the curve (else ``label_maturity_hours``)."""

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

    reject_identical_ranking: bool = True
    """Reject a challenger that ranks every paired event exactly like the champion (a copy, or a
    monotone transform of it): its release changes nothing measurable. Set False to ship a model
    that is meant to rank the same, e.g. a re-export for a new runtime or a behaviour that only
    differs off normal traffic (the release end-to-end test's degrading model)."""

    # -- harm guards at the matched budget (reject only when *shown* worse) -----------------
    max_capture_rate_regression: float = Field(default=0.05, ge=0.0)
    """Reject when the confidence sequence shows the capture rate at the budget lower by more than this."""
    max_fpr_increase: float = Field(default=0.002, ge=0.0)
    """Reject when it shows the false-positive rate at the budget higher by more than this (absolute)."""
    max_money_caught_drop: float = Field(default=0.05, ge=0.0, le=1.0)
    """Reject when it shows fraud money caught lower by more than this share of all fraud money."""
    max_false_decline_money_increase: float = Field(default=0.002, ge=0.0, le=1.0)
    """Reject when it shows genuine money declined higher by more than this share of all genuine money."""

    # -- drift ------------------------------------------------------------------------------
    score_drift_method: DriftMethod = "psi"
    """Evidently method of the *informational* raw-score comparison (challenger vs champion on the
    same events). It never decides: calibration may differ; models are compared at the budget."""
    max_score_drift: float = Field(default=0.25, gt=0.0)
    """Bound shown next to the informational raw-score drift (PSI 0.25 is the classic "major shift")."""
    feature_drift_method: DriftMethod = "wasserstein"
    """Evidently method per feature, shadow window vs the challenger's training reference. Fixed, so
    results do not silently change with sample size (Evidently's default switches at 1000 rows)."""
    feature_drift_threshold: float = Field(default=0.1, gt=0.0)
    """Per-feature drift threshold for ``feature_drift_method`` (normed Wasserstein: 0.1 std)."""
    max_drifted_feature_share: float = Field(default=0.5, ge=0.0, le=1.0)
    """Reject when more than this share of features drifted vs the training reference."""
    feature_drift_margin: float = Field(default=0.1, ge=0.0)
    """With the champion's drift on the same live window (``incumbent_feature_drift``): a drifted
    column counts against the challenger only when its drift exceeds the champion's on that column
    by more than this (method units; normed Wasserstein: 0.1 std, one drift threshold), and the
    check fails when more than ``max_drifted_feature_share`` of the columns do. Comparing per column
    instead of drifted-column counts: fresh demo runs rejected a drift-triggered challenger at 62 %
    drifted columns against the champion's 56 %, though no column was further by more than 0.06."""
    drift_max_rows: int = Field(default=50_000, ge=100)
    """Rows per side given to Evidently (seeded sample above this) to bound runtime."""

    # -- probation --------------------------------------------------------------------------
    probation_min_scored_events: int = Field(default=2000, ge=1)
    """Production events of the new champion needed before probation judges operations."""
    probation_min_exposure_hours: float = Field(default=24.0, ge=0.0)
    """Event-time hours of production traffic the new champion must have served before it can be
    confirmed (a daily cycle: peak hours, nightly batches). Rollbacks act at once; quality shown
    fine on the first hour of traffic does not confirm a model that has not yet met the rest."""
    probation_min_labeled_frauds: int = Field(default=50, ge=1)
    """Floor of matured labeled frauds for the probation quality check (else it has not run)."""
    probation_max_error_rate_increase: float = Field(default=0.001, ge=0.0)
    """New champion's error rate may exceed the old champion's (now in shadow) by at most this."""
    probation_max_p99_latency_ms: float = Field(default=5.0, gt=0.0)
    """p99 ``latency_ms`` of the new champion in production (the serving SLA)."""
    probation_max_ap_regression: float = Field(default=0.05, gt=0.0)
    """Roll back when the confidence sequence of ΔAP (new − old champion) lies below −this; confirm
    when it lies above."""
    probation_detect_ap_drop: float = Field(default=0.1, gt=0.0)
    """The degradation probation is sized to catch with ``probation_power``."""
    probation_power: float = Field(default=0.9, gt=0.5, lt=1.0)
    """Wanted probability of rolling back a champion degraded by ``probation_detect_ap_drop``."""

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
    """How much matured evidence a decision needs, and where the numbers come from."""

    #: Matured labeled frauds needed (formula, raised to the policy's floor).
    min_labeled_frauds: int
    #: Paired scored events needed (``min_labeled_frauds / expected_fraud_rate``, floored).
    min_scored_events: int
    #: Frauds the power formula alone asks for (before the floor).
    frauds_from_power: int
    expected_fraud_rate: float
    #: The ΔAP distance the sample is sized for: δ (non-inferiority), the planning gain minus the
    #: minimum gain (superiority), or the detectable drop minus the margin (probation).
    effect: float
    power: float
    sd_per_fraud: float
    #: Confidence-sequence multiplier at the planned size (≈ 3.04 at α = 0.05).
    cs_multiplier: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _frauds_for(effect: float, power: float, sd: float, alpha: float) -> tuple[int, float]:
    """Frauds n with  m·σ/√n + z_power·σ/√n ≤ effect,  m the CS multiplier at its tuned size."""
    from fraudops.release.sequential import cs_multiplier

    m = cs_multiplier(1.0, alpha=alpha, t_opt=1.0)  # at t = t_opt the multiplier does not depend on t
    z_power = NormalDist().inv_cdf(power)
    return math.ceil(((m + z_power) * sd / effect) ** 2), m


def required_sample(
    policy: GatePolicy, expected_fraud_rate: float, *, stage: Stage = Stage.PROMOTION
) -> SampleRequirement:
    """Matured labeled frauds needed for the ΔAP decision to have the policy's power.

    The decision compares ΔAP's confidence sequence (radius ≈ m·σ/√n at the planned size, with σ
    per fraud = ``ap_delta_sd_per_fraud``) with the margin. In non-inferiority mode an equal
    challenger is promoted when the lower bound clears −δ, which happens with probability ≥
    ``power`` once ``(m + z_power)·σ/√n ≤ δ``. Superiority sizes for ``ap_planning_gain −
    min_ap_gain``; probation for catching a drop of ``probation_detect_ap_drop`` beyond its margin
    with ``probation_power``. ``n_events = n_frauds / fraud_rate``. Both are raised to the floors.
    """
    if not 0.0 < expected_fraud_rate < 1.0:
        raise ValueError(f"expected_fraud_rate must be in (0, 1), got {expected_fraud_rate}")
    alpha = 1.0 - policy.confidence_level
    if stage == "probation":
        effect = policy.probation_detect_ap_drop - policy.probation_max_ap_regression
        power, floor_f, floor_e = (
            policy.probation_power,
            policy.probation_min_labeled_frauds,
            policy.probation_min_scored_events,
        )
        if effect <= 0:
            raise ValueError("probation_detect_ap_drop must exceed probation_max_ap_regression")
    else:
        effect = (
            policy.max_ap_regression
            if policy.decision_mode == "non_inferiority"
            else policy.ap_planning_gain - policy.min_ap_gain
        )
        power, floor_f, floor_e = (
            policy.power,
            policy.min_labeled_frauds_floor,
            policy.min_scored_events_floor,
        )
        if effect <= 0:
            raise ValueError("ap_planning_gain must exceed min_ap_gain")
    from_power, m = _frauds_for(effect, power, policy.ap_delta_sd_per_fraud, alpha)
    frauds = max(from_power, floor_f)
    events = max(math.ceil(frauds / expected_fraud_rate), floor_e)
    return SampleRequirement(
        min_labeled_frauds=frauds,
        min_scored_events=events,
        frauds_from_power=from_power,
        expected_fraud_rate=expected_fraud_rate,
        effect=effect,
        power=power,
        sd_per_fraud=policy.ap_delta_sd_per_fraud,
        cs_multiplier=m,
    )


def is_p_value_method(method: str) -> bool:
    return method in P_VALUE_METHODS
