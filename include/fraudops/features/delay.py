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

The curve says which delays leave enough labels in the window; it does not say which one a model
learns most from (a fresher window with a fifth of its labels can beat a complete but staler one:
``make bench``'s bench_models rows). So with a curve reading, the retrain lets forward-chaining
folds choose among no delayed features and the delays whose windows hold at least
``MIN_WINDOW_COVERAGE`` of their labels (``training.selection.compare_feature_sets``), the curve's
choice winning ties.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from fraudops.features.definitions import DAY_US, DELAYS_US, RISK_DELAYS

#: The longest registered delay: labels later than this are beyond every delayed window.
MAX_DELAY_US = max(DELAYS_US.values())
#: A delay whose window would hold less than this share of its fraud labels is not a candidate.
MIN_WINDOW_COVERAGE = 0.1


@dataclass(frozen=True)
class RiskDelay:
    """The delay a run's delayed risk features use, and the evidence for it."""

    #: One of ``RISK_DELAYS``; None when the run trains without delayed risk features (the
    #: forward folds preferred none).
    delay: str | None
    #: Days after which ``coverage`` of the fraud labels had arrived (or the fallback's days).
    days_needed: float
    coverage: float
    source: Literal["curve", "fallback", "param", "folds"]
    #: Fully observed fraud labels the curve was read from.
    n_frauds: int
    #: Share of those labels known ``d`` after their event, for each registered delay ``d``.
    coverage_by_delay: dict[str, float]
    #: Fraud labels known at as_of / transactions, over the extract (next to the features' prior).
    global_fraud_rate: float | None
    note: str
    #: The curve's (or the parameter's) delay, before the forward folds had their say.
    curve_delay: str | None = None
    #: Mean forward-fold average precision per candidate ("none" and delays), when the folds chose.
    fold_ap: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def candidates(self, min_coverage: float = MIN_WINDOW_COVERAGE) -> list[str]:
        """What the forward folds choose among: no delayed features, and each registered delay whose
        window holds at least ``min_coverage`` of its labels (an emptier window is nearly all
        zeros), the curve's delay always included. Only for a curve reading (``source="curve"``)."""
        keep = [
            d for d in RISK_DELAYS if d == self.delay or self.coverage_by_delay.get(d, 0.0) >= min_coverage
        ]
        return ["none", *keep]


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
            curve_delay=delay,
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
        curve_delay=delay,
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
        curve_delay=delay,
        days_needed=DELAYS_US[delay] / DAY_US,
        coverage=coverage,
        source="param",
        n_frauds=0,
        coverage_by_delay={},
        global_fraud_rate=global_fraud_rate,
        note=f"delay {delay} set by the run's parameters",
    )
