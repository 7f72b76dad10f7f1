"""Shared semantics of the feature store: time and money representation, and scalar derivations.

Time
    Internally every timestamp is an **integer number of microseconds since the Unix epoch (UTC)**.
    Integers make window boundaries exact and identical in numpy and in plain Python (float
    seconds would round differently depending on how they were computed). The online store
    accepts ``event_time`` as an aware ``datetime`` (naive means UTC), a pandas ``Timestamp``
    (nanoseconds truncated), an ISO-8601 string, or epoch seconds (int/float, rounded to the
    nearest microsecond).

Total order of events
    Events are ordered by the key ``(event_time_us, transaction_id)`` (Python string order).
    The features of event *e* use only events **strictly before e** in that order — so of two
    events with the same timestamp, the one with the smaller transaction_id is visible to the
    other, never the reverse, and an event never sees itself. Online, an event additionally sees
    only events that **arrived** before it (an event that arrives late is inserted at its sorted
    position, so it sees every earlier-keyed event already present, but events scored before it
    arrived could not see it). ``build_offline(..., arrival_order=...)`` reproduces exactly that;
    without ``arrival_order`` the offline build assumes events arrived in key order.

Windows
    A window ``w`` ending at event *e* holds the earlier events *j* with
    ``t_e - w < t_j`` (half-open ``(t_e - w, t_e]`` plus the key rule above).

Labels (label delay)
    A fraud label is visible to a feature computed at time ``t`` iff ``label_time < t``
    (**strictly before**: a label written in the same microsecond as a request could not have
    been read by it). A label whose label_time precedes its event_time is treated as known at
    event_time. Only ``is_fraud = true`` labels count; several fraud labels for one transaction
    count once, from the earliest label_time. A labelled transaction counts in a window by its
    *event_time*. Online, ``add_label`` must be called before events later than its label_time are
    scored (labels are facts known at label_time; that is what the offline build assumes).

Delayed risk windows (issue #23)
    A delayed family ``<entity>_lag<d>`` counts the entity's events *j* with
    ``t_e - d - w < t_j <= t_e - d`` (plain time: a window ending a day or more before the event
    holds only events far earlier than it, so the key rule and arrival order, bounded by the
    one-day lateness allowance, cannot change it), the fraud labels among them known before
    ``t_e`` (the rule above), and the smoothed rate ``(frauds + PRIOR_WEIGHT * PRIOR_RATE) /
    (count + PRIOR_WEIGHT)``.

Money
    Amounts are aggregated as integer minor units (cents): ``round(amount * 100)`` with
    half-to-even rounding in both paths. Sums and sums of squares are then exact, so derived
    statistics (mean, z-score) come out bit-identical offline and online.

Horizon
    No feature looks back more than 30 days (``HORIZON_US``): a warehouse build with 30 days of
    history is exact, and online state older than the horizon (plus a lateness allowance) is
    dropped.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from fraudops.exceptions import DataValidationError
from fraudops.features.definitions import DAY_US, HORIZON_US, PRIOR_RATE, PRIOR_WEIGHT

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)

#: Online state is kept this long past the horizon so events arriving up to a day late still see
#: their complete history.
LATENESS_ALLOWANCE_US = DAY_US
HORIZON_S = HORIZON_US / 1e6
#: A card whose 30-day std is below half a cent has no meaningful z-score (0 is returned).
MIN_VAR_CENTS2 = 0.25


def to_us(value: Any) -> int:
    """Epoch microseconds (int) from a datetime, pandas Timestamp, ISO string or epoch seconds."""
    if isinstance(value, dt.datetime):
        if type(value).__name__ == "Timestamp":  # pandas: integer nanoseconds, truncate to µs
            return int(value.value) // 1000  # type: ignore[attr-defined]  # naive counts as UTC
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int((value - EPOCH) // _US)
    if isinstance(value, bool):
        raise DataValidationError(f"event_time must be a timestamp, got {value!r}")
    if isinstance(value, int | float):
        return round(value * 1e6)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as err:
            raise DataValidationError(f"event_time {value!r} is not ISO-8601") from err
        return to_us(parsed)
    raise DataValidationError(f"event_time must be datetime, ISO string or epoch seconds, got {value!r}")


def card_values(
    cents: int,
    counts: list[int],
    sums: list[int],
    sumsq30: int,
    since_last_us: int | None,
    new_device: int,
    new_terminal: int,
    new_region: int,
) -> list[float]:
    """The card family in FAMILY_FEATURES order (counts/sums for 1h, 1d, 7d, 30d)."""
    n = counts[3]
    if n > 0:
        mean_c = float(sums[3]) / float(n)
        mean = mean_c / 100.0
        ratio = float(cents) / mean_c if mean_c > 0 else 1.0
    else:
        mean_c = mean = 0.0
        ratio = 1.0
    z = 0.0
    if n >= 2:
        var = float(sumsq30) / float(n) - mean_c * mean_c
        if var > MIN_VAR_CENTS2:
            z = (float(cents) - mean_c) / math.sqrt(var)
    if since_last_us is not None and since_last_us < HORIZON_US:
        since = float(since_last_us) / 1e6
    else:
        since = HORIZON_S
    return [
        float(counts[0]),
        float(counts[1]),
        float(counts[2]),
        float(counts[3]),
        float(sums[0]) / 100.0,
        float(sums[1]) / 100.0,
        float(sums[2]) / 100.0,
        float(sums[3]) / 100.0,
        mean,
        z,
        ratio,
        since,
        float(new_device),
        float(new_terminal),
        float(new_region),
    ]


def risk_values(c1d: int, c7d: int, c30d: int, f7d: int, f30d: int) -> list[float]:
    """Terminal/merchant family: tx_count_1d, tx_count_7d, fraud_count_7d/30d, fraud_rate_7d/30d."""
    r7 = float(f7d) / float(c7d) if c7d > 0 else 0.0
    r30 = float(f30d) / float(c30d) if c30d > 0 else 0.0
    return [float(c1d), float(c7d), float(f7d), float(f30d), r7, r30]


def lag_values(n1: int, n7: int, n30: int, f1: int, f7: int, f30: int) -> list[float]:
    """A delayed family: tx_count, fraud_count and smoothed fraud_rate over 1 d, 7 d, 30 d."""
    prior = PRIOR_WEIGHT * PRIOR_RATE
    return [
        float(n1),
        float(n7),
        float(n30),
        float(f1),
        float(f7),
        float(f30),
        (float(f1) + prior) / (float(n1) + PRIOR_WEIGHT),
        (float(f7) + prior) / (float(n7) + PRIOR_WEIGHT),
        (float(f30) + prior) / (float(n30) + PRIOR_WEIGHT),
    ]


def region_values(c1h: int, c1d: int) -> list[float]:
    ratio = float(c1h) * 24.0 / float(c1d) if c1d > 0 else 0.0
    return [float(c1h), float(c1d), ratio]


def tx_values(amount: float, t_us: int) -> list[float]:
    return [float(amount), float((t_us // 3_600_000_000) % 24)]
