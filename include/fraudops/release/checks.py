"""Gate checks as data: each returns a :class:`CheckResult` (value, bound, passed, a sentence a
human can act on, and whether it ran at all). Operational checks (errors, latency, constant scores,
feature parity, drift) live here; the quality checks and the decisions that combine them are in
:mod:`fraudops.release.gates`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from fraudops.release.drift import INCUMBENT_FEATURE_DRIFT, DriftResult
from fraudops.release.evidence import ok_mask, parse_vector
from fraudops.release.policy import GatePolicy, is_p_value_method
from fraudops.release.quality import finite_doc

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

Side = Literal["candidate", "incumbent"]


@dataclass(frozen=True)
class CheckResult:
    """One gate check: the measured value, the bound, and a sentence a human can act on."""

    name: str
    value: float | None
    threshold: float | None
    passed: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    #: False when the check could not be evaluated (e.g. too few matured labels): such a check is
    #: reported as *not run*, and a decision never counts it as passed.
    ran: bool = True

    def to_dict(self) -> dict[str, Any]:
        return finite_doc(asdict(self))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> CheckResult:
        return cls(**doc)

    @property
    def state(self) -> str:
        """``passed``, ``failed`` or ``not run``: what a page or a log shows."""
        return "not run" if not self.ran else ("passed" if self.passed else "failed")


def flagged(frame: pd.DataFrame, side: str) -> np.ndarray:
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
    # Identical text is identical vectors: parse only the rows whose text differs.
    differ = (sub["candidate_features"].astype(str) != sub["incumbent_features"].astype(str)).to_numpy()
    mismatched = 0
    for a, b in zip(sub["candidate_features"][differ], sub["incumbent_features"][differ], strict=True):
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


def fmt(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.4g}"


def check_min(name: str, what: str, value: float, minimum: float) -> CheckResult:
    ok = value >= minimum
    op = ">=" if ok else "<"
    return CheckResult(
        name, float(value), float(minimum), ok, f"{what} {fmt(value)} {op} {fmt(minimum)} required"
    )


def check_max(name: str, what: str, value: float, maximum: float, unit: str = "") -> CheckResult:
    ok = bool(value <= maximum)
    op = "<=" if ok else ">"
    return CheckResult(
        name, float(value), float(maximum), ok, f"{what} {fmt(value)}{unit} {op} {fmt(maximum)}{unit}"
    )


def error_rate(frame: pd.DataFrame, side: Side, excused: pd.Series | None = None) -> float:
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


def error_check(frame: pd.DataFrame, side: Side, maximum: float) -> CheckResult:
    check = check_max("error_rate", "error rate", error_rate(frame, side), maximum)
    kinds = error_kinds(frame, side)
    if kinds:
        top = ", ".join(f"{k} {n}" for k, n in list(kinds.items())[:4])
        check = replace(check, reason=f"{check.reason} ({top})", details={"kinds": kinds})
    return check


def p99_latency(frame: pd.DataFrame, side: str) -> float:
    import numpy as np

    lat = frame.loc[frame[f"{side}_present"].astype(bool), f"{side}_latency_ms"].dropna().to_numpy()
    return float(np.percentile(lat, 99)) if len(lat) else math.nan


def constant_scores_check(frame: pd.DataFrame, side: Side, policy: GatePolicy) -> CheckResult:
    import numpy as np

    scores = frame.loc[ok_mask(frame, side).to_numpy(), f"{side}_score"].to_numpy(dtype=np.float64)
    std = float(scores.std()) if len(scores) else 0.0
    distinct = len(np.unique(scores))
    ok = std >= policy.min_score_std and distinct >= policy.min_distinct_scores
    why = [f"std {fmt(std)} < {fmt(policy.min_score_std)}"] if std < policy.min_score_std else []
    if distinct < policy.min_distinct_scores:
        why.append(f"{distinct} distinct values < {policy.min_distinct_scores}")
    reason = (
        f"scores vary (std {fmt(std)}, {distinct} distinct values)"
        if ok
        else f"constant scores ({' and '.join(why)})"
    )
    return CheckResult(
        "constant_scores", std, policy.min_score_std, ok, reason, {"distinct_scores": distinct}
    )


def latency_check(frame: pd.DataFrame, side: str, limit: float) -> CheckResult:
    p99 = p99_latency(frame, side)
    if math.isnan(p99):
        return CheckResult("p99_latency_ms", None, limit, False, "no latency measured")
    ok = p99 <= limit
    return CheckResult(
        "p99_latency_ms",
        p99,
        limit,
        ok,
        f"p99 latency {fmt(p99)} ms {'<=' if ok else '>'} SLA {fmt(limit)} ms",
    )


def further_than_champion(
    result: DriftResult, yardstick: DriftResult, margin: float
) -> list[tuple[str, float, float | None]]:
    """Columns where the challenger's training data is a worse fit for live traffic than the
    champion's: drifted from the challenger's reference *and*, on the same live window, further
    than the champion's reference by more than ``margin`` (method units; for p-value methods:
    drifted where the champion's column is not). A column the champion does not read is judged
    alone. Returns (column, challenger value, champion value or None)."""
    champion = {c.column: c for c in yardstick.columns}
    worse: list[tuple[str, float, float | None]] = []
    for c in result.columns:
        if not c.drifted:
            continue
        y = champion.get(c.column)
        if y is None or math.isnan(c.value) or math.isnan(y.value):
            worse.append((c.column, c.value, None if y is None else y.value))
        elif (not y.drifted) if is_p_value_method(c.method) else c.value > y.value + margin:
            worse.append((c.column, c.value, y.value))
    return worse


def drift_checks(drift: DriftResult | Sequence[DriftResult] | None, margin: float = 0.0) -> list[CheckResult]:
    if drift is None:
        return []
    results = [drift] if isinstance(drift, DriftResult) else list(drift)
    # The champion's own feature drift on the same window is a yardstick, not a check.
    yardstick = next((r for r in results if r.check == INCUMBENT_FEATURE_DRIFT), None)
    checks = []
    for r in results:
        if r is yardstick:
            continue
        if r.check == "score_drift":
            # Raw-score histograms differ whenever calibration does (a monotone rescale of the
            # champion itself reads PSI >> 0.25): shown for reading, judged at the budget instead.
            reason = (
                f"informational: raw-score {r.check} {r.columns[0].method if r.columns else ''} "
                f"{fmt(r.columns[0].value if r.columns else None)} (models are compared at the same alert "
                "budget, not by raw score)"
            )
            checks.append(CheckResult(r.check, r.drift_share, None, True, reason, r.to_dict()))
            continue
        if r.check == "feature_drift" and yardstick is not None and r.columns:
            # Live traffic may have moved away from both training sets (the attack wave that
            # triggered the retrain): the question is whether the challenger fits it worse than
            # the champion does, column by column, not how many columns cross a threshold (a
            # count moves by one or two of 34 columns on noise alone).
            worse = further_than_champion(r, yardstick, margin)
            share = len(worse) / len(r.columns)
            ok = share <= r.max_drift_share
            shown = ", ".join(
                f"{name} {fmt(v)} vs {fmt(y) if y is not None else 'not read'}" for name, v, y in worse[:5]
            )
            reason = (
                f"{r.check}: {len(worse)} of {len(r.columns)} columns fit live traffic worse than the "
                f"champion's training data (drifted and further by > {fmt(margin)}) "
                f"{'<=' if ok else '>'} {r.max_drift_share:.0%}"
                + (f" ({shown})" if shown else "")
                + f"; drifted vs own training data {r.drift_share:.0%}, "
                f"champion's {yardstick.drift_share:.0%}"
            )
            details = {
                **r.to_dict(),
                "worse_than_champion": [list(w) for w in worse],
                "incumbent_drift_share": yardstick.drift_share,
                "margin": margin,
            }
            checks.append(CheckResult(r.check, share, r.max_drift_share, ok, reason, details))
            continue
        if len(r.columns) == 1:
            c = r.columns[0]
            # p-values drift downwards, distances upwards
            op = ("<", ">=")[c.drifted ^ is_p_value_method(c.method)]
            reason = f"{r.check} {c.method} {fmt(c.value)} {op} {fmt(c.threshold)}"
            checks.append(CheckResult(r.check, c.value, c.threshold, not c.drifted, reason, r.to_dict()))
        else:
            drifted = r.drifted_columns
            op = ">" if r.dataset_drift else "<="
            reason = (
                f"{r.check}: {r.drift_share:.0%} of {len(r.columns)} columns drifted {op} "
                f"{r.max_drift_share:.0%}" + (f" ({', '.join(drifted[:5])})" if drifted else "")
            )
            checks.append(
                CheckResult(
                    r.check, r.drift_share, r.max_drift_share, not r.dataset_drift, reason, r.to_dict()
                )
            )
    return checks


def not_run(name: str, threshold: float | None, why: str) -> CheckResult:
    return CheckResult(name, None, threshold, False, f"not run: {why}", ran=False)


def cs_text(lo: float, hi: float) -> str:
    return f"[{lo:+.4f}, {hi:+.4f}]"
