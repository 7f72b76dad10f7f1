"""Which label delay the delayed risk features of a retrain use, read off the training data itself.

A delayed window ``(t - d - w, t - d]`` helps only if, ``d`` after an event, most of its fraud labels
are known: shorter and the window is as empty of labels as the unshifted one, longer and the window
is staler than it need be. ``choose_risk_delay`` reads the label-delay curve of the extract (the
warehouse's transactions and the labels known at ``as_of``; for a user's file, its own label times)
and takes the smallest registered delay (``RISK_DELAYS``) by which ``coverage`` of the fraud labels
had arrived. Only events at least the longest registered delay old are used, so every label that
could matter for the choice had time to arrive (a label later than that counts as never arriving:
no registered delay would wait for it). With fewer than ``min_frauds`` such labels (a new
deployment, a short history) the choice falls back to the run's label-maturity setting.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from fraudops.features.definitions import DAY_US, DELAYS_US, RISK_DELAYS

#: The longest registered delay: labels later than this are beyond every delayed window.
MAX_DELAY_US = max(DELAYS_US.values())


@dataclass(frozen=True)
class RiskDelay:
    """The delay a run's delayed risk features use, and the evidence for it."""

    #: One of ``RISK_DELAYS``.
    delay: str
    #: Days after which ``coverage`` of the fraud labels had arrived (or the fallback's days).
    days_needed: float
    coverage: float
    source: Literal["curve", "fallback", "param"]
    #: Fully observed fraud labels the curve was read from.
    n_frauds: int
    #: Share of those labels known ``d`` after their event, for each registered delay ``d``.
    coverage_by_delay: dict[str, float]
    #: Fraud labels known at as_of / transactions, over the extract (next to the features' prior).
    global_fraud_rate: float | None
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def grid_delay(days: float) -> str:
    """The smallest registered delay of at least ``days`` (the longest one beyond the grid)."""
    for d in RISK_DELAYS:
        if DELAYS_US[d] >= days * DAY_US - 1e-6:
            return d
    return RISK_DELAYS[-1]


def choose_risk_delay(
    event_us: Any,
    label_event_us: Any,
    label_us: Any,
    *,
    as_of_us: int,
    coverage: float,
    fallback_days: float,
    n_transactions: int | None = None,
    min_frauds: int = 50,
) -> RiskDelay:
    """The delay for fraud labels with event times ``label_event_us`` and label times ``label_us``.

    ``event_us`` (all transactions' times) only sizes the global fraud rate reported beside it.
    """
    import numpy as np

    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    e = np.asarray(label_event_us, dtype=np.int64)
    lt = np.maximum(np.asarray(label_us, dtype=np.int64), e)
    n_tx = len(np.asarray(event_us)) if n_transactions is None else n_transactions
    rate = float(len(e)) / n_tx if n_tx else None
    observed = e < as_of_us - MAX_DELAY_US
    delays = np.sort(lt[observed] - e[observed])
    delays = delays[delays <= MAX_DELAY_US]
    n = len(delays)
    by_delay = {
        d: (float(np.searchsorted(delays, DELAYS_US[d], "right")) / n if n else math.nan) for d in RISK_DELAYS
    }
    if n < min_frauds:
        delay = grid_delay(fallback_days)
        return RiskDelay(
            delay=delay,
            days_needed=float(fallback_days),
            coverage=coverage,
            source="fallback",
            n_frauds=n,
            coverage_by_delay=by_delay,
            global_fraud_rate=rate,
            note=(
                f"{n} fully observed fraud labels < {min_frauds} needed for a delay curve: "
                f"label maturity {fallback_days:g} d -> delay {delay}"
            ),
        )
    k = max(1, math.ceil(coverage * n))
    days = float(delays[k - 1]) / DAY_US
    delay = grid_delay(days)
    return RiskDelay(
        delay=delay,
        days_needed=round(days, 3),
        coverage=coverage,
        source="curve",
        n_frauds=n,
        coverage_by_delay=by_delay,
        global_fraud_rate=rate,
        note=(
            f"{coverage:.0%} of {n} fully observed fraud labels arrive within {days:.2f} d: "
            f"delayed risk windows shifted by {delay} (they then hold {by_delay[delay]:.0%} of their labels)"
        ),
    )


def fixed_risk_delay(delay: str, *, coverage: float, global_fraud_rate: float | None = None) -> RiskDelay:
    """A delay the run was told to use (``risk_delay`` parameter)."""
    if delay not in DELAYS_US:
        raise ValueError(f"unknown label delay {delay!r}; registered: {', '.join(RISK_DELAYS)}")
    return RiskDelay(
        delay=delay,
        days_needed=DELAYS_US[delay] / DAY_US,
        coverage=coverage,
        source="param",
        n_frauds=0,
        coverage_by_delay={},
        global_fraud_rate=global_fraud_rate,
        note=f"delay {delay} set by the run's parameters",
    )
