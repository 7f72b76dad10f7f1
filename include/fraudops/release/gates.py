"""Release gates as data: each check returns a result (value, threshold, passed, reason), a decision
collects them, and the DAG branches on ``decision.status``. Nothing here raises to say "no".

Promotion (challenger in shadow vs champion in production, same transactions), in priority order;
the decision's reason is the first failing check:

1. ``scored_events`` — enough paired events (:func:`required_sample`), else **wait**;
2. ``p99_latency_ms``, ``error_rate``, ``constant_scores``, ``feature_parity_mismatch``, drift
   (``score_drift``, ``feature_drift`` when given; feature drift passes when the champion's own
   training data is further from the same live window) — operational: **reject**;
3. ``labeled_frauds`` — enough matured labeled frauds for the quality intervals, else **wait**;
4. ``ap_non_inferiority`` (lower CI bound of ΔAP), ``ap_gain`` (point ΔAP), ``capture_rate``
   (lower CI bound of Δ capture rate), ``fpr_increase``, ``money_caught``,
   ``false_decline_money`` — quality and business: **reject**;
5. otherwise **promote**.

Probation (new champion in production vs old champion in shadow): ``scored_events`` (wait),
``error_rate_increase`` (production budget misses count as latency), ``constant_scores``,
``p99_latency_ms``, ``alert_rate_ratio``, ``ap_non_inferiority`` (skipped, and passing, while labels
are too few) → **rollback** or **confirm**.

Intervals come from a paired, label-stratified bootstrap: the same resampled rows for both models
(so ΔAP's interval reflects the pairing), the fraud count fixed per resample (AP is undefined
without frauds), vectorised with NumPy and seeded from the policy so a decision is reproducible.
Each model is judged at its own threshold through its recorded ``decision`` (``decline`` = flagged).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from fraudops.release.drift import DriftResult
from fraudops.release.evidence import ShadowEvidence, budget_misses, ok_mask, parse_vector
from fraudops.release.policy import (
    DEFAULT_POLICY,
    GatePolicy,
    SampleRequirement,
    is_p_value_method,
    required_sample,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from fraudops.warehouse import Warehouse

Side = Literal["candidate", "incumbent"]
Status = Literal["promote", "reject", "confirm", "rollback", "wait"]
GateStage = Literal["promotion", "probation"]

#: Fraud rate assumed for the scored-events requirement when the caller gives none.
DEFAULT_EXPECTED_FRAUD_RATE = 0.005


def _finite(x: Any) -> Any:
    """JSON-safe numbers: NaN/inf become None (BigQuery and strict JSON readers reject them)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


@dataclass(frozen=True)
class CheckResult:
    """One gate check: the measured value, the bound, and a sentence a human can act on."""

    name: str
    value: float | None
    threshold: float | None
    passed: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> CheckResult:
        return cls(**doc)


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
        return self.status in ("promote", "confirm")

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
        return _finite(doc)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> GateDecision:
        data = dict(doc)
        data["checks"] = tuple(CheckResult.from_dict(c) for c in data["checks"])
        return cls(**data)


# -- pure metric helpers ------------------------------------------------------------------------
def weighted_average_precision(
    scores: np.ndarray, y: np.ndarray, weights: np.ndarray, order: np.ndarray | None = None
) -> np.ndarray:
    """Average precision for each row of ``weights`` (shape ``(B, n)``), sklearn's definition.

    AP = Σ (Rₖ − Rₖ₋₁)·Pₖ over distinct score thresholds, descending; ties share a threshold.
    With all-ones weights this equals ``sklearn.metrics.average_precision_score``. ``order`` (the
    descending-score order) can be passed in to sort once across bootstrap chunks.
    """
    import numpy as np

    if order is None:
        order = np.argsort(-scores, kind="mergesort")
    s, yy = scores[order], y[order].astype(np.float64)
    w = weights[:, order]
    tp = np.cumsum(w * yy, axis=1)
    fp = np.cumsum(w * (1.0 - yy), axis=1)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp, fp = tp[:, last], fp[:, last]
    total = tp[:, -1:]
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    recall = np.divide(tp, total, out=np.zeros_like(tp), where=total > 0)
    drecall = np.diff(np.concatenate([np.zeros((len(w), 1)), recall], axis=1), axis=1)
    result: np.ndarray = (drecall * precision).sum(axis=1)
    return result


def _stratified_weights(rng: np.random.Generator, y: np.ndarray, n_resamples: int) -> np.ndarray:
    """Bootstrap multiplicities ``(B, n)``: each class resampled with replacement within itself."""
    import numpy as np

    weights = np.zeros((n_resamples, len(y)), dtype=np.float64)
    offsets = np.arange(n_resamples)[:, None]
    for idx in (np.flatnonzero(y == 1), np.flatnonzero(y == 0)):
        k = len(idx)
        if k == 0:
            continue
        draws = rng.integers(0, k, size=(n_resamples, k)) + offsets * k
        weights[:, idx] = np.bincount(draws.ravel(), minlength=n_resamples * k).reshape(n_resamples, k)
    return weights


@dataclass(frozen=True)
class PairedQuality:
    """Point estimates and bootstrap intervals of candidate − incumbent on the same labeled rows."""

    n: int
    n_frauds: int
    ap_incumbent: float
    ap_candidate: float
    ap_delta: float
    ap_delta_ci: tuple[float, float]
    capture_incumbent: float
    capture_candidate: float
    capture_delta: float
    capture_delta_ci: tuple[float, float]
    fpr_incumbent: float
    fpr_candidate: float
    money_fraud_total: float
    money_genuine_total: float
    money_caught_incumbent: float
    money_caught_candidate: float
    false_decline_money_incumbent: float
    false_decline_money_candidate: float

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))


def paired_quality(
    y: np.ndarray,
    incumbent_scores: np.ndarray,
    candidate_scores: np.ndarray,
    incumbent_flagged: np.ndarray,
    candidate_flagged: np.ndarray,
    amount: np.ndarray,
    policy: GatePolicy = DEFAULT_POLICY,
) -> PairedQuality:
    """Paired, label-stratified bootstrap of ΔAP and Δ capture rate (candidate − incumbent)."""
    import numpy as np

    y = np.asarray(y, dtype=np.int64)
    s_inc = np.asarray(incumbent_scores, dtype=np.float64)
    s_can = np.asarray(candidate_scores, dtype=np.float64)
    f_inc = np.asarray(incumbent_flagged, dtype=np.float64)
    f_can = np.asarray(candidate_flagged, dtype=np.float64)
    amt = np.asarray(amount, dtype=np.float64)
    n, n_pos = len(y), int(y.sum())
    if n_pos == 0 or n_pos == n:
        raise ValueError(f"paired quality needs both classes (frauds={n_pos}, rows={n})")
    pos, neg = y == 1, y == 0
    ones = np.ones((1, n))
    ap_inc = float(weighted_average_precision(s_inc, y, ones)[0])
    ap_can = float(weighted_average_precision(s_can, y, ones)[0])

    order_inc = np.argsort(-s_inc, kind="mergesort")
    order_can = np.argsort(-s_can, kind="mergesort")
    rng = np.random.default_rng(policy.bootstrap_seed)
    chunk = max(1, min(policy.bootstrap_resamples, 4_000_000 // max(n, 1)))
    d_ap: list[np.ndarray] = []
    d_cap: list[np.ndarray] = []
    done = 0
    while done < policy.bootstrap_resamples:
        b = min(chunk, policy.bootstrap_resamples - done)
        w = _stratified_weights(rng, y, b)
        d_ap.append(
            weighted_average_precision(s_can, y, w, order_can)
            - weighted_average_precision(s_inc, y, w, order_inc)
        )
        wp = w[:, pos]
        d_cap.append((wp @ (f_can[pos] - f_inc[pos])) / n_pos)
        done += b
    alpha = 1.0 - policy.confidence_level
    q = [alpha / 2, 1 - alpha / 2]
    ap_lo, ap_hi = np.quantile(np.concatenate(d_ap), q)
    cap_lo, cap_hi = np.quantile(np.concatenate(d_cap), q)
    return PairedQuality(
        n=n,
        n_frauds=n_pos,
        ap_incumbent=ap_inc,
        ap_candidate=ap_can,
        ap_delta=ap_can - ap_inc,
        ap_delta_ci=(float(ap_lo), float(ap_hi)),
        capture_incumbent=float(f_inc[pos].mean()),
        capture_candidate=float(f_can[pos].mean()),
        capture_delta=float(f_can[pos].mean() - f_inc[pos].mean()),
        capture_delta_ci=(float(cap_lo), float(cap_hi)),
        fpr_incumbent=float(f_inc[neg].mean()),
        fpr_candidate=float(f_can[neg].mean()),
        money_fraud_total=float(amt[pos].sum()),
        money_genuine_total=float(amt[neg].sum()),
        money_caught_incumbent=float((amt * f_inc)[pos].sum()),
        money_caught_candidate=float((amt * f_can)[pos].sum()),
        false_decline_money_incumbent=float((amt * f_inc)[neg].sum()),
        false_decline_money_candidate=float((amt * f_can)[neg].sum()),
    )


def _flagged(frame: pd.DataFrame, side: str) -> np.ndarray:
    """Flagged at the model's own threshold, as recorded: decision ``decline``."""
    import numpy as np

    return np.asarray(frame[f"{side}_decision"].astype("string").fillna("") == "decline", dtype=bool)


def feature_parity_mismatch(frame: pd.DataFrame, tolerance: float = 1e-9) -> tuple[float, int, int]:
    """(share, mismatched, compared) of rows whose two feature vectors differ (same feature set only)."""
    import numpy as np

    both = (
        frame["candidate_present"].astype(bool)
        & frame["incumbent_present"].astype(bool)
        & frame["candidate_features"].notna()
        & frame["incumbent_features"].notna()
        & (frame["candidate_feature_set"].astype("string") == frame["incumbent_feature_set"].astype("string"))
    ).fillna(False)
    sub = frame.loc[both.to_numpy(), ["candidate_features", "incumbent_features"]]
    mismatched = 0
    for a, b in zip(sub["candidate_features"], sub["incumbent_features"], strict=True):
        if a == b:
            continue
        va, vb = parse_vector(a), parse_vector(b)
        same = (
            va is not None
            and vb is not None
            and len(va) == len(vb)
            and bool(np.allclose(va, vb, rtol=0.0, atol=tolerance, equal_nan=True))
        )
        mismatched += not same
    compared = len(sub)
    return (mismatched / compared if compared else 0.0), mismatched, compared


# -- checks -------------------------------------------------------------------------------------
def _g(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.4g}"


def _check_min(name: str, what: str, value: float, minimum: float) -> CheckResult:
    ok = value >= minimum
    op = ">=" if ok else "<"
    return CheckResult(
        name, float(value), float(minimum), ok, f"{what} {_g(value)} {op} {_g(minimum)} required"
    )


def _check_max(name: str, what: str, value: float, maximum: float, unit: str = "") -> CheckResult:
    ok = bool(value <= maximum)
    op = "<=" if ok else ">"
    return CheckResult(
        name, float(value), float(maximum), ok, f"{what} {_g(value)}{unit} {op} {_g(maximum)}{unit}"
    )


def _error_rate(frame: pd.DataFrame, side: Side, excused: pd.Series | None = None) -> float:
    """Share of rows where ``side`` produced no usable score, not counting ``excused`` rows."""
    if not len(frame):
        return 0.0
    failed = ~ok_mask(frame, side)
    return float((failed if excused is None else failed & ~excused).mean())


def error_kinds(frame: pd.DataFrame, side: Side) -> dict[str, int]:
    """What the failed rows of ``side`` were: ``missing`` (no row at all), ``fallback``, the
    logged ``error`` values (``shed:down``, ``error:<type>``, ``nan``, ...) and ``no_score``."""
    bad = frame.loc[~ok_mask(frame, side).to_numpy()]
    if bad.empty:
        return {}
    present = bad[f"{side}_present"].fillna(False).astype(bool)
    fallback = bad[f"{side}_fallback"].fillna(False).astype(bool)
    error = bad[f"{side}_error"].astype("string").fillna("")
    kind = error.where(error != "", "no_score").where(~fallback, "fallback").where(present, "missing")
    counts = kind.value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def _error_check(frame: pd.DataFrame, side: Side, maximum: float) -> CheckResult:
    check = _check_max("error_rate", "error rate", _error_rate(frame, side), maximum)
    kinds = error_kinds(frame, side)
    if kinds:
        top = ", ".join(f"{k} {n}" for k, n in list(kinds.items())[:4])
        check = replace(check, reason=f"{check.reason} ({top})", details={"kinds": kinds})
    return check


def _p99_latency(frame: pd.DataFrame, side: str) -> float:
    import numpy as np

    lat = frame.loc[frame[f"{side}_present"].astype(bool), f"{side}_latency_ms"].dropna().to_numpy()
    return float(np.percentile(lat, 99)) if len(lat) else math.nan


def _constant_scores_check(frame: pd.DataFrame, side: Side, policy: GatePolicy) -> CheckResult:
    import numpy as np

    scores = frame.loc[ok_mask(frame, side).to_numpy(), f"{side}_score"].to_numpy(dtype=np.float64)
    std = float(scores.std()) if len(scores) else 0.0
    distinct = len(np.unique(scores))
    ok = std >= policy.min_score_std and distinct >= policy.min_distinct_scores
    why = [f"std {_g(std)} < {_g(policy.min_score_std)}"] if std < policy.min_score_std else []
    if distinct < policy.min_distinct_scores:
        why.append(f"{distinct} distinct values < {policy.min_distinct_scores}")
    reason = (
        f"scores vary (std {_g(std)}, {distinct} distinct values)"
        if ok
        else f"constant scores ({' and '.join(why)})"
    )
    return CheckResult(
        "constant_scores", std, policy.min_score_std, ok, reason, {"distinct_scores": distinct}
    )


def _latency_check(frame: pd.DataFrame, side: str, limit: float) -> CheckResult:
    p99 = _p99_latency(frame, side)
    if math.isnan(p99):
        return CheckResult("p99_latency_ms", None, limit, False, "no latency measured")
    ok = p99 <= limit
    return CheckResult(
        "p99_latency_ms", p99, limit, ok, f"p99 latency {_g(p99)} ms {'<=' if ok else '>'} SLA {_g(limit)} ms"
    )


#: ``DriftResult.check`` of production's features vs the champion's training reference.
INCUMBENT_FEATURE_DRIFT = "incumbent_feature_drift"


def _rate_ratio_lower_bound(new: int, old: int, confidence: float) -> float:
    """Lower confidence bound of the ratio of two event rates on the same exposure: conditional on
    ``new + old`` events, ``new`` is binomial with p = r / (1 + r) (Clopper-Pearson bound on p)."""
    from scipy.stats import beta

    if new == 0:
        return 0.0
    p_lo = float(beta.ppf((1.0 - confidence) / 2.0, new, old + 1))
    return p_lo / (1.0 - p_lo) if p_lo < 1.0 else math.inf


def _drift_checks(
    drift: DriftResult | Sequence[DriftResult] | None, margin: float = 0.0
) -> list[CheckResult]:
    if drift is None:
        return []
    results = [drift] if isinstance(drift, DriftResult) else list(drift)
    # The champion's own feature drift on the same window is a yardstick, not a check.
    yardstick = next((r for r in results if r.check == INCUMBENT_FEATURE_DRIFT), None)
    checks = []
    for r in results:
        if r is yardstick:
            continue
        if (
            r.check == "feature_drift"
            and r.dataset_drift
            and yardstick is not None
            and r.drift_share <= yardstick.drift_share + margin
        ):
            reason = (
                f"{r.check}: {r.drift_share:.0%} of {len(r.columns)} columns drifted > "
                f"{r.max_drift_share:.0%}, but live traffic is as far from the champion's "
                f"training data ({yardstick.drift_share:.0%}, margin {margin:.0%}): the challenger "
                "fits it no worse"
            )
            details = {**r.to_dict(), "incumbent_drift_share": yardstick.drift_share}
            checks.append(CheckResult(r.check, r.drift_share, yardstick.drift_share, True, reason, details))
            continue
        if len(r.columns) == 1:
            c = r.columns[0]
            # p-values drift downwards, distances upwards
            op = ("<", ">=")[c.drifted ^ is_p_value_method(c.method)]
            reason = f"{r.check} {c.method} {_g(c.value)} {op} {_g(c.threshold)}"
            checks.append(CheckResult(r.check, c.value, c.threshold, not c.drifted, reason, r.to_dict()))
        else:
            drifted = r.drifted_columns
            op = ">" if r.dataset_drift else "<="
            reason = (
                f"{r.check}: {r.drift_share:.0%} of {len(r.columns)} columns drifted {op} "
                f"{r.max_drift_share:.0%}" + (f" ({', '.join(drifted[:5])})" if drifted else "")
            )
            if r.check == "feature_drift" and yardstick is not None:
                reason += f"; champion's training data: {yardstick.drift_share:.0%}"
            checks.append(
                CheckResult(
                    r.check, r.drift_share, r.max_drift_share, not r.dataset_drift, reason, r.to_dict()
                )
            )
    return checks


def _quality_checks(q: PairedQuality, policy: GatePolicy, *, probation: bool) -> list[CheckResult]:
    margin = policy.probation_max_ap_regression if probation else policy.max_ap_regression
    lo, hi = q.ap_delta_ci
    ci = f"ΔAP {q.ap_delta:+.4f} [{lo:+.4f}, {hi:+.4f}]"
    if probation:
        # The burden of proof flips after a promotion: the model already proved non-inferiority on
        # its shadow sample, so probation rolls back on evidence of *harm* (the whole interval
        # below -margin), not on a small probation sample's failure to prove it again.
        ok = hi > -margin
        bound, reason = hi, f"AP upper CI bound {hi:+.4g} {'>' if ok else '<='} {-margin:+.4g} ({ci})"
    else:
        ok = lo > -margin
        bound, reason = lo, f"AP lower CI bound {lo:+.4g} {'>' if ok else '<='} {-margin:+.4g} ({ci})"
    checks = [
        CheckResult(
            "ap_non_inferiority",
            bound,
            -margin,
            ok,
            reason,
            {
                "ap_delta": q.ap_delta,
                "ci": list(q.ap_delta_ci),
                "ap_candidate": q.ap_candidate,
                "ap_incumbent": q.ap_incumbent,
            },
        )
    ]
    if probation:
        return checks
    gain_ok = q.ap_delta >= policy.min_ap_gain
    checks.append(
        CheckResult(
            "ap_gain",
            q.ap_delta,
            policy.min_ap_gain,
            gain_ok,
            f"ΔAP {q.ap_delta:+.4g} {'>=' if gain_ok else '<'} min gain {policy.min_ap_gain:+.4g}",
        )
    )
    clo, chi = q.capture_delta_ci
    cap_ok = clo > -policy.max_capture_rate_regression
    checks.append(
        CheckResult(
            "capture_rate",
            clo,
            -policy.max_capture_rate_regression,
            cap_ok,
            f"capture-rate lower CI bound {clo:+.4g} {'>' if cap_ok else '<='} "
            f"{-policy.max_capture_rate_regression:+.4g} (Δ {q.capture_delta:+.4f} [{clo:+.4f}, {chi:+.4f}]; "
            f"{q.capture_candidate:.3f} vs {q.capture_incumbent:.3f})",
            {
                "capture_candidate": q.capture_candidate,
                "capture_incumbent": q.capture_incumbent,
                "ci": list(q.capture_delta_ci),
            },
        )
    )
    d_fpr = q.fpr_candidate - q.fpr_incumbent
    fpr_ok = d_fpr <= policy.max_fpr_increase
    checks.append(
        CheckResult(
            "fpr_increase",
            d_fpr,
            policy.max_fpr_increase,
            fpr_ok,
            f"FPR {q.fpr_candidate:.4g} vs champion {q.fpr_incumbent:.4g}: {d_fpr:+.4g} "
            f"{'<=' if fpr_ok else '>'} {policy.max_fpr_increase:+.4g}",
        )
    )
    fraud_money = q.money_fraud_total or 1.0
    d_caught = (q.money_caught_candidate - q.money_caught_incumbent) / fraud_money
    caught_ok = d_caught >= -policy.max_money_caught_drop
    checks.append(
        CheckResult(
            "money_caught",
            d_caught,
            -policy.max_money_caught_drop,
            caught_ok,
            f"money caught {q.money_caught_candidate:.2f} vs champion {q.money_caught_incumbent:.2f}: "
            f"{d_caught:+.2%} of fraud money {'>=' if caught_ok else '<'} "
            f"{-policy.max_money_caught_drop:+.2%}",
            {"money_fraud_total": q.money_fraud_total},
        )
    )
    genuine_money = q.money_genuine_total or 1.0
    d_false = (q.false_decline_money_candidate - q.false_decline_money_incumbent) / genuine_money
    false_ok = d_false <= policy.max_false_decline_money_increase
    checks.append(
        CheckResult(
            "false_decline_money",
            d_false,
            policy.max_false_decline_money_increase,
            false_ok,
            f"falsely declined money {q.false_decline_money_candidate:.2f} vs champion "
            f"{q.false_decline_money_incumbent:.2f}: {d_false:+.3%} of genuine money "
            f"{'<=' if false_ok else '>'} {policy.max_false_decline_money_increase:+.3%}",
            {"money_genuine_total": q.money_genuine_total},
        )
    )
    return checks


def _paired_quality_for(evidence: ShadowEvidence, policy: GatePolicy) -> PairedQuality | None:
    frame = evidence.frame
    both = (ok_mask(frame, "candidate") & ok_mask(frame, "incumbent") & frame["label"].notna()).to_numpy()
    sub = frame.loc[both]
    y = sub["label"].to_numpy().astype(int)
    if y.sum() == 0 or y.sum() == len(y):
        return None
    return paired_quality(
        y,
        sub["incumbent_score"].to_numpy(),
        sub["candidate_score"].to_numpy(),
        _flagged(sub, "incumbent"),
        _flagged(sub, "candidate"),
        sub["amount"].to_numpy(),
        policy,
    )


def _decide(
    stage: GateStage,
    groups: list[tuple[list[CheckResult], Status]],
    success: Status,
    success_reason: str,
    policy: GatePolicy,
    evidence: dict[str, Any],
) -> GateDecision:
    checks = [c for group, _ in groups for c in group]
    for group, status in groups:
        for c in group:
            if not c.passed:
                return GateDecision(
                    status,
                    stage,
                    tuple(checks),
                    c.reason,
                    policy.version,
                    policy.fingerprint,
                    evidence,
                    c.name,
                )
    return GateDecision(
        success, stage, tuple(checks), success_reason, policy.version, policy.fingerprint, evidence
    )


def decide_promotion(
    evidence: ShadowEvidence,
    policy: GatePolicy = DEFAULT_POLICY,
    drift: DriftResult | Sequence[DriftResult] | None = None,
    *,
    expected_fraud_rate: float | None = None,
) -> GateDecision:
    """Promote, reject or wait, from paired shadow evidence (and optional drift results).

    ``expected_fraud_rate`` sizes the scored-events requirement (default 0.5%).
    """
    frame = evidence.frame
    need: SampleRequirement = required_sample(policy, expected_fraud_rate or DEFAULT_EXPECTED_FRAUD_RATE)
    volume = [_check_min("scored_events", "scored events", evidence.n_events, need.min_scored_events)]
    parity, mismatched, compared = feature_parity_mismatch(frame, policy.feature_parity_tolerance)
    # Latency first: a slow challenger is also throttled by the shadow pool, and the events it
    # sheds show up as missing scores (errors); the root cause to report is the latency.
    ops = [
        _latency_check(frame, "candidate", policy.max_p99_latency_ms),
        _error_check(frame, "candidate", policy.max_error_rate),
        _constant_scores_check(frame, "candidate", policy),
        CheckResult(
            "feature_parity_mismatch",
            parity,
            policy.max_feature_parity_mismatch,
            parity <= policy.max_feature_parity_mismatch,
            f"feature parity mismatch {_g(parity)} ({mismatched}/{compared} events) "
            f"{'<=' if parity <= policy.max_feature_parity_mismatch else '>'} "
            f"{_g(policy.max_feature_parity_mismatch)}",
            {"mismatched": mismatched, "compared": compared},
        ),
        *_drift_checks(drift, policy.feature_drift_margin),
    ]
    labels = [
        _check_min("labeled_frauds", "labeled frauds", evidence.n_evaluable_frauds, need.min_labeled_frauds),
        # Genuine rows come from maturity (most are never labelled): without them there is no FPR
        # and no AP, and "no quality evidence" must not read as "quality passed".
        _check_min(
            "evaluable_genuine",
            "evaluable genuine events",
            evidence.n_evaluable - evidence.n_evaluable_frauds,
            need.min_labeled_frauds,
        ),
    ]
    quality = _paired_quality_for(evidence, policy) if all(c.passed for c in labels) else None
    quality_checks = _quality_checks(quality, policy, probation=False) if quality else []
    summary: dict[str, Any] = {
        **evidence.summary(),
        "sample_requirement": need.to_dict(),
        "quality": quality.to_dict() if quality else None,
        "policy": policy.to_dict(),
    }
    ap = quality_checks[0].details if quality_checks else {}
    success = f"all checks passed: ΔAP {ap.get('ap_delta', math.nan):+.4f}" if ap else "all checks passed"
    return _decide(
        "promotion",
        [(volume, "wait"), (ops, "reject"), (labels, "wait"), (quality_checks, "reject")],
        "promote",
        success,
        policy,
        summary,
    )


def decide_probation(evidence: ShadowEvidence, policy: GatePolicy = DEFAULT_POLICY) -> GateDecision:
    """Confirm, roll back or wait: the new champion in production vs the old champion in shadow."""
    import numpy as np

    frame = evidence.frame
    volume = [
        _check_min("scored_events", "scored events", evidence.n_events, policy.probation_min_scored_events)
    ]
    # Like with like: only production has a per-request time budget, so a new champion's budget
    # misses (answered by the old one; the machine's load moves them as much as the model does)
    # are judged by the latency check, not counted as errors against an old champion in shadow.
    misses = budget_misses(frame, "candidate")
    n_misses = int(misses.sum())
    cand_err, inc_err = _error_rate(frame, "candidate", misses), _error_rate(frame, "incumbent")
    both = (ok_mask(frame, "candidate") & ok_mask(frame, "incumbent")).to_numpy()
    # Declines of each model on the events both scored: the rates and the counts behind them.
    paired = int(both.sum())
    new_n = int(_flagged(frame.loc[both], "candidate").sum()) if paired else 0
    old_n = int(_flagged(frame.loc[both], "incumbent").sum()) if paired else 0
    cand_alert = new_n / paired if paired else 0.0
    inc_alert = old_n / paired if paired else 0.0
    # No declines before and none now is no jump; declines from zero is an unbounded one.
    ratio = cand_alert / inc_alert if inc_alert > 0 else (1.0 if cand_alert == 0 else float(np.inf))
    err_check = _check_max(
        "error_rate_increase",
        "error rate increase",
        cand_err - inc_err,
        policy.probation_max_error_rate_increase,
    )
    err_check = CheckResult(
        err_check.name,
        err_check.value,
        err_check.threshold,
        err_check.passed,
        f"{err_check.reason} (new {_g(cand_err)}, old {_g(inc_err)}"
        + (f"; {n_misses} budget misses judged by latency)" if n_misses else ")"),
        {
            "candidate_error_rate": cand_err,
            "incumbent_error_rate": inc_err,
            "candidate_budget_misses": n_misses,
        },
    )
    # Evidence of a jump, not a few declines: roll back when the lower confidence bound of the
    # ratio exceeds the limit (4 declines against 1 on 300 events is a ratio of 4 and no evidence).
    ratio_lo = _rate_ratio_lower_bound(new_n, old_n, policy.confidence_level)
    limit = policy.probation_max_alert_rate_ratio
    ok = bool(ratio_lo <= limit)
    alert = CheckResult(
        "alert_rate_ratio",
        float(ratio),
        float(limit),
        ok,
        f"decline-rate ratio {_g(ratio)} (lower bound {_g(ratio_lo)}) {'<=' if ok else '>'} {_g(limit)} "
        f"(new {cand_alert:.4g}, old {inc_alert:.4g}; {new_n} vs {old_n} declines)",
        {
            "candidate_alert_rate": cand_alert,
            "incumbent_alert_rate": inc_alert,
            "candidate_declines": new_n,
            "incumbent_declines": old_n,
            "ratio_lower_bound": ratio_lo,
        },
    )
    ops = [
        err_check,
        _constant_scores_check(frame, "candidate", policy),
        _latency_check(frame, "candidate", policy.probation_max_p99_latency_ms),
        alert,
    ]
    quality = None
    if evidence.n_evaluable_frauds >= policy.probation_min_labeled_frauds:
        quality = _paired_quality_for(evidence, policy)
    if quality is not None:
        quality_checks = _quality_checks(quality, policy, probation=True)
    else:
        quality_checks = [
            CheckResult(
                "ap_non_inferiority",
                None,
                -policy.probation_max_ap_regression,
                True,
                f"skipped: {evidence.n_evaluable_frauds} matured labeled frauds < "
                f"{policy.probation_min_labeled_frauds} needed",
                {"skipped": True},
            )
        ]
    summary: dict[str, Any] = {
        **evidence.summary(),
        "quality": quality.to_dict() if quality else None,
        "policy": policy.to_dict(),
    }
    return _decide(
        "probation",
        [(volume, "wait"), (ops, "rollback"), (quality_checks, "rollback")],
        "confirm",
        "all probation checks passed",
        policy,
        summary,
    )


# -- recording ----------------------------------------------------------------------------------
def decision_row(
    decision: GateDecision,
    *,
    model_name: str,
    challenger_version: str | None,
    champion_version: str | None,
    dag_run_id: str | None = None,
) -> dict[str, Any]:
    """A ``gate_decisions`` row. The id is derived from the run when given, so a retried task
    records the same decision once (upsert by key); the evidence column is the JSON decision."""
    if dag_run_id:
        basis = f"{decision.stage}|{model_name}|{challenger_version}|{champion_version}|{dag_run_id}"
        decision_id = hashlib.sha256(basis.encode()).hexdigest()[:32]
    else:
        decision_id = uuid.uuid4().hex
    doc = decision.to_dict()
    evidence = {
        "checks": doc["checks"],
        "deciding_check": decision.deciding_check,
        "policy_fingerprint": decision.policy_fingerprint,
        "evidence": doc["evidence"],
    }
    return {
        "decision_id": decision_id,
        "model_name": model_name,
        "challenger_version": challenger_version,
        "champion_version": champion_version,
        "stage": decision.stage,
        "policy_version": decision.policy_version,
        "status": decision.status,
        "reason": decision.reason,
        "evidence": json.dumps(evidence, sort_keys=True, default=str, allow_nan=False),
        "dag_run_id": dag_run_id,
        "decided_at": dt.datetime.fromisoformat(decision.decided_at),
    }


def record_decision(
    warehouse: Warehouse,
    decision: GateDecision,
    *,
    model_name: str,
    challenger_version: str | None,
    champion_version: str | None,
    dag_run_id: str | None = None,
) -> dict[str, Any]:
    """Store the decision (idempotent per run); returns the row written."""
    row = decision_row(
        decision,
        model_name=model_name,
        challenger_version=challenger_version,
        champion_version=champion_version,
        dag_run_id=dag_run_id,
    )
    warehouse.upsert("gate_decisions", [row])
    return row
