"""Planted release scenarios: how often does the gate decide right? (``make bench-gate``)

Each scenario plants a truth (the challenger is a copy, equal, better, worse, slow, crashing, ...),
simulates a shadow slot (events, two models' scores and recorded decisions, latencies, errors,
feature vectors, fraud labels arriving with a realistic delay), and runs the platform's own decision
code on it at repeated looks: :func:`~fraudops.release.evidence.prepare_paired` (what the release
DAG runs on the warehouse's rows), the label-delay curve (:mod:`.labels`), Evidently drift
(:func:`~fraudops.release.drift.shadow_drift`) where the scenario is about drift, and
:func:`~fraudops.release.gates.decide_promotion` / :func:`~fraudops.release.gates.decide_probation`
— the functions the DAG tasks call. The outcome of one seed is the first non-*wait* decision (the
gate stops there), or the final look's decision at the deadline.

Time line of one seed (event hours): the slot mirrors traffic for ``collect_hours``; the gate looks
``looks`` times, evenly spread over ``collect_hours + maturity``, each look seeing the events that
happened before it and the labels known by then. By the last look every event has matured, and the
sample has the size the policy requires (``required_sample``), so power targets are read "once
the requirement is met". Looks that come before enough labels have matured must say *wait*.

Score models: logit = strength·y + noise − 4, with the two models' noises correlated (ρ), so
"equal quality" is an independently trained model of the same strength, not a copy. A challenger's
*recorded* decisions use its own validation threshold, deliberately off the champion's alert rate;
the gate must ignore it. True ΔAP of each scenario is measured on a 2-million-event sample.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from fraudops.vocabulary import Stage

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from fraudops.release.gates import GateDecision
    from fraudops.release.policy import GatePolicy

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
StageName = Literal["promotion", "probation"]


@dataclass(frozen=True)
class LabelDelays:
    """Fraud label delays: a fast share (customer reports) and log-normal chargebacks, some never."""

    p_fast: float = 0.2
    fast_median_hours: float = 4.0
    chargeback_median_days: float = 12.0
    chargeback_sigma: float = 0.6
    p_never: float = 0.03

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        import numpy as np

        fast = rng.random(n) < self.p_fast
        hours = np.where(
            fast,
            rng.lognormal(math.log(self.fast_median_hours), 0.8, n),
            rng.lognormal(math.log(self.chargeback_median_days * 24.0), self.chargeback_sigma, n),
        )
        hours[rng.random(n) < self.p_never] = np.inf
        return hours


@dataclass(frozen=True)
class Profile:
    """A deployment profile: its policy, traffic and label delays."""

    name: str
    policy: GatePolicy
    fraud_rate: float
    delays: LabelDelays
    collect_hours: float
    looks: int


@dataclass(frozen=True)
class Model:
    """A model's scores: ``strength`` separates frauds (logit units); ``rho`` correlates its noise
    with the champion's; ``transform`` is a monotone recalibration; ``own_alert`` the share its own
    validation threshold flags (what it records as decisions)."""

    strength: float = 2.5
    rho: float = 1.0
    transform: str = "sigmoid"
    own_alert: float = 0.01
    latency_ms: float = 1.0
    error_rate: float = 0.0
    error: str | None = "error:RuntimeError"
    nan_rate: float = 0.0
    constant: float | None = None
    parity_break: float = 0.0


@dataclass(frozen=True)
class Scenario:
    name: str
    stage: StageName
    challenger: Model
    champion: Model = field(default_factory=Model)
    #: Expected outcome and the share of seeds it must reach (``at_least``) or stay under (``at_most``).
    target_status: str = "promote"
    target_share: float = 0.9
    target_kind: Literal["at_least", "at_most"] = "at_least"
    #: The deciding check(s) a bad case must be rejected by (None: any).
    target_check: str | tuple[str, ...] | None = None
    #: Looks to use (None: the profile's).
    looks: int | None = None
    policy_update: dict[str, Any] = field(default_factory=dict)
    #: Run Evidently drift with these reference shifts (challenger's, champion's), in feature stds.
    drift_shift: tuple[float, float] | None = None
    #: Event-time fraction of the maturity that has passed at the deadline (< 1: labels never mature).
    label_scale: float = 1.0
    #: Only looks before the deadline count (the "wait, never reject, until the deadline" row).
    before_deadline: bool = False
    description: str = ""


def _transform(logit: np.ndarray, how: str) -> np.ndarray:
    import numpy as np

    if how == "sigmoid":
        return np.asarray(1.0 / (1.0 + np.exp(-logit)))
    if how == "steep":  # a different calibration: same order, squeezed towards 0
        return np.asarray((1.0 / (1.0 + np.exp(-logit))) ** 4)
    if how == "affine":
        return 0.01 * logit + 0.5
    if how == "coarse":  # a tree model's leaves: above logit −3, blocks 2.5 logits wide share a score
        lumped = np.where(logit > -3.0, -3.0 + 2.5 * np.ceil((logit + 3.0) / 2.5), logit)
        return np.asarray(1.0 / (1.0 + np.exp(-lumped)))
    raise ValueError(how)


def model_scores(model: Model, y: np.ndarray, base_noise: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    import numpy as np

    if model.constant is not None:
        return np.full(len(y), model.constant)
    own = rng.normal(size=len(y)) if model.rho < 1.0 else 0.0
    noise = model.rho * base_noise + math.sqrt(max(0.0, 1.0 - model.rho**2)) * own
    return _transform(model.strength * y + noise - 4.0, model.transform)


_TRUTH: dict[tuple[Any, ...], float] = {}


def true_delta_ap(challenger: Model, champion: Model, fraud_rate: float) -> float:
    """ΔAP of the two score models on 2 million events (the truth the gate estimates)."""
    import numpy as np

    from fraudops.release.sequential import average_precision

    # a monotone recalibration keeps AP; coarse scores (ties) lose some: their truth is their own
    how = "coarse" if challenger.transform == "coarse" else "sigmoid"
    key = (challenger.strength, challenger.rho, champion.strength, fraud_rate, how)
    if key not in _TRUTH:
        rng = np.random.default_rng(12345)
        n = 2_000_000
        y = (rng.random(n) < fraud_rate).astype(np.int64)
        base = rng.normal(size=n)
        s_i = model_scores(replace(champion, transform="sigmoid", constant=None), y, base, rng)
        s_c = model_scores(replace(challenger, transform=how, constant=None), y, base, rng)
        _TRUTH[key] = average_precision(s_c, y) - average_precision(s_i, y)
    return _TRUTH[key]


def _side(
    model: Model,
    scores: np.ndarray,
    rng: np.random.Generator,
    threshold: float,
    features: list[str],
) -> dict[str, Any]:
    import numpy as np

    n = len(scores)
    decision = np.where(scores >= threshold, "decline", "approve").astype(object)
    error = np.full(n, None, dtype=object)
    out = scores.astype(object)
    failed = rng.random(n) < model.error_rate
    error[failed] = model.error
    out[failed] = None
    decision[failed] = None
    nan = rng.random(n) < model.nan_rate
    out[nan] = float("nan")
    error[nan] = "nan"
    decision[nan] = None
    feats = list(features)
    for i in np.flatnonzero(rng.random(n) < model.parity_break):
        feats[i] = json.dumps([-1.0] * 5)
    return {
        "score": out,
        "decision": decision,
        "latency_ms": rng.gamma(4.0, model.latency_ms / 4.0, size=n),
        "fallback": np.zeros(n, dtype=bool),
        "error": error,
        "feature_set": np.full(n, "fs1", dtype=object),
        "features": feats,
        "present": np.ones(n, dtype=bool),
    }


@dataclass
class World:
    """One seed's simulated shadow slot."""

    raw: pd.DataFrame
    #: Event hours of each row (for slicing looks).
    hours: np.ndarray
    maturity_hours: float
    maturity_note: str
    deadline_hours: float
    n_frauds: int
    feature_frame: pd.DataFrame | None


def _own_threshold(model: Model, scores: np.ndarray) -> float:
    import numpy as np

    finite = scores[np.isfinite(scores)]
    return float(np.quantile(finite, 1.0 - model.own_alert)) if len(finite) else 0.5


def build_world(scenario: Scenario, profile: Profile, policy: GatePolicy, seed: int) -> World:
    import numpy as np
    import pandas as pd

    from fraudops.release.labels import curve_from_delays, maturity_from_curve
    from fraudops.release.policy import required_sample

    rng = np.random.default_rng(seed)
    # Maturity from the delay curve of fully observed history (what the warehouse would give).
    history = profile.delays.sample(rng, 4000)
    est = maturity_from_curve(
        curve_from_delays(history, horizon_hours=policy.label_delay_horizon_hours), policy
    )
    stage_need = required_sample(policy, profile.fraud_rate, stage=Stage(scenario.stage))
    n = max(math.ceil(stage_need.min_labeled_frauds / profile.fraud_rate), stage_need.min_scored_events)
    hours = np.sort(rng.uniform(0.0, profile.collect_hours, n))
    y = (rng.random(n) < profile.fraud_rate).astype(np.int64)
    base = rng.normal(size=n)
    s_inc = model_scores(scenario.champion, y, base, rng)
    s_can = model_scores(scenario.challenger, y, base, rng)
    # Recorded decisions: promotion — champion at its served threshold, challenger at its own
    # validation threshold; probation — the new champion at the threshold matched to the budget on
    # recent traffic (a fresh sample of the same world), the old champion at its own.
    if scenario.stage == "probation":
        pre_y = (rng.random(50_000) < profile.fraud_rate).astype(np.int64)
        pre = model_scores(scenario.challenger, pre_y, rng.normal(size=50_000), rng)
        can_thr = float(np.quantile(pre, 1.0 - policy.alert_budget))
    else:
        can_thr = _own_threshold(scenario.challenger, s_can)
    inc_thr = _own_threshold(scenario.champion, s_inc)
    x = rng.normal(size=(n, 5))
    features = (
        [json.dumps([round(float(v), 6) for v in row]) for row in x]
        if scenario.drift_shift or any(m.parity_break for m in (scenario.challenger, scenario.champion))
        else ["[0.0,0.0,0.0,0.0,0.0]"] * n
    )
    inc = _side(scenario.champion, s_inc, rng, inc_thr, features)
    can = _side(scenario.challenger, s_can, rng, can_thr, features)
    prod, shadow = (inc, can) if scenario.stage == "promotion" else (can, inc)
    delay = profile.delays.sample(rng, n) * scenario.label_scale
    label_hours = np.where(y == 1, hours + delay, np.inf)
    event_time = pd.to_datetime(T0) + pd.to_timedelta(hours, unit="h")
    label_time = pd.to_datetime(T0) + pd.to_timedelta(
        np.where(np.isfinite(label_hours), label_hours, 0.0), unit="h"
    )
    raw = pd.DataFrame(
        {
            "transaction_id": np.char.add("tx", np.arange(n).astype(str)).astype(object),
            "event_time": event_time,
            "amount": rng.lognormal(3.5, 1.0, size=n),
            **{f"prod_{k}": v for k, v in prod.items()},
            **{f"shadow_{k}": v for k, v in shadow.items()},
            "is_fraud": pd.array(np.where(np.isfinite(label_hours), True, pd.NA), dtype="boolean"),
            "label_hours": label_hours,
            "label_time": label_time,
        }
    )
    feature_frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)]) if scenario.drift_shift else None
    return World(
        raw=raw,
        hours=hours,
        maturity_hours=est.hours,
        maturity_note=est.note,
        deadline_hours=profile.collect_hours + est.hours,
        n_frauds=int(y.sum()),
        feature_frame=feature_frame,
    )


def evidence_at(world: World, scenario: Scenario, look_hours: float) -> Any:
    """The ``ShadowEvidence`` the DAG would collect at event hour ``look_hours``."""
    import numpy as np
    import pandas as pd

    from fraudops.release.evidence import ShadowEvidence, prepare_paired

    upto = int(np.searchsorted(world.hours, look_hours, side="left"))
    raw = world.raw.iloc[:upto]
    known = raw["label_hours"].to_numpy() <= look_hours
    raw = raw.assign(
        is_fraud=raw["is_fraud"].where(pd.Series(known, index=raw.index), pd.NA),
        label_time=raw["label_time"].where(pd.Series(known, index=raw.index)),
    )
    as_of = T0 + dt.timedelta(hours=look_hours)
    frame = prepare_paired(
        raw.drop(columns=["label_hours"]),
        candidate_side="shadow" if scenario.stage == "promotion" else "prod",
        label_as_of=as_of,
        label_maturity_hours=world.maturity_hours,
    )
    cand, inc = ("challenger", "champion") if scenario.stage == "promotion" else ("new", "old")
    return ShadowEvidence(
        stage=Stage(scenario.stage),
        model_name="bench",
        candidate_version=cand,
        incumbent_version=inc,
        since=T0,
        until=as_of,
        label_as_of=as_of,
        label_maturity_hours=world.maturity_hours,
        frame=frame,
    )


def _drift(world: World, scenario: Scenario, evidence: Any, policy: GatePolicy) -> list[Any] | None:
    if not scenario.drift_shift or world.feature_frame is None:
        return None
    import numpy as np
    import pandas as pd

    from fraudops.release.drift import shadow_drift

    names = list(world.feature_frame.columns)
    rng = np.random.default_rng(len(evidence.frame))
    cand_shift, inc_shift = scenario.drift_shift
    ref = pd.DataFrame(rng.normal(size=(3000, len(names))) + cand_shift, columns=names)
    inc_ref = pd.DataFrame(rng.normal(size=(3000, len(names))) + inc_shift, columns=names)
    small = policy.model_copy(update={"drift_max_rows": 3000})
    return shadow_drift(
        evidence, ref, names, small, incumbent_reference=inc_ref, incumbent_feature_names=names
    )


@dataclass(frozen=True)
class SeedOutcome:
    status: str
    check: str | None
    look: int
    reason: str
    #: Observed ΔAP influence SD per fraud at the decision (None when quality did not run).
    sd_per_fraud: float | None


def run_seed(scenario: Scenario, profile: Profile, seed: int) -> SeedOutcome:
    """One seed: look until a decision (or the deadline), as the DAG would."""
    from fraudops.release.gates import decide_probation, decide_promotion

    policy = profile.policy.model_copy(update=scenario.policy_update)
    world = build_world(scenario, profile, policy, seed)
    looks = scenario.looks or profile.looks
    decision: GateDecision | None = None
    drift: list[Any] | None = None
    k = 0
    for k in range(1, looks + 1):
        t = world.deadline_hours * k / looks
        final = k == looks
        if scenario.before_deadline and final:
            break
        evidence = evidence_at(world, scenario, t)
        if scenario.stage == "promotion":
            # Like the DAG's check_drift: computed once, on the first window with the volume floor.
            if drift is None and len(evidence.frame) >= policy.min_scored_events_floor:
                drift = _drift(world, scenario, evidence, policy)
            decision = decide_promotion(
                evidence, policy, drift, expected_fraud_rate=profile.fraud_rate, final=final
            )
        else:
            decision = decide_probation(evidence, policy, final=final, expected_fraud_rate=profile.fraud_rate)
        if decision.status != "wait":
            break
    assert decision is not None
    quality = (decision.evidence or {}).get("quality") or {}
    return SeedOutcome(
        decision.status, decision.deciding_check, k, decision.reason, quality.get("ap_delta_sd_per_fraud")
    )


@dataclass
class ScenarioResult:
    scenario: Scenario
    profile: str
    seeds: int
    shares: dict[str, float]
    share_right: float
    met: bool
    true_delta_ap: float | None
    mean_look: float
    sd_per_fraud: float | None
    seconds: float
    examples: list[str]

    def target_text(self) -> str:
        s = self.scenario
        op = "≥" if s.target_kind == "at_least" else "≤"
        checks = (s.target_check,) if isinstance(s.target_check, str) else (s.target_check or ())
        what = s.target_status + (f" ({' or '.join(checks)})" if checks else "")
        return f"{what} {op} {s.target_share:.0%}"


def evaluate(
    scenario: Scenario,
    profile: Profile,
    seeds: list[int],
    runner: Callable[[list[tuple[Scenario, Profile, int]]], list[SeedOutcome]] | None = None,
) -> ScenarioResult:
    import time
    from collections import Counter

    t0 = time.perf_counter()
    jobs = [(scenario, profile, s) for s in seeds]
    outcomes = runner(jobs) if runner else [run_seed(*j) for j in jobs]
    counts = Counter(o.status for o in outcomes)
    shares = {k: v / len(outcomes) for k, v in sorted(counts.items())}

    def right(o: SeedOutcome) -> bool:
        if o.status != scenario.target_status:
            return False
        want = scenario.target_check
        return want is None or o.check in ((want,) if isinstance(want, str) else want)

    share = sum(right(o) for o in outcomes) / len(outcomes)
    met = (
        share >= scenario.target_share
        if scenario.target_kind == "at_least"
        else share <= scenario.target_share
    )
    truth = None
    if scenario.challenger.constant is None:
        truth = true_delta_ap(scenario.challenger, scenario.champion, profile.fraud_rate)
    sds = [o.sd_per_fraud for o in outcomes if o.sd_per_fraud is not None]
    wrong = [o for o in outcomes if right(o) != (scenario.target_kind == "at_least")]
    return ScenarioResult(
        scenario=scenario,
        profile=profile.name,
        seeds=len(outcomes),
        shares=shares,
        share_right=share,
        met=met,
        true_delta_ap=truth,
        mean_look=sum(o.look for o in outcomes) / len(outcomes),
        sd_per_fraud=(sum(sds) / len(sds)) if sds else None,
        seconds=time.perf_counter() - t0,
        examples=[f"{o.status}: {o.reason[:160]}" for o in wrong[:2]],
    )
