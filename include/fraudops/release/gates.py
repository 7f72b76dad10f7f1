"""Release gates as data: each check returns a result (value, threshold, passed, reason), a decision
collects them, and the DAG branches on ``decision.status``. Nothing here raises to say "no".

Promotion (challenger in shadow vs champion in production, same transactions):

1. ``scored_events`` — at least the policy's floor of paired events, else **wait**;
2. operational, **reject**: ``p99_latency_ms``, ``error_rate``, ``constant_scores``,
   ``feature_parity_mismatch``, ``feature_drift`` (with the champion's drift on the same window:
   fails when more than the allowed share of columns fit live traffic worse than the champion's
   training data by more than ``feature_drift_margin``), ``operating_point`` (a threshold flags
   exactly the alert budget of the challenger's scores, events tied at it drawn; fails only when it
   scored nothing finite), ``identical_ranking`` (an exact copy of the champion, or a
   monotone transform of it: nothing to release). Raw-score drift is shown but never decides
   (calibration may differ);
3. ``matured_frauds`` / ``matured_genuine`` — the floor of matured labeled evidence, else **wait**
   (quality checks are then reported as *not run*);
4. quality at the matched budget, on matured events, with confidence sequences (valid at every
   look): **reject** when ΔAP is shown below −δ (non-inferiority) or below the minimum gain
   (superiority), or a harm guard (capture, FPR, money caught, money falsely declined at the
   budget) is shown worse than its margin; **promote** when ΔAP is shown above −δ (or above the
   minimum gain); otherwise **wait**.

With ``final=True`` (the evidence deadline) a *wait* becomes **reject** as *inconclusive*, with the
evidence. Probation (new champion in production vs old champion in reverse shadow): operational
checks roll back at once (error increase, constant scores, p99, served decline rate vs the budget
on a confidence sequence); quality rolls back when ΔAP is shown below −margin, confirms when shown
above once the new champion has served ``probation_min_exposure_hours`` of traffic, and waits
otherwise; at the final look a champion not shown harmful on matured evidence is confirmed, and one
whose quality could not be judged at all, or that served too little traffic, is rolled back (never
"passed").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from fraudops.release.checks import (
    CheckResult,
    Side,
    check_max,
    check_min,
    constant_scores_check,
    cs_text,
    drift_checks,
    error_check,
    error_rate,
    feature_parity_mismatch,
    flagged,
    fmt,
    latency_check,
    not_run,
)
from fraudops.release.drift import DriftResult
from fraudops.release.evidence import ShadowEvidence, budget_misses, ok_mask
from fraudops.release.policy import DEFAULT_POLICY, GatePolicy, SampleRequirement, required_sample
from fraudops.release.quality import MatchedQuality, finite_doc, match_points, matched_quality
from fraudops.release.sequential import sequential_mean
from fraudops.vocabulary import Decision, Stage

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from fraudops.release.operating_point import OperatingPoint

#: Kept as names for the annotations below (one vocabulary: :mod:`fraudops.vocabulary`).
Status = Decision
GateStage = Stage

#: Fraud rate assumed for the scored-events requirement when the caller gives none.
DEFAULT_EXPECTED_FRAUD_RATE = 0.005


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided, why, under which policy, on which evidence."""

    status: Status
    stage: GateStage
    checks: tuple[CheckResult, ...]
    reason: str
    policy_version: str
    policy_fingerprint: str
    #: Evidence summary: window, counts, sample requirement, policy values, drift results.
    evidence: dict[str, Any]
    #: Name of the check that decided (first failing one), None when everything passed.
    deciding_check: str | None = None
    decided_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())

    @property
    def passed(self) -> bool:
        return self.status in (Decision.PROMOTE, Decision.CONFIRM)

    @property
    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"decision has no check {name!r}; has {[c.name for c in self.checks]}")

    @property
    def metric(self) -> str | None:
        return self.deciding_check

    @property
    def value(self) -> float | None:
        return self.check(self.deciding_check).value if self.deciding_check else None

    @property
    def threshold(self) -> float | None:
        return self.check(self.deciding_check).threshold if self.deciding_check else None

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["checks"] = [c.to_dict() for c in self.checks]
        return finite_doc(doc)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> GateDecision:
        data = dict(doc)
        data["checks"] = tuple(CheckResult.from_dict(c) for c in data["checks"])
        data["status"], data["stage"] = Decision(data["status"]), Stage(data["stage"])
        return cls(**data)


# -- promotion ----------------------------------------------------------------------------------
def _usable(frame: pd.DataFrame) -> np.ndarray:
    """Rows both models scored (the rows thresholds are matched on and quality is measured on)."""
    rows: np.ndarray = (ok_mask(frame, "candidate") & ok_mask(frame, "incumbent")).to_numpy()
    return rows


def _scores(frame: pd.DataFrame, side: Side, rows: np.ndarray) -> np.ndarray:
    import numpy as np

    scores: np.ndarray = frame.loc[rows, f"{side}_score"].to_numpy(dtype=np.float64)
    return scores


def _matured_counts(frame: pd.DataFrame, rows: np.ndarray) -> tuple[int, int]:
    """(matured labeled frauds, matured genuine events) among the rows both models scored."""
    label = frame["label"].to_numpy()
    return int(((label == 1.0) & rows).sum()), int(((label == 0.0) & rows).sum())


def _quality_on(
    frame: pd.DataFrame, rows: np.ndarray, policy: GatePolicy, planned_frauds: int
) -> MatchedQuality:
    """Matched-budget quality of candidate vs incumbent on ``rows`` (both scored)."""
    sub = frame.loc[rows]
    return matched_quality(
        candidate_scores=sub["candidate_score"].to_numpy(),
        incumbent_scores=sub["incumbent_score"].to_numpy(),
        label=sub["label"].to_numpy(),
        amount=sub["amount"].to_numpy(),
        policy=policy,
        planned_frauds=planned_frauds,
    )


def identical_ranking(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``b`` orders (and ties) the rows exactly like ``a``: a copy or a monotone transform."""
    import numpy as np

    if len(a) != len(b) or len(a) == 0:
        return False
    order = np.lexsort((b, a))
    sa, sb = a[order], b[order]
    # same ties, and strictly increasing together (ties in a are ties in b and vice versa)
    da, db = np.diff(sa), np.diff(sb)
    return bool(np.all((da == 0) == (db == 0)) and np.all(db[da > 0] > 0))


def _operating_point_check(frame: pd.DataFrame, rows: np.ndarray, policy: GatePolicy) -> CheckResult:
    import numpy as np

    s_c, s_i = _scores(frame, "candidate", rows), _scores(frame, "incumbent", rows)
    genuine = (frame.loc[rows, "label"] == 0.0).to_numpy()
    cand, inc = match_points(s_c, s_i, genuine, policy)
    floor = policy.alert_budget * (1.0 - policy.budget_tolerance)
    base = cand.n if policy.budget_kind == "alert_rate" else int(genuine.sum())
    # Too few rows to flag even one at the budget says nothing about the model.
    if base * floor < 1.0:
        return CheckResult(
            "operating_point",
            None,
            floor,
            True,
            f"not run: {base} events cannot show a {policy.budget_kind} budget of {policy.alert_budget:g}",
            {"candidate": cand.to_dict(), "incumbent": inc.to_dict()},
            ran=False,
        )
    # Ties at the threshold are drawn (operating_point.match_threshold): the budget is attained
    # whenever the challenger scored any event; what remains to fail is no finite score at all.
    ok = cand.achieved >= floor and bool(np.isfinite(cand.threshold))
    reason = (
        f"challenger attains the {policy.budget_kind} budget {policy.alert_budget:g}: {cand.achieved:.4g} "
        f"at threshold {fmt(cand.threshold)}{_drawn(cand)} (champion {inc.achieved:.4g} at "
        f"{fmt(inc.threshold)}{_drawn(inc)})"
        if ok
        else f"challenger cannot attain the {policy.budget_kind} budget {policy.alert_budget:g}: "
        f"{cand.n} of its scores are finite"
    )
    return CheckResult(
        "operating_point",
        cand.achieved,
        floor,
        ok,
        reason,
        {"candidate": cand.to_dict(), "incumbent": inc.to_dict()},
    )


def _drawn(point: OperatingPoint) -> str:
    """How much of a point's flags are drawn among events tied at its threshold (empty: none)."""
    if point.tie_share >= 1.0:
        return ""
    return f", {point.drawn:.0%} of its flags drawn among the events tied at it (p={point.tie_share:.3g})"


def _identical_check(frame: pd.DataFrame, rows: np.ndarray, policy: GatePolicy) -> CheckResult:
    same = identical_ranking(_scores(frame, "incumbent", rows), _scores(frame, "candidate", rows))
    n = int(rows.sum())
    if same and not policy.reject_identical_ranking:
        return CheckResult(
            "identical_ranking",
            1.0,
            0.0,
            True,
            f"identical ranking to the champion on all {n} paired events, allowed by the policy",
        )
    return CheckResult(
        "identical_ranking",
        float(same),
        0.0,
        not same,
        (
            f"identical ranking to the champion on all {n} paired events (an exact copy or a monotone "
            "transform of it): nothing to release"
            if same
            else "ranks events differently from the champion"
        ),
    )


def _promotion_quality_checks(q: MatchedQuality, policy: GatePolicy) -> tuple[list[CheckResult], CheckResult]:
    """(harm checks that reject when failed, the promotion check that promotes when passed)."""
    lo, hi = q.ap.delta.cs
    ci_lo, ci_hi = q.ap.delta.ci
    cs = f"ΔAP {q.ap_delta:+.4f}, CS {cs_text(lo, hi)}, 95% CI {cs_text(ci_lo, ci_hi)}"
    ap_details = {
        "ap_delta": q.ap_delta,
        "cs": [lo, hi],
        "ci": [ci_lo, ci_hi],
        "ap_candidate": q.ap.ap_candidate,
        "ap_incumbent": q.ap.ap_incumbent,
        "sd_per_fraud": q.ap.sd_per_fraud,
        "n_frauds": q.n_frauds,
    }
    if policy.decision_mode == "non_inferiority":
        bar, what = -policy.max_ap_regression, "non-inferiority margin"
    else:
        bar, what = policy.min_ap_gain, "minimum gain"
    worse_ok = hi >= bar
    harm = [
        CheckResult(
            "ap_shown_worse",
            hi,
            bar,
            worse_ok,
            f"ΔAP upper bound {hi:+.4g} {'>=' if worse_ok else '<'} {what} {bar:+.4g} ({cs})",
            ap_details,
        )
    ]
    guards = (
        (
            "capture_rate",
            "capture rate at the budget",
            q.capture,
            -policy.max_capture_rate_regression,
            "down",
        ),
        ("fpr_increase", "false-positive rate at the budget", q.fpr, policy.max_fpr_increase, "up"),
        ("money_caught", "fraud money caught (share)", q.money_caught, -policy.max_money_caught_drop, "down"),
        (
            "false_decline_money",
            "genuine money declined (share)",
            q.false_decline_money,
            policy.max_false_decline_money_increase,
            "up",
        ),
    )
    for name, what_g, est, limit, direction in guards:
        lo_g, hi_g = est.cs
        ok = hi_g >= limit if direction == "down" else lo_g <= limit
        shown = "upper" if direction == "down" else "lower"
        bound = hi_g if direction == "down" else lo_g
        harm.append(
            CheckResult(
                name,
                bound,
                limit,
                ok,
                f"Δ {what_g} {est.estimate:+.4g}, CS {cs_text(lo_g, hi_g)}: {shown} bound "
                f"{'not ' if ok else ''}beyond {limit:+.4g}",
                {"delta": est.estimate, "cs": [lo_g, hi_g]},
            )
        )
    promote_ok = lo > bar
    name = "ap_non_inferiority" if policy.decision_mode == "non_inferiority" else "ap_superiority"
    promote = CheckResult(
        name,
        lo,
        bar,
        promote_ok,
        f"ΔAP lower bound {lo:+.4g} {'>' if promote_ok else '<='} {what} {bar:+.4g} ({cs})",
        ap_details,
    )
    return harm, promote


def _decision(
    status: Status,
    stage: GateStage,
    checks: list[CheckResult],
    reason: str,
    policy: GatePolicy,
    evidence: dict[str, Any],
    deciding: str | None,
) -> GateDecision:
    return GateDecision(
        status, stage, tuple(checks), reason, policy.version, policy.fingerprint, evidence, deciding
    )


def _first_failed(checks: list[CheckResult]) -> CheckResult | None:
    return next((c for c in checks if c.ran and not c.passed), None)


def decide_promotion(
    evidence: ShadowEvidence,
    policy: GatePolicy = DEFAULT_POLICY,
    drift: DriftResult | Sequence[DriftResult] | None = None,
    *,
    expected_fraud_rate: float | None = None,
    final: bool = False,
) -> GateDecision:
    """Promote, reject or wait from paired shadow evidence (and optional drift results).

    Safe to call at every poll: quality is judged on confidence sequences. ``final`` marks the
    evidence deadline: a *wait* then becomes a reject as inconclusive. ``expected_fraud_rate``
    sizes the requirement reported with the decision (default 0.5 %).
    """
    frame = evidence.frame
    need: SampleRequirement = required_sample(policy, expected_fraud_rate or DEFAULT_EXPECTED_FRAUD_RATE)
    rows = _usable(frame)
    volume = check_min("scored_events", "scored events", evidence.n_events, policy.min_scored_events_floor)
    parity, mismatched, compared = feature_parity_mismatch(frame, policy.feature_parity_tolerance)
    # Latency first: a slow challenger is also throttled by the shadow pool, and the events it
    # sheds show up as missing scores (errors); the root cause to report is the latency.
    ops = [
        latency_check(frame, "candidate", policy.max_p99_latency_ms),
        error_check(frame, "candidate", policy.max_error_rate),
        constant_scores_check(frame, "candidate", policy),
        CheckResult(
            "feature_parity_mismatch",
            parity,
            policy.max_feature_parity_mismatch,
            parity <= policy.max_feature_parity_mismatch,
            f"feature parity mismatch {fmt(parity)} ({mismatched}/{compared} events) "
            f"{'<=' if parity <= policy.max_feature_parity_mismatch else '>'} "
            f"{fmt(policy.max_feature_parity_mismatch)}",
            {"mismatched": mismatched, "compared": compared},
        ),
        *drift_checks(drift, policy.feature_drift_margin),
        _operating_point_check(frame, rows, policy),
        _identical_check(frame, rows, policy),
    ]
    matured_frauds, matured_genuine = _matured_counts(frame, rows)
    labels = [
        check_min(
            "matured_frauds",
            "matured labeled frauds",
            matured_frauds,
            policy.min_labeled_frauds_floor,
        ),
        # Genuine rows come from maturity (most are never labelled): without them there is no FPR
        # and no AP, and "no quality evidence" must not read as "quality passed".
        check_min(
            "matured_genuine", "matured genuine events", matured_genuine, policy.min_labeled_frauds_floor
        ),
    ]
    summary: dict[str, Any] = {
        **evidence.summary(),
        "sample_requirement": need.to_dict(),
        "matured_frauds": matured_frauds,
        "policy": policy.to_dict(),
        "final": final,
    }
    quality: MatchedQuality | None = None
    if volume.passed and all(c.passed for c in labels):
        quality = _quality_on(frame, rows, policy, need.min_labeled_frauds)
        harm, promote = _promotion_quality_checks(quality, policy)
    else:
        why = "too little scored or matured evidence"
        harm = [not_run("ap_shown_worse", None, why)]
        promote = not_run(
            "ap_non_inferiority" if policy.decision_mode == "non_inferiority" else "ap_superiority", None, why
        )
    summary["quality"] = quality.to_dict() if quality else None
    op = next(c for c in ops if c.name == "operating_point")
    summary["operating_point"] = {
        "budget_kind": policy.budget_kind,
        "budget": policy.alert_budget,
        # The threshold the challenger is served at if promoted: matched on this window's traffic.
        "candidate_threshold": op.details["candidate"]["threshold"],
        "incumbent_threshold": op.details["incumbent"]["threshold"],
        "candidate_achieved": op.details["candidate"]["achieved"],
        "incumbent_achieved": op.details["incumbent"]["achieved"],
        # Of the events scored exactly at the threshold, the share flagged (by a per-event draw).
        "candidate_tie_share": op.details["candidate"]["tie_share"],
        "incumbent_tie_share": op.details["incumbent"]["tie_share"],
    }
    checks = [volume, *ops, *labels, *harm, promote]
    status: Status
    if not volume.passed:
        status, reason, deciding = Decision.WAIT, volume.reason, volume.name
    elif (failed := _first_failed(ops)) is not None:
        status, reason, deciding = Decision.REJECT, failed.reason, failed.name
    elif (short := _first_failed(labels)) is not None:
        status, reason, deciding = Decision.WAIT, short.reason, short.name
    elif (bad := _first_failed(harm)) is not None:
        status, reason, deciding = Decision.REJECT, bad.reason, bad.name
    elif promote.passed:
        status, deciding = Decision.PROMOTE, None
        reason = f"all checks passed: {promote.reason}"
    else:
        status, reason, deciding = Decision.WAIT, promote.reason, promote.name
    if status == Decision.WAIT and final:
        status = Decision.REJECT
        reason = (
            f"inconclusive at the evidence deadline: {reason} (requirement: {need.min_labeled_frauds} "
            f"matured labeled frauds, have {matured_frauds})"
        )
    return _decision(status, Stage.PROMOTION, checks, reason, policy, summary, deciding)


# -- probation ----------------------------------------------------------------------------------
def _decline_rate_check(frame: pd.DataFrame, policy: GatePolicy, planned_events: int) -> CheckResult:
    """The new champion's served decline rate stays within the budget's tolerance band (CS)."""
    import numpy as np

    ok_rows = ok_mask(frame, "candidate").to_numpy()
    if policy.budget_kind == "fpr":
        ok_rows = ok_rows & (frame["label"] == 0.0).to_numpy()
    flags = flagged(frame.loc[ok_rows], "candidate").astype(np.float64)
    lo_band = policy.alert_budget * (1.0 - policy.budget_tolerance)
    hi_band = policy.alert_budget * (1.0 + policy.budget_tolerance)
    if len(flags) < 2:
        return not_run(
            "decline_rate", hi_band, f"{len(flags)} events to measure the served {policy.budget_kind}"
        )
    est = sequential_mean(flags, alpha=1.0 - policy.confidence_level, t_opt=float(max(planned_events, 2)))
    lo, hi = est.cs
    # Only too many declines is harm (customers declined, review capacity exceeded). Too few means
    # the traffic moved since the threshold was matched (an attack the new model catches ebbed):
    # ranking and capture are judged by the quality checks, and rolling back a better model for a
    # stale threshold would be a wrong decision. It is reported, not acted on.
    above, below = lo > hi_band, hi < lo_band
    where = "is above" if above else "is below" if below else "overlaps"
    reason = (
        f"served {policy.budget_kind} {est.estimate:.4g}, CS {cs_text(lo, hi)} {where} "
        f"the budget band [{lo_band:.4g}, {hi_band:.4g}]"
    )
    if below:
        reason += " (traffic moved since the threshold was matched: re-match it; not a rollback)"
    return CheckResult(
        "decline_rate",
        est.estimate,
        hi_band,
        not above,
        reason,
        {"cs": [lo, hi], "band": [lo_band, hi_band], "n": len(flags), "below_budget": below},
    )


def _span_hours(frame: pd.DataFrame) -> float:
    """Event-time hours between the first and the last event of a window (0 when empty)."""
    if frame.empty:
        return 0.0
    times = frame["event_time"]
    return float((times.max() - times.min()).total_seconds() / 3600.0)


def decide_probation(
    evidence: ShadowEvidence,
    policy: GatePolicy = DEFAULT_POLICY,
    *,
    final: bool = False,
    expected_fraud_rate: float | None = None,
) -> GateDecision:
    """Confirm, roll back or wait: the new champion in production vs the old champion in shadow.

    Safe to call at every poll (confidence sequences). Operational checks act at once; quality
    needs matured labels. ``final`` (the probation deadline): a champion not shown harmful on
    matured evidence is confirmed; one whose quality could not be judged is rolled back.
    """
    frame = evidence.frame
    need = required_sample(policy, expected_fraud_rate or DEFAULT_EXPECTED_FRAUD_RATE, stage=Stage.PROBATION)
    volume = check_min(
        "scored_events", "scored events", evidence.n_events, policy.probation_min_scored_events
    )
    # Like with like: only production has a per-request time budget, so a new champion's budget
    # misses (answered by the old one; the machine's load moves them as much as the model does)
    # are judged by the latency check, not counted as errors against an old champion in shadow.
    misses = budget_misses(frame, "candidate")
    n_misses = int(misses.sum())
    cand_err, inc_err = error_rate(frame, "candidate", misses), error_rate(frame, "incumbent")
    err_check = check_max(
        "error_rate_increase",
        "error rate increase",
        cand_err - inc_err,
        policy.probation_max_error_rate_increase,
    )
    err_check = replace(
        err_check,
        reason=f"{err_check.reason} (new {fmt(cand_err)}, old {fmt(inc_err)}"
        + (f"; {n_misses} budget misses judged by latency)" if n_misses else ")"),
        details={
            "candidate_error_rate": cand_err,
            "incumbent_error_rate": inc_err,
            "candidate_budget_misses": n_misses,
        },
    )
    exposure = check_min(
        "exposure_hours",
        "hours of production traffic served",
        _span_hours(frame),
        policy.probation_min_exposure_hours,
    )
    ops = [
        err_check,
        constant_scores_check(frame, "candidate", policy),
        latency_check(frame, "candidate", policy.probation_max_p99_latency_ms),
        _decline_rate_check(frame, policy, need.min_scored_events),
    ]
    rows = _usable(frame)
    matured_frauds, matured_genuine = _matured_counts(frame, rows)
    margin = policy.probation_max_ap_regression
    quality: MatchedQuality | None = None
    if (
        matured_frauds >= policy.probation_min_labeled_frauds
        and matured_genuine >= policy.probation_min_labeled_frauds
    ):
        quality = _quality_on(frame, rows, policy, need.min_labeled_frauds)
        lo, hi = quality.ap.delta.cs
        cs = f"ΔAP {quality.ap_delta:+.4f}, CS {cs_text(lo, hi)}"
        harmed = hi < -margin
        shown_ok = lo > -margin
        details = {"ap_delta": quality.ap_delta, "cs": [lo, hi], "n_frauds": matured_frauds}
        harm = CheckResult(
            "ap_shown_worse",
            hi,
            -margin,
            not harmed,
            f"ΔAP upper bound {hi:+.4g} {'<' if harmed else '>='} {-margin:+.4g} ({cs})",
            details,
        )
        fine = CheckResult(
            "ap_non_inferiority",
            lo,
            -margin,
            shown_ok,
            f"ΔAP lower bound {lo:+.4g} {'>' if shown_ok else '<='} {-margin:+.4g} ({cs})",
            details,
        )
    else:
        why = (
            f"{matured_frauds} matured labeled frauds (need {policy.probation_min_labeled_frauds} to start, "
            f"{need.min_labeled_frauds} planned)"
        )
        harm, fine = not_run("ap_shown_worse", -margin, why), not_run("ap_non_inferiority", -margin, why)
    summary: dict[str, Any] = {
        **evidence.summary(),
        "sample_requirement": need.to_dict(),
        "matured_frauds": matured_frauds,
        "quality": quality.to_dict() if quality else None,
        "policy": policy.to_dict(),
        "final": final,
    }
    checks = [volume, exposure, *ops, harm, fine]
    status: Status
    # Volume first: a constant-score or p99 check on the first handful of events is noise, and
    # rolling back on it would undo a release at its first poll.
    if not volume.passed:
        status, reason, deciding = Decision.WAIT, volume.reason, volume.name
    elif (failed := _first_failed(ops)) is not None:
        status, reason, deciding = Decision.ROLLBACK, failed.reason, failed.name
    elif harm.ran and not harm.passed:
        status, reason, deciding = Decision.ROLLBACK, harm.reason, harm.name
    elif fine.ran and fine.passed and exposure.passed:
        status, reason, deciding = Decision.CONFIRM, f"all probation checks passed: {fine.reason}", None
    elif fine.ran and fine.passed:
        # Quality is fine so far, but the model has not yet met a full cycle of traffic.
        status, reason, deciding = Decision.WAIT, exposure.reason, exposure.name
    else:
        status, reason, deciding = Decision.WAIT, fine.reason, fine.name
    if status == Decision.WAIT and final:
        if not exposure.passed:
            status = Decision.ROLLBACK
            reason = (
                f"probation ended before the new champion met enough traffic ({exposure.reason}): "
                "the known-good champion returns"
            )
            deciding = exposure.name
        elif fine.ran:
            status = Decision.CONFIRM
            reason = f"probation ended, not shown harmful on matured evidence: {harm.reason}"
        else:
            status = Decision.ROLLBACK
            reason = f"probation ended without judging quality ({reason}): the known-good champion returns"
    return _decision(status, Stage.PROBATION, checks, reason, policy, summary, deciding)
