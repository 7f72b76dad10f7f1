"""Operating points: compare models at the same alert budget, never at their own raw thresholds.

A fraud team runs a model at an alert budget (declines or reviews it can afford per day), not at a
score. Two models with different calibrations, or thresholds picked on different validation sets,
flag different shares of traffic; comparing their capture rates at their own thresholds compares
two operating points and can call the better ranker worse (round 1's demo rejected a challenger
with ΔAP +0.15 because its threshold flagged 0.11 % of events against the champion's 0.92 %).

So each model's threshold is *matched* to the policy's budget on the same events: the budget is
either an alert rate (share of all scored events flagged) or a false-positive rate (share of
matured genuine events flagged). Events scored above the threshold are flagged; events scored
exactly *at* it (a block of tied scores: tree models give whole clusters of near-identical events
one score) are flagged by a deterministic per-event draw with probability :attr:`OperatingPoint.
tie_share`, chosen so that exactly the budget is flagged. Without the draw a tie block straddling
the budget makes it unattainable (flag 1 % or 3.6 % of events, nothing in between), and the
comparison falls back to two different operating points; the 2026-12-07 CI run rejected a drift
retrain that had learned the attack for that reason alone. The scoring service draws the same way
(:func:`fraudops.serving.rows.decide`: a hash of the transaction id, so a retried request gets the
same answer); the gate uses the draw's expectation (a tied event counts ``tie_share`` of a flag),
which is what the service flags on average. A monotone transform of a model's scores gets the
transformed threshold and flags exactly the same events.
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
    #: Share flagged at ``threshold`` on the events it was matched on (the budget, when any event
    #: was scored: tied events count ``tie_share`` of a flag each).
    achieved: float
    #: Events the threshold was matched on.
    n: int
    #: Probability that an event scored exactly ``threshold`` is flagged (1.0: all of them).
    tie_share: float = 1.0
    #: Share flagged on score alone (strictly above the threshold, or at it when ``tie_share`` is
    #: 1): the rest of ``achieved`` is drawn among the tied events.
    ranked: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        if not math.isfinite(self.threshold):
            doc["threshold"] = None
        return doc

    @property
    def drawn(self) -> float:
        """Share of this point's flags drawn by lot among tied events (0: all ranked)."""
        return 0.0 if self.achieved <= 0 else max(0.0, 1.0 - self.ranked / self.achieved)

    def flags(self, scores: np.ndarray) -> np.ndarray:
        """Each event's flag as a float: 1 above the threshold, ``tie_share`` at it (the expected
        flag of the draw), 0 below."""
        import numpy as np

        s = np.asarray(scores, dtype=np.float64)
        out: np.ndarray = (s > self.threshold) + self.tie_share * (s == self.threshold)
        return out


def match_threshold(scores: np.ndarray, budget: float, *, kind: BudgetKind = "alert_rate") -> OperatingPoint:
    """The operating point flagging exactly ``budget`` of ``scores``: the highest score level
    whose events, with all those above it, reach the budget, and the share of its tied events
    drawn to make up the rest (``tie_share``; 1.0 when the levels above and at it attain the budget
    exactly).

    ``scores`` are the events the budget is measured on: all scored events for an alert-rate
    budget, matured genuine events for an FPR budget. With no finite score the threshold is +inf
    (nothing flagged).
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
    at_or_above = np.cumsum(counts[::-1])[::-1]  # events with score >= level
    # the first level (from the top) whose events with those above reach the budget
    j = int(np.flatnonzero(at_or_above >= budget * n - 1e-9)[-1])
    above, tied = int(at_or_above[j] - counts[j]), int(counts[j])
    share = min(1.0, max(0.0, (budget * n - above) / tied))
    if share >= 1.0 - 1e-12:  # the levels down to this one attain the budget exactly
        return OperatingPoint(kind, budget, float(levels[j]), (above + tied) / n, n, 1.0, (above + tied) / n)
    return OperatingPoint(kind, budget, float(levels[j]), (above + share * tied) / n, n, share, above / n)
