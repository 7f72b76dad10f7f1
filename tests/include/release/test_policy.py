"""GatePolicy: sample-size derivation, versioning, immutability."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from fraudops.release.policy import DEFAULT_POLICY, GatePolicy, required_sample


def test_required_sample_from_capture_rate_precision() -> None:
    need = required_sample(DEFAULT_POLICY, 0.005)
    # n = z² r(1−r)/δ² = 1.96² · 0.7 · 0.3 / 0.05² = 322.7 → 323 frauds; / 0.5% fraud rate → 64 600 events
    assert need.frauds_from_precision == 323
    assert need.min_labeled_frauds == 323
    assert need.min_scored_events == 64_600
    assert need.z == pytest.approx(1.959964, abs=1e-6)
    tighter = required_sample(DEFAULT_POLICY.model_copy(update={"capture_rate_precision": 0.025}), 0.005)
    assert tighter.frauds_from_precision == math.ceil(1.959964**2 * 0.21 / 0.025**2)  # 4x for half width
    assert tighter.frauds_from_precision == pytest.approx(4 * need.frauds_from_precision, abs=4)


def test_required_sample_floors_and_validation() -> None:
    loose = GatePolicy(capture_rate_precision=0.2, min_labeled_frauds_floor=100, min_scored_events_floor=5000)
    need = required_sample(loose, 0.5)
    assert need.frauds_from_precision == 21 and need.min_labeled_frauds == 100  # floor wins
    assert need.min_scored_events == 5000
    with pytest.raises(ValueError):
        required_sample(loose, 0.0)


def test_policy_is_frozen_versioned_and_round_trips() -> None:
    p = DEFAULT_POLICY
    with pytest.raises(ValidationError):
        p.max_error_rate = 0.5  # type: ignore[misc]
    with pytest.raises(ValidationError):
        GatePolicy(max_error_rate=2.0)
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
