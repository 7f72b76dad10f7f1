"""How far a shadow (challenger) deployment has got: events scored, and how many have matured labels.

A challenger cannot be judged until it has scored enough live events *and* enough of those events
have labels (chargebacks arrive days later). The release DAG waits on this with a deferrable sensor;
the counting lives here, free of Airflow, so the CLI and tests use the same numbers.

Counting rules (one parameterised query, nothing pasted into SQL):

* Predictions are deduplicated explicitly by their key (transaction_id, model_version, mode) for
  the given model name: BigQuery's insertId dedup is best effort and the emulator has none, so a
  replayed micro-batch must not count twice.
* A key counts as *scored* when at least one of its rows has a score; otherwise it counts as an
  *error* (the challenger failed on that event). Only scored events count towards labels.
* A label counts only if it was known at ``label_as_of`` (``label_time <= label_as_of``): this
  makes the snapshot reproducible and keeps labels from the future out of a past evaluation.
  Predictions served after ``label_as_of`` are left out for the same reason.
* Labels are deduplicated by transaction_id as well; conflicting labels count as fraud.
* A *matured* event is older (in event time) than the label maturity: its label is as final as it
  gets, and an unlabeled one counts as genuine. *Matured labeled frauds* (matured events labelled
  fraud) are what the gate's quality checks stand on, so that is what a release waits for.

:func:`eta` estimates, from the accumulation rate seen so far, how many hours of event time are
left until a target is met (shown in the sensor's log line and result).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fraudops.warehouse import Warehouse

__all__ = [
    "ProgressTarget",
    "ShadowProgress",
    "as_utc",
    "eta",
    "is_satisfied",
    "shadow_progress",
    "status_line",
]


def as_utc(value: dt.datetime | str) -> dt.datetime:
    """A timezone-aware UTC datetime from a datetime or an ISO 8601 string (naive means UTC)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat()


@dataclass(frozen=True)
class ShadowProgress:
    """A snapshot of one model version's shadow traffic and its labels."""

    #: Distinct events the version scored successfully (deduplicated by prediction key).
    scored: int
    #: Scored events whose label was known at ``as_of``.
    scored_with_label: int
    #: Of those, events labelled fraud.
    labeled_frauds: int
    #: Distinct events where the version produced no score (error/timeout in the shadow pool).
    errors: int
    first_served_at: dt.datetime | None
    last_served_at: dt.datetime | None
    #: The moment the snapshot describes (labels known and predictions served by then).
    as_of: dt.datetime
    #: Scored events older (in event time) than the label maturity: their labels are final, an
    #: unlabeled one counts as genuine. 0 when no maturity was asked for.
    matured: int = 0
    #: Matured events labelled fraud (0 when no maturity was asked for).
    matured_frauds: int = 0
    #: Event times of the first and last scored events (event time, for :func:`eta`).
    first_event_time: dt.datetime | None = None
    last_event_time: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (ISO 8601 timestamps): small enough for XCom and trigger events."""
        out = asdict(self)
        for key in ("first_served_at", "last_served_at", "as_of", "first_event_time", "last_event_time"):
            out[key] = _iso(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShadowProgress:
        def ts(key: str) -> dt.datetime | None:
            raw = data.get(key)
            return None if raw is None else as_utc(raw)

        as_of = ts("as_of")
        if as_of is None:
            raise ValueError("ShadowProgress.from_dict: as_of is required")
        return cls(
            scored=int(data["scored"]),
            scored_with_label=int(data["scored_with_label"]),
            labeled_frauds=int(data["labeled_frauds"]),
            errors=int(data.get("errors", 0)),
            first_served_at=ts("first_served_at"),
            last_served_at=ts("last_served_at"),
            as_of=as_of,
            matured=int(data.get("matured", 0)),
            matured_frauds=int(data.get("matured_frauds", 0)),
            first_event_time=ts("first_event_time"),
            last_event_time=ts("last_event_time"),
        )


@dataclass(frozen=True)
class ProgressTarget:
    """How much evidence a challenger needs before it can be judged."""

    #: Minimum distinct events the challenger scored.
    min_scored: int = 0
    #: Minimum scored events with a matured label.
    min_labeled: int = 0
    #: Minimum labelled frauds among them (quality metrics on a handful of frauds are noise).
    min_labeled_frauds: int = 0
    #: Minimum scored events past the label maturity (genuine rows for FPR and AP need these).
    min_matured: int = 0
    #: Minimum matured labeled frauds (scored events past the maturity, labelled fraud): what the
    #: gate's quality checks need.
    min_matured_frauds: int = 0
    #: Minimum distinct events the challenger was sent, scored or failed on (the gate's volume:
    #: what the early look of a release waits for, so a challenger failing on most events is
    #: looked at as soon as one scoring them all).
    min_seen: int = 0

    def __post_init__(self) -> None:
        names = (
            "min_scored",
            "min_labeled",
            "min_labeled_frauds",
            "min_matured",
            "min_matured_frauds",
            "min_seen",
        )
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"ProgressTarget.{name} must be a non-negative integer, got {value!r}")
        if self.min_labeled_frauds > self.min_labeled > 0:
            raise ValueError("ProgressTarget.min_labeled_frauds cannot exceed min_labeled")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ProgressTarget:
        return cls(**doc)


@dataclass(frozen=True)
class ShadowQuery:
    """Which prediction rows a wait counts: one model version's rows in one mode since an instant.

    The one typed object the sensor builds and the trigger carries (as ``to_dict()``, primitives
    only, stored in the metadata DB), instead of the same keyword arguments written out in four
    places.
    """

    model_name: str
    version: str
    #: ISO 8601 instant (UTC); predictions served from then on count.
    since: str
    #: ``shadow`` (a challenger) or ``production`` rows.
    mode: str = "shadow"
    #: Label maturity in event-time hours; needed for the matured counts.
    maturity_hours: float | None = None
    #: Leave out predictions served in the last seconds (their counterpart rows may still be on
    #: their way).
    settle_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.model_name or not str(self.version):
            raise ValueError("ShadowQuery needs a model name and a version")
        object.__setattr__(self, "version", str(self.version))
        object.__setattr__(self, "since", as_utc(self.since).isoformat())
        if self.mode not in ("shadow", "production"):
            raise ValueError(f"ShadowQuery.mode must be 'shadow' or 'production', got {self.mode!r}")
        if self.maturity_hours is not None and self.maturity_hours < 0:
            raise ValueError(f"ShadowQuery.maturity_hours must be >= 0, got {self.maturity_hours}")
        if self.settle_s < 0:
            raise ValueError(f"ShadowQuery.settle_s must be >= 0, got {self.settle_s}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ShadowQuery:
        return cls(**doc)

    def check(self, target: ProgressTarget) -> None:
        """Raise ``ValueError`` when ``target`` asks for what this query cannot count."""
        if (target.min_matured or target.min_matured_frauds) and self.maturity_hours is None:
            raise ValueError("matured counts (min_matured, min_matured_frauds) need maturity_hours")

    def progress(self, warehouse: Warehouse) -> ShadowProgress:
        return shadow_progress(
            warehouse,
            model_name=self.model_name,
            version=self.version,
            since=self.since,
            mode=self.mode,
            maturity_hours=self.maturity_hours,
            settle_s=self.settle_s,
        )


def _checks(progress: ShadowProgress, target: ProgressTarget) -> list[tuple[str, int, int]]:
    """(what, have, need) of every non-zero requirement, the gate's binding one first."""
    checks = (
        ("matured labeled frauds", progress.matured_frauds, target.min_matured_frauds),
        ("scored", progress.scored, target.min_scored),
        ("labeled", progress.scored_with_label, target.min_labeled),
        ("labeled frauds", progress.labeled_frauds, target.min_labeled_frauds),
        ("matured", progress.matured, target.min_matured),
        ("sent", progress.scored + progress.errors, target.min_seen),
    )
    return [c for c in checks if c[2] > 0]


def is_satisfied(progress: ShadowProgress, target: ProgressTarget) -> tuple[bool, str]:
    """Whether ``progress`` meets ``target``; the reason names every shortfall, e.g.
    ``matured labeled frauds 41 of 120 needed; scored 3,100 of 5,000`` (or the counts when met)."""
    checks = _checks(progress, target)
    short = [f"{what} {have:,} of {need:,}" for what, have, need in checks if have < need]
    if short:
        short[0] += " needed"
        return False, "; ".join(short)
    if not checks:
        return True, f"scored {progress.scored:,} (no minimum)"
    return True, "; ".join(f"{what} {have:,} (>= {need:,})" for what, have, need in checks)


def eta(
    progress: ShadowProgress,
    target: ProgressTarget,
    *,
    first_event_time: dt.datetime | None,
    now_event_time: dt.datetime | None,
    maturity_hours: float | None,
) -> float | None:
    """Hours of event time until ``target`` is expected to be met, from the rate seen so far.

    Assumes traffic keeps its observed rate (scored events per hour of event time between
    ``first_event_time`` and ``now_event_time``) and fraud share. An event counts as matured
    ``maturity_hours`` after it happened, so matured counts at ``now + t`` are the events up to
    ``now + t - maturity``. Labeled (not necessarily matured) frauds are estimated without the delay
    (a lower bound). 0.0 when the target is met; None when it cannot be estimated (no span of
    event time yet, nothing scored, or frauds needed and none seen).
    """
    if is_satisfied(progress, target)[0]:
        return 0.0
    if first_event_time is None or now_event_time is None or progress.scored <= 0:
        return None
    span = (as_utc(now_event_time) - as_utc(first_event_time)).total_seconds() / 3600.0
    if span <= 0:
        return None
    rate = progress.scored / span  # scored events per hour of event time
    maturity = max(0.0, float(maturity_hours or 0.0))
    if progress.matured > 0 and progress.matured_frauds > 0:
        fraud_share: float | None = progress.matured_frauds / progress.matured
    elif progress.labeled_frauds > 0:
        fraud_share = progress.labeled_frauds / progress.scored
    else:
        fraud_share = None

    def until(events_needed: float, delay: float) -> float:
        # Events with event_time <= now + t - delay reach `events_needed` at this t.
        return max(0.0, events_needed / rate - span + delay)

    hours = 0.0
    for what, have, need in _checks(progress, target):
        if have >= need:
            continue
        if what == "scored":
            t = until(need, 0.0)
        elif what == "sent":
            t = max(0.0, need * span / have - span)
        elif what == "matured":
            t = until(need, maturity)
        elif what == "labeled":
            share = progress.scored_with_label / progress.scored
            if share <= 0:
                return None
            t = until(need / share, 0.0)
        else:  # frauds: matured or just labeled
            if fraud_share is None or fraud_share <= 0:
                return None
            t = until(need / fraud_share, maturity if what == "matured labeled frauds" else 0.0)
        hours = max(hours, t)
    return hours


def eta_of(progress: ShadowProgress, target: ProgressTarget, maturity_hours: float | None) -> float | None:
    """:func:`eta` from the progress's own event times (what every wait and the console show)."""
    return eta(
        progress,
        target,
        first_event_time=progress.first_event_time,
        now_event_time=progress.last_event_time,
        maturity_hours=maturity_hours,
    )


def status_line(progress: ShadowProgress, target: ProgressTarget, eta_hours: float | None) -> str:
    """The sensor's line: shortfalls (or counts) and the ETA, e.g. ``matured labeled frauds 41 of
    120 needed; scored 3,100 of 5,000; ETA ~2.3 h event time``."""
    ready, reason = is_satisfied(progress, target)
    if ready:
        return reason
    if eta_hours is None:
        return f"{reason}; ETA unknown"
    return f"{reason}; ETA ~{eta_hours:.1f} h event time"


_ROWS = """
WITH p AS (
  SELECT
    transaction_id,
    LOGICAL_OR(score IS NOT NULL) AS ok,
    MIN(served_at) AS served_at,
    MIN(event_time) AS event_time
  FROM `{predictions}`
  WHERE model_name = @model_name
    AND model_version = @version
    AND mode = @mode
    AND served_at >= @since
    AND served_at <= @as_of
    AND COALESCE(error, '') NOT IN ({capacity_shed})
  GROUP BY transaction_id, model_version, mode
),
l AS (
  SELECT transaction_id, LOGICAL_OR(is_fraud) AS is_fraud
  FROM `{labels}`
  WHERE label_time <= @label_as_of
  GROUP BY transaction_id
)
"""

_QUERY = (
    _ROWS
    + """
SELECT
  COUNTIF(p.ok) AS scored,
  COUNTIF(p.ok AND l.transaction_id IS NOT NULL) AS scored_with_label,
  COUNTIF(p.ok AND l.is_fraud) AS labeled_frauds,
  COUNTIF(NOT p.ok) AS errors,
  COUNTIF(p.ok AND p.event_time <= @matured_before) AS matured,
  COUNTIF(p.ok AND l.is_fraud AND p.event_time <= @matured_before) AS matured_frauds,
  MIN(p.served_at) AS first_served_at,
  MAX(p.served_at) AS last_served_at,
  MIN(IF(p.ok, p.event_time, NULL)) AS first_event_time,
  MAX(IF(p.ok, p.event_time, NULL)) AS last_event_time
FROM p
LEFT JOIN l ON l.transaction_id = p.transaction_id
"""
)

_SERIES = (
    _ROWS
    + """
SELECT
  TIMESTAMP_TRUNC(p.event_time, HOUR) AS hour,
  COUNTIF(p.ok) AS scored,
  COUNTIF(NOT p.ok) AS errors,
  COUNTIF(p.ok AND l.is_fraud) AS frauds
FROM p
LEFT JOIN l ON l.transaction_id = p.transaction_id
GROUP BY hour
ORDER BY hour
"""
)


def _sql(template: str, warehouse: Warehouse) -> str:
    """``template`` (one of the queries above) on ``warehouse``'s tables."""
    from fraudops.release.evidence import CAPACITY_SHED

    return template.format(
        predictions=warehouse.table_id("predictions"),
        labels=warehouse.table_id("labels"),
        capacity_shed=", ".join(f"'{reason}'" for reason in CAPACITY_SHED),
    )


def progress_series(
    warehouse: Warehouse,
    *,
    model_name: str,
    version: str,
    since: dt.datetime | str,
    mode: str = "shadow",
    settle_s: float = 0.0,
) -> list[dict[str, Any]]:
    """Per hour of event time, what ``version`` scored in ``mode`` since ``since`` (served, up to
    ``settle_s`` ago): events scored, failed, and labelled fraud as of now; the same rows
    :func:`shadow_progress` counts with the same ``settle_s`` (for the console's progress plot)."""
    rows = warehouse.query(
        _sql(_SERIES, warehouse),
        {
            "model_name": model_name,
            "version": str(version),
            "mode": mode,
            "since": as_utc(since),
            "as_of": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=settle_s),
            "label_as_of": dt.datetime(9999, 12, 31, tzinfo=dt.UTC),
        },
    )
    return [
        {
            "hour": _iso(as_utc(r["hour"])),
            "scored": int(r["scored"] or 0),
            "errors": int(r["errors"] or 0),
            "frauds": int(r["frauds"] or 0),
        }
        for r in rows
        if r.get("hour") is not None
    ]


def shadow_progress(
    warehouse: Warehouse,
    *,
    model_name: str,
    version: str,
    since: dt.datetime | str,
    label_as_of: dt.datetime | str | None = None,
    mode: str = "shadow",
    maturity_hours: float | None = None,
    settle_s: float = 0.0,
) -> ShadowProgress:
    """Count what ``model_name`` version ``version`` scored in ``mode`` since ``since``.

    ``label_as_of`` is a snapshot time: only labels known and predictions served by then count.
    Without it, every label the warehouse holds counts (the labels table only receives a label once
    it is known, so in a live system that *is* "known now") and predictions served until now. This
    also keeps an accelerated simulation right, where label times are simulated event time that
    may run ahead of the wall clock ``served_at`` is measured on.
    ``settle_s`` (without ``label_as_of``) leaves out predictions served in the last seconds, whose
    counterpart rows may still be on their way (the release evidence ends at the same point).
    Raises ``WarehouseError`` (``WarehouseUnavailable`` when unreachable) from the warehouse.
    """
    as_of = (
        as_utc(label_as_of)
        if label_as_of is not None
        else dt.datetime.now(dt.UTC) - dt.timedelta(seconds=settle_s)
    )
    labels_until = as_of if label_as_of is not None else dt.datetime(9999, 12, 31, tzinfo=dt.UTC)
    if maturity_hours is None:
        matured_before = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    else:
        from fraudops.release.evidence import event_clock

        clock = as_of if label_as_of is not None else event_clock(warehouse)
        matured_before = clock - dt.timedelta(hours=float(maturity_hours))
    rows = warehouse.query(
        _sql(_QUERY, warehouse),
        {
            "model_name": model_name,
            "version": str(version),
            "mode": mode,
            "since": as_utc(since),
            "as_of": as_of,
            "label_as_of": labels_until,
            "matured_before": matured_before,
        },
    )
    row = rows[0] if rows else {}

    def ts(key: str) -> dt.datetime | None:
        value = row.get(key)
        return None if value is None else as_utc(value)

    return ShadowProgress(
        scored=int(row.get("scored") or 0),
        scored_with_label=int(row.get("scored_with_label") or 0),
        labeled_frauds=int(row.get("labeled_frauds") or 0),
        errors=int(row.get("errors") or 0),
        first_served_at=ts("first_served_at"),
        last_served_at=ts("last_served_at"),
        as_of=as_of,
        matured=int(row.get("matured") or 0),
        matured_frauds=int(row.get("matured_frauds") or 0),
        first_event_time=ts("first_event_time"),
        last_event_time=ts("last_event_time"),
    )
