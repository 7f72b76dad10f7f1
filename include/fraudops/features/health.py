"""Feature health on a training window: what a model is about to learn from, before it learns.

A retrain on data that lacks a field (no merchants, no devices) used to go ahead silently with a
third of its features constant. :func:`feature_health` reports, per feature of a spec:

* **missing source**: a column the feature is computed from is absent from the transactions, or
  holds a single value (all null, or one merchant for everything): the feature cannot carry
  information; dropped;
* **constant**: one distinct value on the window (as served: float32); dropped;
* **near constant**: the most common value covers at least ``near_constant_share`` of the rows;
  kept, and named in the report (rare events, e.g. a new device, are legitimately like that).

:func:`point_in_time_leaks` is the leakage guard: the features of every event up to a cut time
must not change when everything that happened or was learnt after the cut (later transactions,
labels that arrived later) is removed. A feature that changes uses something not yet known at
its event time, and the run fails naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from fraudops.features.definitions import LAG_FAMILIES, REGISTRY, FeatureRegistry

if TYPE_CHECKING:
    import pandas as pd

    from fraudops.features.spec import FeatureSpec

Status = Literal["ok", "near_constant", "constant", "missing_source"]

#: Transaction columns each family is computed from (besides ``event_time`` and the ids).
_FAMILY_SOURCES: dict[str, tuple[str, ...]] = {
    "tx": ("amount",),
    "card": ("card_id", "amount"),
    "terminal": ("terminal_id",),
    "merchant": ("merchant_id",),
    "region": ("region",),
    "device": ("device_id",),
}
#: Card features that also read another entity's column (novelty of a device, terminal, region).
_EXTRA_SOURCES: dict[str, tuple[str, ...]] = {
    "card_new_device_30d": ("device_id",),
    "card_new_terminal_30d": ("terminal_id",),
    "card_new_region_30d": ("region",),
}


def source_columns(name: str, registry: FeatureRegistry | None = None) -> tuple[str, ...]:
    """The transaction columns feature ``name`` is computed from."""
    definition = (registry or REGISTRY).get(name)
    family = LAG_FAMILIES[definition.family][0] if definition.family in LAG_FAMILIES else definition.family
    return _FAMILY_SOURCES[family] + _EXTRA_SOURCES.get(name, ())


@dataclass(frozen=True)
class FeatureHealth:
    name: str
    status: Status
    distinct: int
    #: Share of rows holding the most common value.
    top_share: float
    #: Source columns that are absent or hold a single value.
    missing_sources: tuple[str, ...] = ()

    @property
    def dropped(self) -> bool:
        return self.status in ("constant", "missing_source")


@dataclass(frozen=True)
class HealthReport:
    features: tuple[FeatureHealth, ...]
    rows: int
    near_constant_share: float
    #: Events compared by the leakage guard (0: not run) and the features that leaked.
    leakage_rows_checked: int = 0
    leaks: tuple[str, ...] = field(default_factory=tuple)

    @property
    def dropped(self) -> list[str]:
        return [f.name for f in self.features if f.dropped]

    @property
    def kept(self) -> list[str]:
        return [f.name for f in self.features if not f.dropped]

    def names(self, status: Status) -> list[str]:
        return [f.name for f in self.features if f.status == status]

    def summary(self) -> str:
        """One line for logs and the run's XCom, naming every feature that is not plainly ok."""
        parts = []
        labels: tuple[tuple[Status, str], ...] = (
            ("missing_source", "dropped, source column missing or single-valued"),
            ("constant", "dropped, constant"),
            ("near_constant", "kept, near constant"),
        )
        for status, label in labels:
            names = self.names(status)
            if names:
                parts.append(f"{len(names)} {label}: {', '.join(names)}")
        head = f"{len(self.kept)} of {len(self.features)} features kept on {self.rows:,} rows"
        return head + ("; " + "; ".join(parts) if parts else "; all informative")

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "near_constant_share": self.near_constant_share,
            "kept": self.kept,
            "dropped": self.dropped,
            "near_constant": self.names("near_constant"),
            "leakage_rows_checked": self.leakage_rows_checked,
            "leaks": list(self.leaks),
            "features": [asdict(f) for f in self.features],
        }


def _single_valued(transactions: pd.DataFrame, column: str) -> bool:
    if column not in transactions.columns:
        return True
    return int(transactions[column].nunique(dropna=True)) <= 1


def feature_health(
    features: pd.DataFrame,
    transactions: pd.DataFrame,
    names: Sequence[str],
    *,
    near_constant_share: float = 0.999,
    registry: FeatureRegistry | None = None,
) -> HealthReport:
    """Health of each of ``names`` on ``features`` (the training rows), with ``transactions`` (the
    window and its history) for the source columns."""
    import numpy as np

    if not 0.5 < near_constant_share <= 1.0:
        raise ValueError(f"near_constant_share must be in (0.5, 1], got {near_constant_share}")
    missing_cols = {
        c for name in names for c in source_columns(name, registry) if _single_valued(transactions, c)
    }
    out = []
    for name in names:
        values = features[name].to_numpy(dtype=np.float32)  # what ONNX Runtime is served
        uniq, counts = np.unique(values, return_counts=True, equal_nan=True)
        top = float(counts.max() / len(values)) if len(values) else 1.0
        missing = tuple(c for c in source_columns(name, registry) if c in missing_cols)
        status: Status
        if missing:
            status = "missing_source"
        elif len(uniq) <= 1:
            status = "constant"
        elif top >= near_constant_share:
            status = "near_constant"
        else:
            status = "ok"
        out.append(FeatureHealth(name, status, len(uniq), round(top, 6), missing))
    return HealthReport(tuple(out), len(features), near_constant_share)


def point_in_time_leaks(
    transactions: pd.DataFrame,
    labels: pd.DataFrame | None,
    spec: FeatureSpec,
    *,
    cut_quantile: float = 0.6,
    full: pd.DataFrame | None = None,
) -> tuple[list[str], int]:
    """Features whose value at some event changes when everything after a cut time is removed.

    The cut is the ``cut_quantile`` of event times. The features of the events at or before it
    are built twice: from the whole window (``full``, if already built), and from the transactions
    up to the cut with only the labels known by then. Point-in-time features agree exactly; a
    feature that reads a later transaction or a label that arrived later does not. Returns the
    leaking feature names and the number of events compared.
    """
    import numpy as np

    from fraudops.features.offline import build_offline, times_us

    if len(transactions) == 0:
        return [], 0
    t = times_us(transactions["event_time"])
    cut = int(np.quantile(t, cut_quantile))
    before = transactions.loc[t <= cut]
    known = None
    if labels is not None:
        known = labels.loc[times_us(labels["label_time"]) <= cut]
    full = full if full is not None else build_offline(transactions, labels, spec)
    truncated = build_offline(before, known, spec)
    ids = truncated.index
    a = full.loc[ids, spec.names].to_numpy(dtype=np.float64)
    b = truncated[spec.names].to_numpy(dtype=np.float64)
    differs = ~(np.isclose(a, b, rtol=1e-9, atol=1e-9) | (np.isnan(a) & np.isnan(b)))
    leaks = [name for name, bad in zip(spec.names, differs.any(axis=0), strict=True) if bad]
    return leaks, len(ids)
