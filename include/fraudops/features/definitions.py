"""Declarative, versioned feature definitions and the one registry that holds them.

Every feature the store can compute is declared here once, with its metadata (entity, window,
aggregation, description, owner, created_at, version, tags, dtype). The offline builder and the
online store compute the features of a *family* (all features sharing one entity's state) and
pick the requested columns by name, so a definition is the single name both paths agree on.

Adding a feature: declare it in ``_DEFINITIONS`` under its family, then compute it in both
``offline.py`` (vectorised) and ``online.py`` (incremental) and let the parity tests prove they
agree. A changed computation of an existing name gets a new ``version`` (the old one stays
registered, ``active=False``), so model artifacts that pinned the old version fail loudly.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fraudops.exceptions import FeatureSpecError

if TYPE_CHECKING:
    from fraudops.warehouse import Warehouse

ENTITIES = ("transaction", "card", "customer", "terminal", "merchant", "device", "region")

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
WINDOWS_US: dict[str, int] = {"1h": HOUR_US, "1d": DAY_US, "7d": 7 * DAY_US, "30d": 30 * DAY_US}
#: The longest window of any feature: a window ends at the event, or (label-delayed risk) that
#: window's ``delay`` before it.
HORIZON_US = WINDOWS_US["30d"]
HORIZON_DAYS = 30

#: Label delays the delayed risk features are registered for (issue #23). A fraud label arrives days
#: after its transaction, so "frauds among the terminal's transactions of the last 7 days" is mostly
#: 0 at scoring time: the labels of those days are not in yet. The delayed window is shifted back by
#: the delay, ``(t - delay - w, t - delay]``, where most labels are known. Each retrain picks one
#: delay from the warehouse's label-delay curve (``features.delay``); a grid of whole days keeps
#: the registry finite and lets models trained with different delays share one online store.
RISK_DELAYS: tuple[str, ...] = ("1d", "3d", "7d", "14d")
DELAYS_US: dict[str, int] = {d: int(d[:-1]) * DAY_US for d in RISK_DELAYS}
#: Windows of the delayed risk features (before the shift).
RISK_WINDOWS: tuple[str, ...] = ("1d", "7d", "30d")
#: Smoothed rate = (frauds + PRIOR_WEIGHT * PRIOR_RATE) / (transactions + PRIOR_WEIGHT): an entity
#: with few transactions sits near the prior instead of at 0 or 1. The prior is the platform's
#: expected fraud rate (about 1 % of card transactions), a registered constant so the offline
#: builder and every online replica compute the same value; each retrain reports the global rate of
#: its own window next to it (``features.delay.RiskDelay.global_fraud_rate``).
PRIOR_RATE = 0.01
PRIOR_WEIGHT = 20.0
#: Families with their own state first; each delayed family reads its entity's state.
LAG_FAMILIES: dict[str, tuple[str, str]] = {
    f"{ent}_lag{d}": (ent, d) for ent in ("terminal", "merchant") for d in RISK_DELAYS
}
FAMILIES = ("tx", "card", "terminal", "merchant", "region", "device", *LAG_FAMILIES)
#: The longest look-back of any feature (30-day windows shifted by the longest delay): history
#: loads that must make every feature exact read this much.
LOOKBACK_DAYS = HORIZON_DAYS + max(int(d[:-1]) for d in RISK_DELAYS)


def lookback_days(families: Iterable[str]) -> int:
    """Days of history that make ``families``' features exact (30, plus the largest delay)."""
    lags = [int(LAG_FAMILIES[f][1][:-1]) for f in families if f in LAG_FAMILIES]
    return HORIZON_DAYS + max(lags, default=0)


@dataclass(frozen=True)
class FeatureDefinition:
    """One version of one feature. Frozen: a change in meaning is a new version."""

    name: str
    version: int
    entity: str
    window: str | None
    aggregation: str
    description: str
    family: str
    owner: str = "fraud-ml"
    created_at: dt.datetime = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
    tags: tuple[str, ...] = ()
    dtype: str = "float64"
    active: bool = True
    #: Label delay the window is shifted back by (a ``RISK_DELAYS`` value), or None.
    delay: str | None = None

    def __post_init__(self) -> None:
        if self.entity not in ENTITIES:
            raise ValueError(f"feature {self.name}: unknown entity {self.entity!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"feature {self.name}: unknown family {self.family!r}")
        if self.window is not None and self.window not in WINDOWS_US:
            raise ValueError(f"feature {self.name}: unknown window {self.window!r}")
        if self.version < 1:
            raise ValueError(f"feature {self.name}: version must be >= 1")
        if self.delay is not None and self.delay not in DELAYS_US:
            raise ValueError(f"feature {self.name}: unknown label delay {self.delay!r}")

    @property
    def key(self) -> str:
        return f"{self.name}@v{self.version}"

    @property
    def definition_hash(self) -> str:
        payload = {
            "name": self.name,
            "version": self.version,
            "entity": self.entity,
            "window": self.window,
            "aggregation": self.aggregation,
            "family": self.family,
            "dtype": self.dtype,
        }
        if self.delay is not None:  # features without a delay keep their hash
            payload["delay"] = self.delay
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def to_row(self, registered_at: dt.datetime | None = None) -> dict[str, Any]:
        """The feature_registry warehouse row."""
        return {
            "name": self.name,
            "version": self.version,
            "entity": self.entity,
            "window": self.window,
            "aggregation": self.aggregation,
            "description": self.description,
            "owner": self.owner,
            "tags": json.dumps(list(self.tags)),
            "definition_hash": self.definition_hash,
            "label_delay": self.delay,
            "created_at": self.created_at,
            "registered_at": registered_at or dt.datetime.now(dt.UTC),
        }


@dataclass
class FeatureRegistry:
    """All feature versions, keyed by (name, version). ``get(name)`` returns the active version."""

    definitions: list[FeatureDefinition] = field(default_factory=list)

    def __post_init__(self) -> None:
        seen: set[tuple[str, int]] = set()
        for d in self.definitions:
            if (d.name, d.version) in seen:
                raise ValueError(f"feature {d.key} registered twice")
            seen.add((d.name, d.version))

    def register(self, definition: FeatureDefinition) -> None:
        if any(d.name == definition.name and d.version == definition.version for d in self.definitions):
            raise ValueError(f"feature {definition.key} registered twice")
        self.definitions.append(definition)

    def versions(self, name: str) -> list[FeatureDefinition]:
        return sorted((d for d in self.definitions if d.name == name), key=lambda d: d.version)

    def get(self, name: str, version: int | None = None) -> FeatureDefinition:
        """The definition of ``name`` at ``version`` (default: the newest active version)."""
        found = self.versions(name)
        if not found:
            raise FeatureSpecError(f"unknown feature {name!r}; see `fraudops features list`")
        if version is None:
            active = [d for d in found if d.active]
            if not active:
                raise FeatureSpecError(f"feature {name!r} has no active version")
            return active[-1]
        for d in found:
            if d.version == version:
                return d
        have = ", ".join(f"v{d.version}" for d in found)
        raise FeatureSpecError(f"feature {name!r} has no version {version} (registered: {have})")

    def list(self) -> builtins.list[FeatureDefinition]:
        return builtins.list(self.definitions)

    def active(self) -> builtins.list[FeatureDefinition]:
        return [d for d in self.definitions if d.active]

    def names(self) -> builtins.list[str]:
        return [d.name for d in self.active()]

    def to_rows(self, registered_at: dt.datetime | None = None) -> builtins.list[dict[str, Any]]:
        now = registered_at or dt.datetime.now(dt.UTC)
        return [d.to_row(now) for d in self.definitions]


def _f(
    name: str,
    entity: str,
    window: str | None,
    aggregation: str,
    description: str,
    family: str,
    tags: Sequence[str] = (),
    delay: str | None = None,
) -> FeatureDefinition:
    return FeatureDefinition(
        name=name,
        version=1,
        entity=entity,
        window=window,
        aggregation=aggregation,
        description=description,
        family=family,
        tags=tuple(tags),
        delay=delay,
        created_at=dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
        if delay
        else dt.datetime(2026, 11, 29, tzinfo=dt.UTC),
    )


def _definitions() -> list[FeatureDefinition]:
    out: list[FeatureDefinition] = [
        _f(
            "tx_amount",
            "transaction",
            None,
            "identity",
            "Transaction amount (currency units).",
            "tx",
            ["amount"],
        ),
        _f(
            "tx_hour_utc",
            "transaction",
            None,
            "hour_of_day",
            "Hour of day of event_time in UTC (0-23).",
            "tx",
            ["time"],
        ),
    ]
    for w in ("1h", "1d", "7d", "30d"):
        out.append(
            _f(
                f"card_tx_count_{w}",
                "card",
                w,
                "count",
                f"Card's transactions in the {w} before this one (velocity).",
                "card",
                ["velocity"],
            )
        )
    for w in ("1h", "1d", "7d", "30d"):
        out.append(
            _f(
                f"card_amount_sum_{w}",
                "card",
                w,
                "sum",
                f"Card's spend (sum of amounts) in the {w} before this one.",
                "card",
                ["spend"],
            )
        )
    out += [
        _f(
            "card_amount_mean_30d",
            "card",
            "30d",
            "mean",
            "Card's mean amount over the previous 30 d (0 without history).",
            "card",
            ["spend"],
        ),
        _f(
            "card_amount_zscore_30d",
            "card",
            "30d",
            "zscore",
            "(amount - card mean) / card std over the previous 30 d; 0 with fewer than 2 earlier "
            "transactions or a std under half a cent.",
            "card",
            ["amount", "history"],
        ),
        _f(
            "card_amount_ratio_30d",
            "card",
            "30d",
            "ratio",
            "amount / card mean over the previous 30 d; 1 without history.",
            "card",
            ["amount", "history"],
        ),
        _f(
            "card_seconds_since_last",
            "card",
            "30d",
            "recency",
            "Seconds since the card's previous transaction, capped at 30 d (2,592,000) when none.",
            "card",
            ["velocity"],
        ),
        _f(
            "card_new_device_30d",
            "card",
            "30d",
            "novelty",
            "1 if the card did not use this device_id in the previous 30 d (0 when device_id is null).",
            "card",
            ["novelty", "device"],
        ),
        _f(
            "card_new_terminal_30d",
            "card",
            "30d",
            "novelty",
            "1 if the card did not use this terminal in the previous 30 d.",
            "card",
            ["novelty"],
        ),
        _f(
            "card_new_region_30d",
            "card",
            "30d",
            "novelty",
            "1 if the card had no transaction in this region in the previous 30 d (0 when null).",
            "card",
            ["novelty", "region"],
        ),
    ]
    for ent in ("terminal", "merchant"):
        out += [
            _f(
                f"{ent}_tx_count_1d",
                ent,
                "1d",
                "count",
                f"The {ent}'s transactions in the previous 1 d.",
                ent,
                ["velocity"],
            ),
            _f(
                f"{ent}_tx_count_7d",
                ent,
                "7d",
                "count",
                f"The {ent}'s transactions in the previous 7 d.",
                ent,
                ["velocity"],
            ),
        ]
        for w in ("7d", "30d"):
            out.append(
                _f(
                    f"{ent}_fraud_count_{w}",
                    ent,
                    w,
                    "known_fraud_count",
                    f"The {ent}'s transactions of the previous {w} already known to be fraud at scoring "
                    "time (label_time strictly before event_time).",
                    ent,
                    ["risk", "labels"],
                )
            )
        for w in ("7d", "30d"):
            out.append(
                _f(
                    f"{ent}_fraud_rate_{w}",
                    ent,
                    w,
                    "known_fraud_rate",
                    f"{ent}_fraud_count_{w} / the {ent}'s transactions in the previous {w} (0 when none).",
                    ent,
                    ["risk", "labels"],
                )
            )
    out += [
        _f(
            "region_tx_count_1h",
            "region",
            "1h",
            "count",
            "Transactions in this region in the previous 1 h.",
            "region",
            ["velocity", "region"],
        ),
        _f(
            "region_tx_count_1d",
            "region",
            "1d",
            "count",
            "Transactions in this region in the previous 1 d.",
            "region",
            ["velocity", "region"],
        ),
        _f(
            "region_velocity_ratio_1h_1d",
            "region",
            "1h",
            "ratio",
            "region_tx_count_1h * 24 / region_tx_count_1d (0 when the 1 d count is 0): surges in a region.",
            "region",
            ["velocity", "region"],
        ),
        _f(
            "device_tx_count_1h",
            "device",
            "1h",
            "count",
            "Transactions from this device_id (any card) in the previous 1 h; 0 when null.",
            "device",
            ["velocity", "device"],
        ),
        _f(
            "device_tx_count_1d",
            "device",
            "1d",
            "count",
            "Transactions from this device_id (any card) in the previous 1 d; 0 when null.",
            "device",
            ["velocity", "device"],
        ),
    ]
    for fam, (ent, d) in LAG_FAMILIES.items():
        span = f"({d} + {{w}} before the event, {d} before it]"
        for w in RISK_WINDOWS:
            out.append(
                _f(
                    f"{fam}_tx_count_{w}",
                    ent,
                    w,
                    "delayed_count",
                    f"The {ent}'s transactions in the {w} ending {d} before this one: "
                    + span.format(w=w)
                    + ".",
                    fam,
                    ["risk", "delayed"],
                    d,
                )
            )
        for w in RISK_WINDOWS:
            out.append(
                _f(
                    f"{fam}_fraud_count_{w}",
                    ent,
                    w,
                    "delayed_known_fraud_count",
                    f"Of those, the ones already known to be fraud at scoring time (label_time before "
                    f"event_time); the {d} shift leaves time for their labels to arrive.",
                    fam,
                    ["risk", "labels", "delayed"],
                    d,
                )
            )
        for w in RISK_WINDOWS:
            out.append(
                _f(
                    f"{fam}_fraud_rate_{w}",
                    ent,
                    w,
                    "delayed_smoothed_fraud_rate",
                    f"({fam}_fraud_count_{w} + {PRIOR_WEIGHT:g} x {PRIOR_RATE:g}) / "
                    f"({fam}_tx_count_{w} + {PRIOR_WEIGHT:g}): the fraud rate, smoothed towards the "
                    "prior so a little-used entity is not 0 or 1.",
                    fam,
                    ["risk", "labels", "delayed"],
                    d,
                )
            )
    return out


#: The registry: every feature version fraudops knows.
REGISTRY = FeatureRegistry(_definitions())

#: Output order of every family (the offline builder and the online store compute in this order).
FAMILY_FEATURES: dict[str, tuple[str, ...]] = {
    fam: tuple(d.name for d in REGISTRY.definitions if d.family == fam and d.version == 1) for fam in FAMILIES
}


def families_for(names: Iterable[str]) -> list[str]:
    """The families computing ``names``, in FAMILIES order; a delayed family brings its entity's
    family (which keeps the state it reads)."""
    wanted = set(names)
    fams = {fam for fam in FAMILIES if wanted & set(FAMILY_FEATURES[fam])}
    fams |= {LAG_FAMILIES[f][0] for f in fams if f in LAG_FAMILIES}
    return [fam for fam in FAMILIES if fam in fams]


def sync_registry(warehouse: Warehouse, registry: FeatureRegistry | None = None) -> int:
    """Mirror the registry into the warehouse's feature_registry table (idempotent by name+version)."""
    reg = registry or REGISTRY
    return warehouse.upsert("feature_registry", reg.to_rows())
