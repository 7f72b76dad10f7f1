"""Evidence for the release gates: paired production/shadow scores of the same transactions, with labels.

Why paired: the challenger (shadow) scores exactly the transactions, and feature vectors, the
champion (production) decided on, so comparing the two on the same rows removes traffic mix and
attack waves from the comparison; the bootstrap in :mod:`.gates` resamples rows, keeping the pairs.

Roles instead of champion/challenger column names, because the same shape serves both stages:

* promotion — ``incumbent`` = champion in production, ``candidate`` = challenger in shadow;
* probation — ``candidate`` = new champion in production, ``incumbent`` = old champion, which keeps
  scoring in shadow.

The production side drives (one row per transaction it decided on); the shadow side is LEFT
joined, so a transaction the shadow model never scored shows up as a missing score (counted as an
error by the gates), not silently dropped.

Labels: only labels known at ``label_as_of`` are used (``label_time <= label_as_of``), so a
decision can be recomputed later with the information it had. Only *matured* events enter quality
metrics: events older than ``label_maturity_hours`` (read off the label-delay curve by
:mod:`.labels`), where an unlabeled transaction counts as genuine (most genuine transactions never
get a label). Younger events are left out even when a fast fraud label has arrived, since keeping
only the fast labels would bias the comparison towards the model that catches quickly-reported
fraud (they still count for latency, errors, drift).

Two clocks, kept apart: ``since``/``until``/``label_as_of`` are *event time* (transaction and label
timestamps: the simulator runs it accelerated, production runs it at wall-clock pace), while
``served_since``/``served_until`` bound *wall-clock* ``served_at`` (e.g. "since the challenger was
deployed"). Only production rows that were sampled for the shadow pool (``sampled``; NULL in rows
from before the column existed counts as sampled) *for this shadow version* (``sampled_for`` names
it; each challenger has its own sample rate; NULL in older rows) drive the pairing, so a 10 %
mirror does not turn 90 % of events into challenger errors, nor a 50 % challenger's events into a
10 % one's. A production failure answered by the previous champion
is logged under the *answering* version with ``fallback`` and ``error = 'champion v<N>: ...'``;
such rows are charged to version N (they count as its errors, not as missing volume).

Shed events: the scoring service logs a shadow row with ``error = 'shed:<reason>'`` for every
sampled event a worker did not score. Capacity sheds (``shed:queue_full``, ``shed:throttled``: the
pool protecting production from an overloaded machine or a slow model, whose latency the gates
judge separately) leave the pairing, counted in ``n_capacity_shed``; ``shed:down`` (the worker had
crashed or hung) and ``shed:lost`` (it took the event, then crashed, hung or was stopped before
answering) stay in as the challenger's errors, like a missing row.

Shadow backlog: a worker scores its queue in order, niced below production, so on a busy machine
its rows can trail production's by more than the settle time. The pairing therefore ends at the
shadow side's watermark: the newest production ``served_at`` whose event the shadow model has
scored (or failed on). Earlier events without a shadow row were lost (a crash drops the queue) and
count as missing; later ones are still in the queue and are left out, not counted as errors. With
no scored shadow row at all there is no watermark and every event counts (a model that never
scores is not hidden).

The SQL is parameterised (``@name``); the emulator has no insertId dedup, so every input is
deduplicated by its natural key: predictions with ``QUALIFY ROW_NUMBER()`` (first served wins),
labels with ``GROUP BY`` (conflicting labels count as fraud, as in :mod:`.progress`).
Everything after the query is a pure function on DataFrames (:func:`prepare_paired`), unit-tested
without a warehouse.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from fraudops.exceptions import DataValidationError
from fraudops.vocabulary import Stage

if TYPE_CHECKING:
    import pandas as pd

    from fraudops.warehouse import Warehouse


#: Per-model columns of the paired frame (each appears as ``incumbent_<col>`` and ``candidate_<col>``).
SIDE_COLUMNS: tuple[str, ...] = (
    "score",
    "decision",
    "latency_ms",
    "fallback",
    "error",
    "feature_set",
    "features",
    "present",
)

_PAIRED_SQL = """
WITH prod AS (
  SELECT transaction_id, score, decision, latency_ms, fallback, error, amount, event_time,
         feature_set, features, served_at
  FROM `{predictions}`
  WHERE model_name = @model_name AND mode = @prod_mode AND COALESCE(sampled, TRUE)
    AND (sampled_for IS NULL OR STRPOS(sampled_for, @offer_key) > 0)
    AND (model_version = @prod_version OR (fallback AND STARTS_WITH(error, @failed_prefix)))
    AND event_time >= @since AND event_time < @until
    AND served_at >= @served_since AND served_at <= @served_until
  QUALIFY ROW_NUMBER() OVER (PARTITION BY transaction_id ORDER BY served_at, request_id) = 1
),
shadow AS (
  SELECT transaction_id, score, decision, latency_ms, fallback, error, feature_set, features
  FROM `{predictions}`
  WHERE model_name = @model_name AND model_version = @shadow_version AND mode = @shadow_mode
    AND event_time >= @since AND event_time < @until
    AND served_at >= @served_since AND served_at <= @served_until
  QUALIFY ROW_NUMBER() OVER (PARTITION BY transaction_id ORDER BY served_at, request_id) = 1
),
wm AS (
  SELECT MAX(p.served_at) AS t
  FROM prod p JOIN shadow s ON s.transaction_id = p.transaction_id
  WHERE s.error IS NULL OR NOT STARTS_WITH(s.error, 'shed:')
),
lab AS (
  SELECT transaction_id, LOGICAL_OR(is_fraud) AS is_fraud, MAX(label_time) AS label_time
  FROM `{labels}`
  WHERE label_time <= @label_as_of
  GROUP BY transaction_id
)
SELECT
  p.transaction_id, p.event_time, p.amount, p.served_at,
  p.score AS prod_score, p.decision AS prod_decision, p.latency_ms AS prod_latency_ms,
  p.fallback AS prod_fallback, p.error AS prod_error, p.feature_set AS prod_feature_set,
  p.features AS prod_features, TRUE AS prod_present,
  s.score AS shadow_score, s.decision AS shadow_decision, s.latency_ms AS shadow_latency_ms,
  s.fallback AS shadow_fallback, s.error AS shadow_error, s.feature_set AS shadow_feature_set,
  s.features AS shadow_features, s.transaction_id IS NOT NULL AS shadow_present,
  l.is_fraud, l.label_time
FROM prod p
CROSS JOIN wm
LEFT JOIN shadow s ON s.transaction_id = p.transaction_id
LEFT JOIN lab l ON l.transaction_id = p.transaction_id
WHERE wm.t IS NULL OR p.served_at <= wm.t
ORDER BY p.event_time, p.transaction_id
"""


@dataclass
class ShadowEvidence:
    """Paired scores of two model versions on the same transactions, plus labels and provenance."""

    stage: Stage
    model_name: str
    #: Challenger (promotion) or new champion (probation).
    candidate_version: str
    #: Champion (promotion) or old champion (probation).
    incumbent_version: str
    since: dt.datetime
    until: dt.datetime
    label_as_of: dt.datetime
    label_maturity_hours: float
    #: One row per transaction: ``transaction_id, event_time, amount, incumbent_*, candidate_*,
    #: is_fraud, label_time, matured, label`` (label: 1.0 fraud, 0.0 genuine, NaN not evaluable).
    frame: pd.DataFrame
    #: Sampled events the shadow side shed for capacity (not part of ``frame``).
    n_capacity_shed: int = 0

    @property
    def n_events(self) -> int:
        return len(self.frame)

    @property
    def n_candidate_scored(self) -> int:
        return int(_ok_mask(self.frame, "candidate").sum())

    @property
    def n_labeled(self) -> int:
        return int(self.frame["is_fraud"].notna().sum())

    @property
    def n_evaluable(self) -> int:
        return int(self.frame["label"].notna().sum())

    @property
    def n_evaluable_frauds(self) -> int:
        return int((self.frame["label"] == 1.0).sum())

    def summary(self) -> dict[str, Any]:
        """Small, JSON-safe provenance and counts (goes into the decision's evidence)."""
        return {
            "stage": self.stage,
            "model_name": self.model_name,
            "candidate_version": self.candidate_version,
            "incumbent_version": self.incumbent_version,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "label_as_of": self.label_as_of.isoformat(),
            "label_maturity_hours": self.label_maturity_hours,
            "n_events": self.n_events,
            "n_candidate_scored": self.n_candidate_scored,
            "n_labeled": self.n_labeled,
            "n_evaluable": self.n_evaluable,
            "n_evaluable_frauds": self.n_evaluable_frauds,
            "n_capacity_shed": self.n_capacity_shed,
        }


#: Open bounds for optional windows (BigQuery TIMESTAMP range).
_EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)

#: How the scoring service words a production failure answered by the previous champion
#: (``error`` of the fallback row, which carries the answering model's version):
#: ``champion v<version>: <reason>``. The evidence charges such rows to the failing version.
FAILED_PREFIX = "champion v"


#: How a production failure reads when the model answered, valid but past its per-request time
#: budget (``champion v<N>: timeout``). Only production has that budget: a shadow model has none.
BUDGET_MISS_SUFFIX = ": timeout"


def budget_misses(frame: pd.DataFrame, side: str) -> pd.Series:
    """Rows where ``side``'s only failure was its per-request time budget (a latency event)."""
    error = frame[f"{side}_error"].astype("string").fillna("")
    return (error.str.startswith(FAILED_PREFIX) & error.str.endswith(BUDGET_MISS_SUFFIX)).astype(bool)


#: Shadow ``error`` values of events the pool shed to protect capacity (not model failures).
CAPACITY_SHED: tuple[str, ...] = ("shed:queue_full", "shed:throttled")


def drop_capacity_sheds(raw: pd.DataFrame, side: str = "shadow") -> tuple[pd.DataFrame, int]:
    """Remove rows whose ``<side>_error`` is a capacity shed; returns (rest, how many were removed)."""
    shed = raw[f"{side}_error"].isin(CAPACITY_SHED).fillna(False).astype(bool)
    return raw.loc[~shed], int(shed.sum())


def _utc(ts: dt.datetime) -> dt.datetime:
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)


def _ok_mask(frame: pd.DataFrame, side: str) -> pd.Series:
    """Rows where ``side`` produced a usable score: present, score not NULL/NaN, no error, no fallback."""
    present = frame[f"{side}_present"].fillna(False).astype(bool)
    scored = frame[f"{side}_score"].notna()
    error = frame[f"{side}_error"]
    no_error = error.isna() | (error == "")
    no_fallback = ~frame[f"{side}_fallback"].fillna(False).astype(bool)
    return (present & scored & no_error & no_fallback).fillna(False).astype(bool)


def ok_mask(frame: pd.DataFrame, side: Literal["candidate", "incumbent"]) -> pd.Series:
    """Public form of the usable-score mask (the gates count everything else as an error)."""
    return _ok_mask(frame, side)


def prepare_paired(
    raw: pd.DataFrame,
    *,
    candidate_side: Literal["prod", "shadow"],
    label_as_of: dt.datetime,
    label_maturity_hours: float,
) -> pd.DataFrame:
    """Rename ``prod_*``/``shadow_*`` to roles and derive ``matured`` and ``label``.

    Pure: the SQL result or a hand-built frame go through the same code.
    """
    import numpy as np
    import pandas as pd

    incumbent_side = "shadow" if candidate_side == "prod" else "prod"
    rename = {}
    for col in SIDE_COLUMNS:
        rename[f"{candidate_side}_{col}"] = f"candidate_{col}"
        rename[f"{incumbent_side}_{col}"] = f"incumbent_{col}"
    frame = raw.rename(columns=rename)  # a new frame: the caller's is left alone
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0 or frame.index.step != 1:
        frame = frame.reset_index(drop=True)
    missing = [c for c in rename.values() if c not in frame.columns]
    if missing:
        raise DataValidationError(f"paired frame lacks columns {missing}")
    for side in ("candidate", "incumbent"):
        frame[f"{side}_score"] = pd.to_numeric(frame[f"{side}_score"], errors="coerce").astype("float64")
        frame[f"{side}_latency_ms"] = pd.to_numeric(frame[f"{side}_latency_ms"], errors="coerce").astype(
            "float64"
        )
        frame[f"{side}_present"] = frame[f"{side}_present"].fillna(False).astype(bool)
    frame["amount"] = pd.to_numeric(frame["amount"], errors="coerce").fillna(0.0).astype("float64")
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    cutoff = pd.Timestamp(_utc(label_as_of)) - pd.Timedelta(hours=label_maturity_hours)
    frame["matured"] = (frame["event_time"] <= cutoff).to_numpy()
    is_fraud = frame["is_fraud"].astype("boolean")
    frame["is_fraud"] = is_fraud
    known = is_fraud.fillna(False).to_numpy().astype(float)
    # Matured: the label, and unlabeled counts as genuine. Not matured: left out, labeled or not —
    # keeping only the fast fraud labels of young events would favour the model that catches the
    # frauds labeled fastest, and punish one that catches a fresh attack whose chargebacks are
    # still in the post.
    label = np.where(frame["matured"].to_numpy(), known, np.nan)
    frame["label"] = label.astype("float64")
    return frame


def _collect(
    warehouse: Warehouse,
    *,
    stage: Stage,
    model_name: str,
    prod_version: str,
    shadow_version: str,
    candidate_side: Literal["prod", "shadow"],
    since: dt.datetime | None,
    until: dt.datetime | None,
    label_as_of: dt.datetime,
    label_maturity_hours: float | None,
    served_since: dt.datetime | None = None,
    served_until: dt.datetime | None = None,
) -> ShadowEvidence:
    if label_maturity_hours is None:
        from fraudops.release.policy import DEFAULT_POLICY

        label_maturity_hours = DEFAULT_POLICY.label_maturity_hours
    since = _utc(since) if since is not None else _EARLIEST
    until = _utc(until) if until is not None else _LATEST
    if since >= until:
        raise DataValidationError(f"empty window: since {since} >= until {until}")
    sql = _PAIRED_SQL.format(
        predictions=warehouse.table_id("predictions"), labels=warehouse.table_id("labels")
    )
    raw = warehouse.query_df(
        sql,
        {
            "model_name": model_name,
            "prod_version": str(prod_version),
            "shadow_version": str(shadow_version),
            "offer_key": f",{shadow_version},",
            "prod_mode": "production",
            "shadow_mode": "shadow",
            "since": since,
            "until": until,
            "label_as_of": _utc(label_as_of),
            "served_since": _utc(served_since) if served_since is not None else _EARLIEST,
            "served_until": _utc(served_until) if served_until is not None else _LATEST,
            "failed_prefix": f"{FAILED_PREFIX}{prod_version}:",
        },
    )
    raw, n_shed = drop_capacity_sheds(raw)
    frame = prepare_paired(
        raw,
        candidate_side=candidate_side,
        label_as_of=label_as_of,
        label_maturity_hours=label_maturity_hours,
    )
    candidate, incumbent = (
        (prod_version, shadow_version) if candidate_side == "prod" else (shadow_version, prod_version)
    )
    return ShadowEvidence(
        stage=stage,
        model_name=model_name,
        candidate_version=str(candidate),
        incumbent_version=str(incumbent),
        since=since,
        until=until,
        label_as_of=_utc(label_as_of),
        label_maturity_hours=label_maturity_hours,
        frame=frame,
        n_capacity_shed=n_shed,
    )


def collect_shadow_evidence(
    warehouse: Warehouse,
    *,
    model_name: str,
    challenger_version: str,
    champion_version: str,
    since: dt.datetime | None,
    until: dt.datetime | None,
    label_as_of: dt.datetime,
    label_maturity_hours: float | None = None,
    served_since: dt.datetime | None = None,
    served_until: dt.datetime | None = None,
) -> ShadowEvidence:
    """Champion's production rows and the challenger's shadow rows for events in ``[since, until)``.

    ``label_maturity_hours`` defaults to the default policy's.
    """
    return _collect(
        warehouse,
        stage=Stage.PROMOTION,
        model_name=model_name,
        prod_version=champion_version,
        shadow_version=challenger_version,
        candidate_side="shadow",
        since=since,
        until=until,
        label_as_of=label_as_of,
        label_maturity_hours=label_maturity_hours,
        served_since=served_since,
        served_until=served_until,
    )


def collect_production_window(
    warehouse: Warehouse,
    *,
    model_name: str,
    new_champion_version: str,
    old_champion_version: str,
    since: dt.datetime | None,
    until: dt.datetime | None,
    label_as_of: dt.datetime,
    label_maturity_hours: float | None = None,
    served_since: dt.datetime | None = None,
    served_until: dt.datetime | None = None,
) -> ShadowEvidence:
    """Probation evidence: the new champion's production rows vs the old champion scoring in shadow."""
    return _collect(
        warehouse,
        stage=Stage.PROBATION,
        model_name=model_name,
        prod_version=new_champion_version,
        shadow_version=old_champion_version,
        candidate_side="prod",
        since=since,
        until=until,
        label_as_of=label_as_of,
        label_maturity_hours=label_maturity_hours,
        served_since=served_since,
        served_until=served_until,
    )


def parse_vector(text: Any) -> list[float] | None:
    """A ``features`` JSON array as floats; None when missing or malformed."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None
    try:
        values = json.loads(text) if isinstance(text, str | bytes) else list(text)
        return [float("nan") if v is None else float(v) for v in values]
    except (TypeError, ValueError):
        return None


def features_frame(features: pd.Series, names: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """Parse a column of JSON feature vectors into a frame with one column per feature name.

    Rows whose vector is missing or of the wrong length are dropped (they are not this model's input).
    """
    import numpy as np
    import pandas as pd

    vectors = [parse_vector(v) for v in features]
    rows = [v for v in vectors if v is not None and len(v) == len(names)]
    if not rows:
        return pd.DataFrame({n: pd.Series(dtype="float64") for n in names})
    return pd.DataFrame(np.asarray(rows, dtype=np.float64), columns=list(names))


def event_clock(warehouse: Warehouse, table: str = "transactions", clock: str | None = None) -> dt.datetime:
    """ "Now" in event time, by ``Settings.event_clock`` (``clock`` overrides it).

    ``server`` (production): the server's wall clock. Labels, their maturity and the release
    page's windows are judged against it, never against a value read from the data, which anyone
    able to write an event with a far-future time would control. ``simulated`` (the local stack,
    the tests): the newest event in ``table``; the simulator's accelerated stream runs days ahead
    of (or behind) the wall clock. Wall clock when the table is empty.
    """
    from fraudops.config import load_settings

    if (clock or load_settings().event_clock) == "server":
        return dt.datetime.now(dt.UTC)
    return warehouse.newest_event_time(table) or dt.datetime.now(dt.UTC)
