"""GatePolicy: sample size from the ΔAP margin and power, versioning, immutability."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
from pydantic import ValidationError

from fraudops.release.policy import DEFAULT_POLICY, GatePolicy, required_sample
from fraudops.vocabulary import Stage


def _frauds(effect: float, power: float, sd: float = 0.55, alpha: float = 0.05) -> int:
    """⌈((m + z_power)·σ/effect)²⌉ with m the confidence sequence's multiplier at its tuned size,
    computed here from Waudby-Smith et al. (2021), Thm 2.2 at t = t*: tρ² = L + log(1 + L), L = −2 log α."""
    tr = -2 * math.log(alpha) + math.log(1 - 2 * math.log(alpha))
    m = math.sqrt(2 * (tr + 1) / tr * math.log(math.sqrt(tr + 1) / alpha))
    return math.ceil(((m + NormalDist().inv_cdf(power)) * sd / effect) ** 2)


def test_required_sample_from_ap_margin_and_power() -> None:
    need = required_sample(DEFAULT_POLICY, 0.005)
    # production defaults: δ = 0.05, power 0.9, σ 0.55 → 2255 frauds, 451 000 events at 0.5 % (docs)
    assert need.frauds_from_power == _frauds(0.05, 0.9) == 2255
    assert need.min_labeled_frauds == 2255 and need.min_scored_events == 451_000
    assert need.cs_multiplier == pytest.approx(3.035, abs=1e-3)
    assert (need.effect, need.power, need.sd_per_fraud) == (0.05, 0.9, 0.55)
    half = required_sample(DEFAULT_POLICY.model_copy(update={"max_ap_regression": 0.025}), 0.005)
    assert half.frauds_from_power == _frauds(0.025, 0.9)
    assert half.frauds_from_power == pytest.approx(4 * need.frauds_from_power, abs=4)  # 4x for half δ
    stronger = required_sample(DEFAULT_POLICY.model_copy(update={"power": 0.99}), 0.005)
    assert stronger.frauds_from_power == _frauds(0.05, 0.99) > need.frauds_from_power
    noisier = required_sample(DEFAULT_POLICY.model_copy(update={"ap_delta_sd_per_fraud": 1.1}), 0.005)
    assert noisier.frauds_from_power == _frauds(0.05, 0.9, sd=1.1)


def test_required_sample_superiority_and_probation() -> None:
    sup = DEFAULT_POLICY.model_copy(
        update={"decision_mode": "superiority", "ap_planning_gain": 0.08, "min_ap_gain": 0.02}
    )
    need = required_sample(sup, 0.01)
    assert need.effect == pytest.approx(0.06) and need.frauds_from_power == _frauds(0.06, 0.9)
    prob = required_sample(DEFAULT_POLICY, 0.005, stage=Stage.PROBATION)
    # drop 0.1 beyond margin 0.05 → effect 0.05, power 0.9: the same as promotion (docs)
    assert prob.effect == pytest.approx(0.05) and prob.min_labeled_frauds == 2255
    custom = DEFAULT_POLICY.model_copy(
        update={"probation_detect_ap_drop": 0.13, "probation_max_ap_regression": 0.03, "probation_power": 0.8}
    )
    assert required_sample(custom, 0.02, stage=Stage.PROBATION).frauds_from_power == _frauds(0.1, 0.8)
    with pytest.raises(ValueError, match="ap_planning_gain"):
        required_sample(sup.model_copy(update={"min_ap_gain": 0.08}), 0.01)
    with pytest.raises(ValueError, match="probation_detect_ap_drop"):
        required_sample(
            DEFAULT_POLICY.model_copy(update={"probation_detect_ap_drop": 0.05}), 0.01, stage=Stage.PROBATION
        )


def test_required_sample_floors_and_validation() -> None:
    loose = GatePolicy(max_ap_regression=0.5, min_labeled_frauds_floor=100, min_scored_events_floor=5000)
    need = required_sample(loose, 0.5)
    assert need.frauds_from_power == _frauds(0.5, 0.9) == 23 and need.min_labeled_frauds == 100  # floor wins
    assert need.min_scored_events == 5000
    prob = required_sample(
        loose.model_copy(update={"probation_min_labeled_frauds": 3000, "probation_min_scored_events": 7}),
        0.5,
        stage=Stage.PROBATION,
    )
    assert prob.min_labeled_frauds == 3000 and prob.min_scored_events == 6000
    with pytest.raises(ValueError):
        required_sample(loose, 0.0)
    with pytest.raises(ValueError):
        required_sample(loose, 1.0)


def test_round_one_fields_are_gone() -> None:
    for old in ("bootstrap_resamples", "capture_rate_precision", "max_alert_rate_ratio"):
        assert old not in GatePolicy.model_fields
        with pytest.raises(ValidationError):
            GatePolicy.from_dict({**DEFAULT_POLICY.to_dict(), old: 1})


def test_policy_is_frozen_versioned_and_round_trips() -> None:
    p = DEFAULT_POLICY
    with pytest.raises(ValidationError):
        p.max_error_rate = 0.5
    with pytest.raises(ValidationError):
        GatePolicy(max_error_rate=2.0)
    with pytest.raises(ValidationError):
        GatePolicy(alert_budget=0.0)
    with pytest.raises(ValidationError):
        GatePolicy(budget_kind="alerts")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        GatePolicy.from_dict({**p.to_dict(), "unknown_threshold": 1})
    assert GatePolicy.from_dict(p.to_dict()) == p
    assert GatePolicy.from_dict(p.to_dict()).fingerprint == p.fingerprint
    assert len(p.fingerprint) == 16 and p.fingerprint == GatePolicy().fingerprint
    assert p.model_copy(update={"max_error_rate": 0.002}).fingerprint != p.fingerprint
    assert p.version.count(".") == 1 and p.version.startswith("20")


def test_every_threshold_is_documented() -> None:
    undocumented = [n for n, f in GatePolicy.model_fields.items() if not (f.description or "").strip()]
    assert undocumented == []
