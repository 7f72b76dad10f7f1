"""When are fraud labels mature? The label-delay curve, estimated from the warehouse.

Chargebacks arrive days or weeks after the transaction. A quality comparison on events whose frauds
are not labeled yet counts those frauds as genuine, and it is not a neutral error: a model that
catches a fresh attack early is punished while the attack's chargebacks are still in the post (the
round-1 demo promoted a model on ΔAP +0.16 in shadow and rolled it back on ΔAP −0.14 in probation,
the pattern immature labels produce). So the gates judge quality only on *matured* events: events
old enough that, by the delay curve, at least ``policy.label_coverage`` of their eventual fraud
labels have arrived.

The curve is the empirical distribution of ``label_time − event_time`` over fraud labels, taken
from events old enough to be fully observed: events in ``[as_of − horizon − lookback, as_of −
horizon]``, where ``horizon`` (``policy.label_delay_horizon_hours``) is the longest delay the
platform waits for. For those events every label that arrives within the horizon is already in the
warehouse, so the curve is not biased towards short delays by right-censoring (recent events have
only their fast labels so far). A label later than the horizon counts as never arriving.

With too few fully observed frauds (a new deployment, an imported history without labels) the
estimate falls back to ``policy.label_maturity_hours`` and says so (``source = "policy"``).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np

    from fraudops.release.policy import GatePolicy
    from fraudops.warehouse import Warehouse

#: Coverages reported with every curve (share of eventual fraud labels known after the delay).
REPORTED_COVERAGES: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95, 0.99)


@dataclass(frozen=True)
class LabelDelayCurve:
    """Empirical label delays (hours) of fully observed frauds."""

    #: Fraud labels the curve is built on.
    n_frauds: int
    #: The longest delay waited for; labels later than this count as never arriving.
    horizon_hours: float
    #: Sorted delays in hours (kept for :meth:`hours_for` and :meth:`coverage_at`; not serialised).
    delays_hours: tuple[float, ...] = field(repr=False, default=())

    def hours_for(self, coverage: float) -> float:
        """Smallest delay by which at least ``coverage`` of the labels had arrived."""
        if not self.delays_hours:
            return math.nan
        if not 0.0 < coverage <= 1.0:
            raise ValueError(f"coverage must be in (0, 1], got {coverage}")
        k = max(1, math.ceil(coverage * len(self.delays_hours)))
        return float(self.delays_hours[k - 1])

    def coverage_at(self, hours: float) -> float:
        """Share of labels that had arrived ``hours`` after their event."""
        import bisect

        if not self.delays_hours:
            return math.nan
        return bisect.bisect_right(self.delays_hours, hours) / len(self.delays_hours)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_frauds": self.n_frauds,
            "horizon_hours": self.horizon_hours,
            "quantiles_hours": (
                {f"{q:g}": round(self.hours_for(q), 3) for q in REPORTED_COVERAGES} if self.n_frauds else {}
            ),
        }


def curve_from_delays(delays_hours: np.ndarray | list[float], *, horizon_hours: float) -> LabelDelayCurve:
    """Pure: the curve of the given delays; negative delays (clock skew) count as 0, later than the
    horizon are left out (never arriving, from the platform's point of view)."""
    import numpy as np

    d = np.asarray(delays_hours, dtype=np.float64)
    d = d[np.isfinite(d)]
    d = np.clip(d, 0.0, None)
    d = np.sort(d[d <= horizon_hours])
    return LabelDelayCurve(
        n_frauds=len(d), horizon_hours=float(horizon_hours), delays_hours=tuple(d.tolist())
    )


@dataclass(frozen=True)
class MaturityEstimate:
    """How old an event must be before its fraud label is trusted, and where the number comes from."""

    hours: float
    #: Share of eventual fraud labels known at ``hours`` (the policy's target when from the curve).
    coverage: float | None
    source: Literal["curve", "policy"]
    note: str
    curve: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> MaturityEstimate:
        return cls(**doc)


def maturity_from_curve(curve: LabelDelayCurve | None, policy: GatePolicy) -> MaturityEstimate:
    """Pure: the policy's coverage read off the curve, or the policy's fixed maturity as fallback."""
    if curve is None or curve.n_frauds < policy.min_label_curve_frauds:
        have = 0 if curve is None else curve.n_frauds
        return MaturityEstimate(
            hours=float(policy.label_maturity_hours),
            coverage=None,
            source="policy",
            note=(
                f"{have} fully observed fraud labels < {policy.min_label_curve_frauds} needed for a "
                f"delay curve: policy maturity {policy.label_maturity_hours:g} h"
            ),
            curve=None if curve is None else curve.to_dict(),
        )
    hours = curve.hours_for(policy.label_coverage)
    return MaturityEstimate(
        hours=float(hours),
        coverage=float(policy.label_coverage),
        source="curve",
        note=(
            f"{policy.label_coverage:.0%} of fraud labels arrive within {hours:.1f} h "
            f"({curve.n_frauds} fully observed frauds, horizon {curve.horizon_hours:g} h)"
        ),
        curve=curve.to_dict(),
    )


_DELAY_SQL = """
WITH lab AS (
  SELECT transaction_id, MIN(label_time) AS label_time
  FROM `{labels}`
  WHERE is_fraud AND label_time <= @as_of
  GROUP BY transaction_id
)
SELECT TIMESTAMP_DIFF(l.label_time, t.event_time, SECOND) / 3600.0 AS delay_hours
FROM lab l
JOIN `{transactions}` t ON t.transaction_id = l.transaction_id
WHERE t.event_time >= @start AND t.event_time < @end
"""


def label_delay_curve(
    warehouse: Warehouse, *, as_of: dt.datetime, horizon_hours: float, lookback_hours: float
) -> LabelDelayCurve:
    """The curve from the warehouse: fraud labels of events in ``[as_of − horizon − lookback,
    as_of − horizon)`` known at ``as_of``."""
    from fraudops.release.progress import as_utc

    end = as_utc(as_of) - dt.timedelta(hours=horizon_hours)
    start = end - dt.timedelta(hours=lookback_hours)
    sql = _DELAY_SQL.format(
        labels=warehouse.table_id("labels"), transactions=warehouse.table_id("transactions")
    )
    rows = warehouse.query(sql, {"as_of": as_utc(as_of), "start": start, "end": end})
    delays = [float(r["delay_hours"]) for r in rows if r.get("delay_hours") is not None]
    return curve_from_delays(delays, horizon_hours=horizon_hours)


def effective_maturity(warehouse: Warehouse, policy: GatePolicy, *, as_of: dt.datetime) -> MaturityEstimate:
    """The maturity the gates use now: from the warehouse's delay curve, else the policy's value."""
    curve = label_delay_curve(
        warehouse,
        as_of=as_of,
        horizon_hours=policy.label_delay_horizon_hours,
        lookback_hours=policy.label_curve_lookback_hours,
    )
    return maturity_from_curve(curve, policy)
