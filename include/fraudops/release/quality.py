"""Quality of two models on the same matured events, at the same alert budget, with confidence
sequences.

Inputs are the paired rows both models scored. Each model's threshold is matched to the policy's
budget on those rows (:mod:`.operating_point`); capture rate, false-positive rate, fraud money
caught and genuine money falsely declined are then compared at the matched thresholds, on the
*matured* labeled rows only (:mod:`.labels`). ΔAP needs no threshold. Every difference comes with
a confidence sequence (:mod:`.sequential`), so the gate may look at it as often as it likes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fraudops.release.operating_point import OperatingPoint, match_threshold
from fraudops.release.sequential import PairedAP, SequentialEstimate, paired_ap, sequential_mean

if TYPE_CHECKING:
    import numpy as np

    from fraudops.release.policy import GatePolicy


def finite_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """:func:`finite_json` of a dict (typed for the ``to_dict`` methods)."""
    out: dict[str, Any] = finite_json(doc)
    return out


def finite_json(x: Any) -> Any:
    """JSON-safe numbers: NaN/inf become None (BigQuery and strict JSON readers reject them)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite_json(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite_json(v) for v in x]
    return x


@dataclass(frozen=True)
class MatchedQuality:
    """Candidate − incumbent on the same matured events at the same budget."""

    n: int
    n_frauds: int
    candidate_point: OperatingPoint
    incumbent_point: OperatingPoint
    ap: PairedAP
    capture_candidate: float
    capture_incumbent: float
    #: Δ capture rate at the budget (per matured fraud).
    capture: SequentialEstimate
    fpr_candidate: float
    fpr_incumbent: float
    fpr: SequentialEstimate
    money_fraud_total: float
    money_genuine_total: float
    money_caught_candidate: float
    money_caught_incumbent: float
    #: Δ fraud money caught as a share of all fraud money.
    money_caught: SequentialEstimate
    false_decline_money_candidate: float
    false_decline_money_incumbent: float
    #: Δ genuine money declined as a share of all genuine money.
    false_decline_money: SequentialEstimate

    @property
    def ap_delta(self) -> float:
        return self.ap.delta.estimate

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe; keeps the flat names the release page and MLflow metrics read."""
        return finite_doc(
            {
                "n": self.n,
                "n_frauds": self.n_frauds,
                "operating_point": {
                    "candidate": self.candidate_point.to_dict(),
                    "incumbent": self.incumbent_point.to_dict(),
                },
                "ap_candidate": self.ap.ap_candidate,
                "ap_incumbent": self.ap.ap_incumbent,
                "ap_delta": self.ap_delta,
                "ap_delta_ci": list(self.ap.delta.ci),
                "ap_delta_cs": list(self.ap.delta.cs),
                "ap_delta_sd_per_fraud": self.ap.sd_per_fraud,
                "capture_candidate": self.capture_candidate,
                "capture_incumbent": self.capture_incumbent,
                "capture_delta": self.capture.estimate,
                "capture_delta_cs": list(self.capture.cs),
                "fpr_candidate": self.fpr_candidate,
                "fpr_incumbent": self.fpr_incumbent,
                "fpr_delta_cs": list(self.fpr.cs),
                "money_fraud_total": self.money_fraud_total,
                "money_genuine_total": self.money_genuine_total,
                "money_caught_candidate": self.money_caught_candidate,
                "money_caught_incumbent": self.money_caught_incumbent,
                "money_caught_delta_share_cs": list(self.money_caught.cs),
                "false_decline_money_candidate": self.false_decline_money_candidate,
                "false_decline_money_incumbent": self.false_decline_money_incumbent,
                "false_decline_money_delta_share_cs": list(self.false_decline_money.cs),
            }
        )


def match_points(
    candidate_scores: np.ndarray,
    incumbent_scores: np.ndarray,
    genuine: np.ndarray,
    policy: GatePolicy,
) -> tuple[OperatingPoint, OperatingPoint]:
    """Both thresholds matched to the policy's budget on the same rows (``genuine``: matured
    genuine rows, used for an FPR budget)."""
    if policy.budget_kind == "fpr":
        return (
            match_threshold(candidate_scores[genuine], policy.alert_budget, kind="fpr"),
            match_threshold(incumbent_scores[genuine], policy.alert_budget, kind="fpr"),
        )
    return (
        match_threshold(candidate_scores, policy.alert_budget),
        match_threshold(incumbent_scores, policy.alert_budget),
    )


def _ratio_terms(amount: np.ndarray, delta_flag: np.ndarray) -> tuple[float, np.ndarray]:
    """Δ money share R = Σ a·d / Σ a and its per-row influence terms (a·d − R·a) / mean(a)."""
    import numpy as np

    total = float(amount.sum())
    if total <= 0:
        return 0.0, np.zeros_like(amount)
    r = float((amount * delta_flag).sum() / total)
    return r, (amount * delta_flag - r * amount) / float(amount.mean())


def matched_quality(
    *,
    candidate_scores: np.ndarray,
    incumbent_scores: np.ndarray,
    label: np.ndarray,
    amount: np.ndarray,
    policy: GatePolicy,
    planned_frauds: int,
) -> MatchedQuality:
    """Quality on the rows both models scored. ``label``: 1.0 fraud, 0.0 genuine, NaN not matured
    (matured rows only enter the metrics; all rows set an alert-rate budget's thresholds).
    ``planned_frauds`` tunes the confidence sequences (tightest at the planned sample)."""
    import numpy as np

    s_c = np.asarray(candidate_scores, dtype=np.float64)
    s_i = np.asarray(incumbent_scores, dtype=np.float64)
    lab = np.asarray(label, dtype=np.float64)
    amt = np.asarray(amount, dtype=np.float64)
    evaluable = ~np.isnan(lab)
    pos = evaluable & (lab == 1.0)
    neg = evaluable & (lab == 0.0)
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"matched quality needs matured frauds and genuine rows ({n_pos}, {n_neg})")
    alpha = 1.0 - policy.confidence_level
    fraud_share = n_pos / (n_pos + n_neg)
    t_fraud = float(max(planned_frauds, 1))
    t_genuine = t_fraud * n_neg / n_pos
    cand_pt, inc_pt = match_points(s_c, s_i, neg, policy)
    f_c, f_i = cand_pt.flags(s_c), inc_pt.flags(s_i)  # float flags: ties count their tie_share
    y = lab[evaluable].astype(np.int64)
    ap = paired_ap(y, s_i[evaluable], s_c[evaluable], alpha=alpha, t_opt=t_fraud / fraud_share)
    d_pos = f_c[pos] - f_i[pos]
    d_neg = f_c[neg] - f_i[neg]
    capture = sequential_mean(d_pos, alpha=alpha, t_opt=t_fraud)
    fpr = sequential_mean(d_neg, alpha=alpha, t_opt=t_genuine)
    caught_r, caught_terms = _ratio_terms(amt[pos], d_pos)
    false_r, false_terms = _ratio_terms(amt[neg], d_neg)
    return MatchedQuality(
        n=int(evaluable.sum()),
        n_frauds=n_pos,
        candidate_point=cand_pt,
        incumbent_point=inc_pt,
        ap=ap,
        capture_candidate=float(f_c[pos].mean()),
        capture_incumbent=float(f_i[pos].mean()),
        capture=capture,
        fpr_candidate=float(f_c[neg].mean()),
        fpr_incumbent=float(f_i[neg].mean()),
        fpr=fpr,
        money_fraud_total=float(amt[pos].sum()),
        money_genuine_total=float(amt[neg].sum()),
        money_caught_candidate=float((amt * f_c)[pos].sum()),
        money_caught_incumbent=float((amt * f_i)[pos].sum()),
        money_caught=sequential_mean(caught_terms, alpha=alpha, t_opt=t_fraud, estimate=caught_r),
        false_decline_money_candidate=float((amt * f_c)[neg].sum()),
        false_decline_money_incumbent=float((amt * f_i)[neg].sum()),
        false_decline_money=sequential_mean(false_terms, alpha=alpha, t_opt=t_genuine, estimate=false_r),
    )
