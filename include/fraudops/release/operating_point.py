"""Operating points: compare models at the same alert budget, never at their own raw thresholds.

A fraud team runs a model at an alert budget (declines or reviews it can afford per day), not at a
score. Two models with different calibrations, or thresholds picked on different validation sets,
flag different shares of traffic; comparing their capture rates at their own thresholds compares
two operating points and can call the better ranker worse (round 1's demo rejected a challenger
with ΔAP +0.15 because its threshold flagged 0.11 % of events against the champion's 0.92 %).

So each model's threshold is *matched* to the policy's budget on the same events: the budget is
either an alert rate (share of all scored events flagged) or a false-positive rate (share of
matured genuine events flagged). Flagging is ``score >= threshold``; the matched threshold is the
lowest score level whose flagged share does not exceed the budget (ties can make the budget
unattainable: that is reported, see :attr:`OperatingPoint.achieved`). A monotone transform of a
model's scores gets the transformed threshold and flags exactly the same events.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np

BudgetKind = Literal["alert_rate", "fpr"]


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold matched to a budget on a set of events, and what it achieved there."""

    kind: BudgetKind
    budget: float
    threshold: float
    #: Share flagged at ``threshold`` on the events it was matched on (≤ budget).
    achieved: float
    #: Events the threshold was matched on.
    n: int

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        if not math.isfinite(self.threshold):
            doc["threshold"] = None
        return doc

    def flags(self, scores: np.ndarray) -> np.ndarray:
        import numpy as np

        return np.asarray(scores, dtype=np.float64) >= self.threshold


def match_threshold(scores: np.ndarray, budget: float, *, kind: BudgetKind = "alert_rate") -> OperatingPoint:
    """The lowest threshold flagging at most ``budget`` of ``scores`` (``score >= threshold``).

    ``scores`` are the events the budget is measured on: all scored events for an alert-rate
    budget, matured genuine events for an FPR budget. With no scores, or when even the top score
    level alone exceeds the budget, the threshold is +inf (nothing flagged).
    """
    import numpy as np

    if not 0.0 < budget < 1.0:
        raise ValueError(f"budget must be in (0, 1), got {budget}")
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    n = len(s)
    if n == 0:
        return OperatingPoint(kind, budget, math.inf, 0.0, 0)
    levels, counts = np.unique(s, return_counts=True)  # ascending
    flagged_at = np.cumsum(counts[::-1])[::-1] / n  # share with score >= level
    ok = np.flatnonzero(flagged_at <= budget + 1e-12)
    if len(ok) == 0:
        return OperatingPoint(kind, budget, math.inf, 0.0, n)
    i = int(ok[0])
    return OperatingPoint(kind, budget, float(levels[i]), float(flagged_at[i]), n)
