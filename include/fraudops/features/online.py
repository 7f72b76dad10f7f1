"""Online features: incremental per-entity state, updated on every event, one vector per request.

``OnlineFeatureStore(spec, backend)`` turns a transaction (a mapping with the ``transactions``
table's fields) into exactly the vector ``spec`` asks for, and records the event in the state.
Semantics (time order, late events, label delay) are documented in
:mod:`fraudops.features.semantics`; the offline builder implements the same rules and the parity
tests prove the two agree.

Backends
    ``EmbeddedBackend`` (default) keeps per-entity sorted arrays in process: events per entity in
    key order with prefix sums of integer cents, so a window aggregate is two ``bisect`` calls and
    a subtraction; an in-order event appends in O(1), a late event is inserted at its sorted
    position. No pandas in the hot path. The hot path is bound by memory latency (a million
    entities' state does not fit in cache), so times and sums are contiguous int64 arrays, the
    long terminal / merchant series search from the previous event's window bounds, and each
    family is one precompiled step (no dispatch on feature names per event).

    ``RedisBackend`` keeps the same facts in Redis sorted sets (score = event time in µs, member
    starting with the transaction_id so same-timestamp members sort by id) shared by several
    scoring replicas. One request is one pipelined round trip: range reads for the event's
    entities, then the writes (the reads come first, so they never see the event itself).

Bounded state (issue #18, finding 5)
    Every id in a request creates state, so a stream of random ids would grow it without end.
    The store's clock is the newest event time it has recorded. An entity whose newest event is
    ``TTL_US[family]`` (its longest window + twice the lateness allowance) behind that clock is
    evicted: no event the service accepts (at most the lateness allowance behind its clock) can
    see it in any window, so features stay identical to the offline builder. The embedded backend
    also caps each family at ``max_entities`` (``FRAUDOPS_FEATURE_MAX_ENTITIES``): past it, the
    entity with the least recent in-order event is evicted, counted and logged. That cap is the one
    case where online and offline features can differ (an evicted entity restarts cold). Redis keys
    get the same TTL (wall clock) on every write.
"""

from __future__ import annotations

import logging
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, MutableSequence, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fraudops.exceptions import DataValidationError, FeatureSpecError
from fraudops.features.definitions import (
    DELAYS_US,
    FAMILY_FEATURES,
    HORIZON_US,
    LAG_FAMILIES,
    WINDOWS_US,
    FeatureRegistry,
    families_for,
    lookback_days,
)
from fraudops.features.semantics import (
    LATENESS_ALLOWANCE_US,
    card_values,
    lag_values,
    region_values,
    risk_values,
    to_us,
    tx_values,
)
from fraudops.features.spec import FeatureSpec, resolve

if TYPE_CHECKING:
    import datetime as dt

    import pandas as pd

    from fraudops.warehouse import Warehouse

log = logging.getLogger(__name__)

H1, D1, D7, D30 = WINDOWS_US["1h"], WINDOWS_US["1d"], WINDOWS_US["7d"], WINDOWS_US["30d"]
#: Windows each count-only family keeps (terminal/merchant need 30 d for the 30 d fraud rate).
COUNT_WINDOWS: dict[str, tuple[int, ...]] = {
    "terminal": (D1, D7, D30),
    "merchant": (D1, D7, D30),
    "region": (H1, D1),
    "device": (H1, D1),
}
#: Terminal / merchant state also serves their delayed families: 30 d shifted by the longest delay.
_LAG_MAX = max(DELAYS_US.values())
RETENTION_US: dict[str, int] = {
    "card": HORIZON_US + LATENESS_ALLOWANCE_US,
    "terminal": D30 + _LAG_MAX + LATENESS_ALLOWANCE_US,
    "merchant": D30 + _LAG_MAX + LATENESS_ALLOWANCE_US,
    "region": D1 + LATENESS_ALLOWANCE_US,
    "device": D1 + LATENESS_ALLOWANCE_US,
}
#: An entity is evicted once its newest event is this far behind the store's clock (its newest
#: event): the family's longest window, plus the lateness allowance (the oldest event the service
#: accepts), plus the same again as margin (the service's clock may run ahead of the store's).
TTL_US: dict[str, int] = {fam: keep + LATENESS_ALLOWANCE_US for fam, keep in RETENTION_US.items()}
#: The TTL sweep runs when the clock has moved this far since the last one (it looks at the least
#: recent entity of each family until one is live: O(evicted)). Ten minutes against a TTL of days:
#: eviction is never noticeably late, and the sweep stays off the per-event path (simulated
#: traffic runs event time ~1 600x faster than the wall clock).
SWEEP_EVERY_US = 600_000_000
#: Default cap on entities per family (FRAUDOPS_FEATURE_MAX_ENTITIES). Measured in
#: test_online_bounds.py (resident memory, compiled and pure Python alike): a flood where every id
#: of every event is new costs ~3.5 KB per cap slot once all five families are full and churning,
#: so 500 000 bounds it to ~1.7 GB; that is 10x the simulated population (50 000 cards), so no
#: entity of legitimate traffic is evicted by the cap here.
DEFAULT_MAX_ENTITIES = 500_000
#: Event tuple fields: (t_us, transaction_id, cents, amount, card, terminal, merchant, region, device)
Event = tuple[int, str, int, float, Any, Any, Any, Any, Any]
#: Embedded state keeps times and prefix sums in int64 arrays (a search touches few cache lines).
_INT64_MAX = 2**63 - 1
_FAMILY_SLOT = {"card": 4, "terminal": 5, "merchant": 6, "region": 7, "device": 8}
_FAMILY_SLOT.update({fam: _FAMILY_SLOT[ent] for fam, (ent, _) in LAG_FAMILIES.items()})


def _clean(value: Any) -> Any:
    """None for missing ids (None, NaN, empty string); ids are compared as strings."""
    if type(value) is str:  # the common case first
        return value if value else None
    if value is None or value != value or value == "":  # NaN != NaN
        return None
    return value if isinstance(value, str) else str(value)


def event_from_mapping(tx: Mapping[str, Any]) -> Event:
    """Validate and normalise one transaction mapping (the hot path's only parsing)."""
    try:
        t = to_us(tx["event_time"])
        amount = float(tx["amount"])
        txid = tx["transaction_id"]
        card = tx["card_id"]
        terminal = tx["terminal_id"]
    except KeyError as err:
        raise DataValidationError(f"transaction is missing field {err.args[0]!r}") from err
    if txid is None or card is None or terminal is None:
        raise DataValidationError("transaction_id, card_id and terminal_id are required")
    if not -_INT64_MAX <= t <= _INT64_MAX:
        raise DataValidationError(f"event_time {tx['event_time']!r} is out of range")
    return (
        t,
        str(txid),
        round(amount * 100),
        amount,
        _clean(card),
        _clean(terminal),
        _clean(tx.get("merchant_id")),
        _clean(tx.get("region")),
        _clean(tx.get("device_id")),
    )


def events_from_frame(transactions: pd.DataFrame) -> list[Event]:
    """Events of a transactions frame, sorted by the key (event_time_us, transaction_id)."""
    from fraudops.features.offline import times_us

    df = transactions
    t = times_us(df["event_time"]).tolist()
    amounts = df["amount"].astype("float64").tolist()

    def col(name: str) -> list[Any]:
        return [_clean(v) for v in df[name].tolist()] if name in df.columns else [None] * len(df)

    events = [
        (ti, str(k), round(a * 100), a, c, te, m, r, d)
        for ti, k, a, c, te, m, r, d in zip(
            t,
            df["transaction_id"].tolist(),
            amounts,
            col("card_id"),
            col("terminal_id"),
            col("merchant_id"),
            col("region"),
            col("device_id"),
            strict=True,
        )
    ]
    events.sort(key=lambda e: (e[0], e[1]))
    return events


def labels_from_frame(
    labels: pd.DataFrame, transactions: pd.DataFrame
) -> list[tuple[str, int, int, Any, Any]]:
    """Fraud labels as (txid, event_us, label_us, terminal, merchant), joined to their transaction."""
    from fraudops.features.offline import times_us

    if labels is None or len(labels) == 0:
        return []
    fraud = labels[labels["is_fraud"].astype(bool)]
    where = {
        str(k): (_clean(te), _clean(m))
        for k, te, m in zip(
            transactions["transaction_id"].tolist(),
            transactions["terminal_id"].tolist(),
            transactions["merchant_id"].tolist()
            if "merchant_id" in transactions
            else [None] * len(transactions),
            strict=True,
        )
    }
    out = []
    for k, e, lt in zip(
        fraud["transaction_id"].tolist(),
        times_us(fraud["event_time"]).tolist(),
        times_us(fraud["label_time"]).tolist(),
        strict=True,
    ):
        k = str(k)
        if k in where:
            out.append((k, e, lt, where[k][0], where[k][1]))
    return out


# ---------------------------------------------------------------------------------------------
# Embedded backend
# ---------------------------------------------------------------------------------------------
#: One family's step: the family's values for an event (recording the event when asked).
Step = Callable[[Event, bool], list[float]]
#: A series is trimmed back to its retention once it holds an eighth of it more (amortised O(1)).
_TRIM_AT = {fam: keep + keep // 8 for fam, keep in RETENTION_US.items()}
_CARD_KEEP, _CARD_TRIM_AT = RETENTION_US["card"], _TRIM_AT["card"]


def _position(ts: Sequence[int], ks: list[str], t: int, k: str) -> tuple[int, bool]:
    """Late event: (number of stored events before key (t, k), that key is already stored)."""
    n = len(ts)
    p = bisect_left(ts, t)
    while p < n and ts[p] == t and ks[p] < k:
        p += 1
    return p, (p < n and ts[p] == t and ks[p] == k)


def _card_position(
    ts: Sequence[int], pay: list[tuple[str, Any, Any, Any]], t: int, k: str
) -> tuple[int, bool]:
    """``_position`` for a card, reading ids from ``pay`` in place (no O(n) list of ids)."""
    n = len(ts)
    p = bisect_left(ts, t)
    while p < n and ts[p] == t and pay[p][0] < k:
        p += 1
    return p, (p < n and ts[p] == t and pay[p][0] == k)


#: A late event's novelty check scans at most this many of the card's events before it; see
#: ``_late_new``.
LATE_SCAN = 1024


def _late_new(
    seen: int | None,
    v: Any,
    field: int,
    pay: list[tuple[str, Any, Any, Any]],
    lo: int,
    p: int,
    t: int,
    first: int,
) -> int:
    """Novelty flag (1 = new) of value ``v`` for a late event at time ``t`` and position ``p``.

    ``seen`` is the latest time ``v`` occurred for the card (``None``: never, or forgotten),
    ``first`` the card's oldest retained time and ``lo`` the first position in the event's 30-day
    window. Decided in O(1) unless ``v`` also occurred at or after ``t``: then the window before the
    event is scanned backwards, at most ``LATE_SCAN`` events; a value not found within them (the
    card has ``LATE_SCAN`` events in the window before this one and uses ``v`` since) counts as
    known (0). The exact scan cost O(window) per late event of a busy card on the event loop.
    """
    if seen is None or seen <= t - HORIZON_US or seen < first:  # no retained occurrence in window
        return 1
    if seen < t:  # the latest occurrence is in the window, before the event
        return 0
    stop = max(lo, p - LATE_SCAN)
    j = p - 1
    while j >= stop:
        if pay[j][field] == v:
            return 0
        j -= 1
    return 1 if stop == lo else 0


def _add_tail(sums: MutableSequence[int], start: int, cents: int, square: int) -> None:
    """Add ``cents`` / ``square`` to the interleaved prefix sums from index ``start`` on.

    A late event shifts every later prefix sum: past a few dozen, one strided numpy add over the
    int64 array's buffer (C speed) instead of a Python loop (a day-late event of a card with 200k
    events took 13-28 ms). Python ints (a card past 64 bits) keep the loop.
    """
    n = len(sums)
    if n - start > 64 and isinstance(sums, array):
        import numpy as np

        view = np.frombuffer(sums, dtype=np.int64)
        view[start::2] += cents
        view[start + 1 :: 2] += square
        return
    for j in range(start, n, 2):
        sums[j] += cents
        sums[j + 1] += square


def _seek(ts: Sequence[int], bound: int, hint: int, p: int) -> int:
    """``bisect_right(ts, bound, 0, p)``, searched from a previous answer ``hint`` (<= p).

    In-order events move a window's lower bound by an event or two, so a gallop from the old bound
    touches one or two cache lines where a full search would probe ~log2(n) cold ones.
    """
    if hint < p and ts[hint] <= bound:  # moved forward (the usual case): gallop from the hint
        lo, step = hint + 1, 2
        while lo + step < p and ts[lo + step] <= bound:
            lo += step + 1
            step *= 2
        return bisect_right(ts, bound, lo, min(lo + step, p))
    if hint and ts[hint - 1] > bound:  # moved back: an earlier time than the last in-order one
        return bisect_right(ts, bound, 0, hint - 1)
    return hint


class _Times:
    """One entity's event times (int64 µs) in key order, and their ids for same-timestamp order.

    ``lo0``..``lo2`` are the window lower bounds of the last in-order event, widest window first
    (hints for :func:`_seek`, kept within ``0..len(ts)``; used by the terminal and merchant
    families, whose series are long enough for a full search to cost several cache misses).
    """

    __slots__ = ("ks", "lo0", "lo1", "lo2", "ts")

    def __init__(self, t: int, k: str) -> None:
        self.ts = array("q", (t,))
        self.ks = [k]
        self.lo0 = self.lo1 = self.lo2 = 0

    def trim(self, bound: int) -> None:
        cut = bisect_right(self.ts, bound)
        del self.ts[:cut]
        del self.ks[:cut]
        self.lo0 = max(self.lo0 - cut, 0)
        self.lo1 = max(self.lo1 - cut, 0)
        self.lo2 = max(self.lo2 - cut, 0)


class _Card:
    """One card's events in key order, with everything its family needs.

    ``ts`` holds the times (int64 µs). ``sums`` interleaves the prefix sums of cents and of
    cents² (``sums[2 * i]`` and ``sums[2 * i + 1]`` cover the first ``i`` events: one object, and
    the two sums at a bound share a cache line). ``pay`` holds (transaction_id, device, terminal,
    region) per event, for same-timestamp order and the novelty scan of late events; ``seen_*``
    the latest time each device / terminal / region occurred, so in-order events need no scan.
    """

    __slots__ = ("pay", "seen_dev", "seen_reg", "seen_term", "sums", "ts")

    def __init__(self) -> None:
        self.ts = array("q")
        self.sums: MutableSequence[int] = array("q", (0, 0))
        self.pay: list[tuple[str, Any, Any, Any]] = []
        self.seen_dev: dict[Any, int] = {}
        self.seen_term: dict[Any, int] = {}
        self.seen_reg: dict[Any, int] = {}

    def record(self, p: int, t: int, k: str, cents: int, device: Any, terminal: Any, region: Any) -> None:
        """Store the event at position ``p`` (its place in key order)."""
        square = cents * cents
        ts, sums = self.ts, self.sums
        if sums[-1] + square > _INT64_MAX and isinstance(sums, array):
            # |prefix sum| <= prefix sum of squares, which only grows: past 64 bits, Python ints
            sums = self.sums = list(sums)
        if p == len(ts):  # after every stored event: it is the latest sighting of its values
            ts.append(t)
            self.pay.append((k, device, terminal, region))
            sums.append(sums[-2] + cents)
            sums.append(sums[-2] + square)
            if device is not None:
                self.seen_dev[device] = t
            if terminal is not None:
                self.seen_term[terminal] = t
            if region is not None:
                self.seen_reg[region] = t
        else:
            ts.insert(p, t)
            self.pay.insert(p, (k, device, terminal, region))
            sums.insert(2 * p + 2, sums[2 * p + 1] + square)
            sums.insert(2 * p + 2, sums[2 * p] + cents)
            _add_tail(sums, 2 * p + 4, cents, square)  # later prefix sums now include the event
            for seen, v in ((self.seen_dev, device), (self.seen_term, terminal), (self.seen_reg, region)):
                if v is not None and seen.get(v, t) <= t:
                    seen[v] = t
        if ts[0] <= ts[-1] - _CARD_TRIM_AT:
            self.trim(ts[-1] - _CARD_KEEP)

    def trim(self, bound: int) -> None:
        cut = bisect_right(self.ts, bound)
        del self.ts[:cut]
        del self.sums[: 2 * cut]
        del self.pay[:cut]
        # A last-seen time at or before ``bound`` reads as "not seen" for every later event anyway
        # (the horizon is shorter than the retention), so stale entries are only dropped once a
        # dict holds more of them than there are events left: memory stays bounded, and the
        # frequent trims of a steadily used card do not rebuild three dicts each time.
        n = len(self.ts)
        if len(self.seen_dev) > n:
            self.seen_dev = {v: t for v, t in self.seen_dev.items() if t > bound}
        if len(self.seen_term) > n:
            self.seen_term = {v: t for v, t in self.seen_term.items() if t > bound}
        if len(self.seen_reg) > n:
            self.seen_reg = {v: t for v, t in self.seen_reg.items() if t > bound}


@dataclass(frozen=True)
class StateStats:
    """What the embedded state holds: entities per family, evictions so far, the cap."""

    #: family -> entities held
    entities: dict[str, int]
    #: (family, reason) -> entities evicted since start; reason ``ttl`` (older than the family's
    #: TTL: cannot change any feature) or ``cap`` (``max_entities``: the entity restarts cold)
    evictions: dict[tuple[str, str], int]
    #: the cap per family
    max_entities: int


class EmbeddedBackend:
    """In-process state (the default). Not shared between processes; fast.

    Each family is one step (a bound method or closure over its own tables); ``compute`` runs the
    steps of the requested families, looked up once per family tuple.
    """

    name = "embedded"

    def __init__(self, max_entities: int = DEFAULT_MAX_ENTITIES) -> None:
        if max_entities < 1:
            raise FeatureSpecError(f"max_entities must be >= 1, got {max_entities}")
        self.max_entities = max_entities
        self.families: set[str] = set()
        # Ordered by recency: an entity moves to the end when it records an in-order event, so the
        # front holds the least recent one (TTL sweep and cap both evict from the front).
        self._cards: OrderedDict[Any, _Card] = OrderedDict()
        self._times: dict[str, OrderedDict[Any, _Times]] = {f: OrderedDict() for f in COUNT_WINDOWS}
        #: The store's clock: the newest event time recorded (µs); the TTL sweep is relative to it.
        self.now = -_INT64_MAX
        self._sweep_at = -_INT64_MAX
        #: (family, reason) -> entities evicted; reason "ttl" (expired) or "cap" (max_entities).
        self.evictions: dict[tuple[str, str], int] = {
            (f, r): 0 for f in ("card", *COUNT_WINDOWS) for r in ("ttl", "cap")
        }
        #: family -> entity -> {txid: (label_us, event_us)} (fraud labels only)
        self._labels: dict[str, dict[Any, dict[str, tuple[int, int]]]] = {"terminal": {}, "merchant": {}}
        self._steps: dict[str, Step] = {
            f: self._step_for(f)
            for f in ("tx", "card", "terminal", "merchant", "region", "device", *LAG_FAMILIES)
        }
        self._plans: dict[tuple[str, ...], tuple[Step, ...]] = {}

    def _step_for(self, fam: str) -> Step:
        if fam == "tx":
            return _tx_step
        if fam == "card":
            return self._card
        if fam in ("terminal", "merchant"):
            return self._risk_step(fam)
        if fam in LAG_FAMILIES:
            return self._lag_step(fam)
        return self._activity_step(fam, region_values if fam == "region" else _device_values)

    def adopt(self, other: EmbeddedBackend, families: Sequence[str]) -> None:
        """Take over ``families``' state from ``other`` (built off the hot path): O(families), so
        the caller can do it under the lock the hot path takes without stalling it."""
        for fam in families:
            if fam == "tx" or fam in LAG_FAMILIES:  # no state of their own
                continue
            if fam == "card":
                self._cards = other._cards
            else:
                self._times[fam] = other._times[fam]
                if fam in self._labels:
                    self._labels[fam] = other._labels[fam]
            self._steps[fam] = self._step_for(fam)
            for reason in ("ttl", "cap"):
                self.evictions[(fam, reason)] += other.evictions[(fam, reason)]
        for lag, (ent, _) in LAG_FAMILIES.items():  # their steps read the adopted tables
            if ent in families:
                self._steps[lag] = self._step_for(lag)
        self._plans.clear()
        self.families.update(families)

    # -- state ------------------------------------------------------------------------------
    def has_families(self) -> set[str]:
        return set(self.families)

    def mark_families(self, families: Iterable[str]) -> None:
        self.families.update(families)

    def close(self) -> None:
        pass

    def clear(self) -> None:
        self.__init__(self.max_entities)  # type: ignore[misc]

    def stats(self) -> StateStats:
        """Entities held per family and evictions so far (the service's /metrics reads these)."""
        entities = {"card": len(self._cards), **{f: len(t) for f, t in self._times.items()}}
        return StateStats(entities, dict(self.evictions), self.max_entities)

    # -- bounds -----------------------------------------------------------------------------
    def _tables(self) -> list[tuple[str, OrderedDict[Any, Any]]]:
        return [("card", self._cards), *self._times.items()]

    def sweep(self) -> int:
        """Evict every entity whose newest event is its family's TTL behind the clock; returns how
        many. Runs by itself as the clock advances (every ``SWEEP_EVERY_US``)."""
        evicted = 0
        for fam, table in self._tables():
            bound = self.now - TTL_US[fam]
            n = 0
            while table:
                entity = next(iter(table))
                if table[entity].ts[-1] > bound:  # live: those behind it are too (late arrivals aside)
                    break
                del table[entity]
                self._forget_labels(fam, entity, bound)
                n += 1
            if n:
                self.evictions[(fam, "ttl")] += n
                evicted += n
        return evicted

    def _evict_lru(self, fam: str, table: OrderedDict[Any, Any]) -> None:
        """The cap: drop the family's least recent entity (its features restart cold)."""
        entity, _ = table.popitem(last=False)
        self._forget_labels(fam, entity, None)
        key = (fam, "cap")
        n = self.evictions[key] = self.evictions[key] + 1
        if n & (n - 1) == 0:  # 1, 2, 4, 8, ...: the log stays short under a flood of new ids
            log.warning(
                "online state cap reached: %d %s entities evicted so far (max_entities=%d per family); "
                "an evicted entity restarts cold, so its features may differ from the offline builder's",
                n,
                fam,
                self.max_entities,
            )

    def _forget_labels(self, fam: str, entity: Any, bound: int | None) -> None:
        """Drop an evicted entity's fraud labels (all of them, or those of events before ``bound``)."""
        if fam not in self._labels:
            return
        table = self._labels[fam].get(entity)
        if table is None:
            return
        if bound is not None:
            for key in [key for key, (_, e) in table.items() if e <= bound]:
                del table[key]
            if table:
                return
        del self._labels[fam][entity]

    # -- hot path ---------------------------------------------------------------------------
    def compute(self, ev: Event, families: Sequence[str], update: bool) -> list[float]:
        key = families if isinstance(families, tuple) else tuple(families)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = tuple(self._steps[f] for f in key)
        out: list[float] = []
        for step in plan:
            out += step(ev, update)
        if update and ev[0] > self.now:
            self.now = ev[0]
            if self.now >= self._sweep_at:
                self._sweep_at = self.now + SWEEP_EVERY_US
                self.sweep()
        return out

    def _card(self, ev: Event, update: bool) -> list[float]:
        t, k, cents = ev[0], ev[1], ev[2]
        terminal, region, device = ev[5], ev[7], ev[8]
        cards = self._cards
        s = cards.get(ev[4])
        if s is None:
            if update:
                s = cards[ev[4]] = _Card()
                s.record(0, t, k, cents, device, terminal, region)
                if len(cards) > self.max_entities:
                    self._evict_lru("card", cards)
            zeros = [0, 0, 0, 0]
            new_dev, new_reg = (0 if device is None else 1), (0 if region is None else 1)
            return card_values(cents, zeros, zeros, 0, None, new_dev, 1, new_reg)
        ts = s.ts
        last = ts[-1]
        if last < t or (last == t and s.pay[-1][0] < k):  # in order: the common case
            p = len(ts)
            dup = False
        else:
            p, dup = _card_position(ts, s.pay, t, k)
        # the windows are nested: each lower bound is searched from the next wider one
        lo30 = bisect_right(ts, t - D30, 0, p)
        lo7 = bisect_right(ts, t - D7, lo30, p)
        lo1d = bisect_right(ts, t - D1, lo7, p)
        lo1h = bisect_right(ts, t - H1, lo1d, p)
        if p == len(ts):  # every stored event is earlier: novelty from the last-seen times
            bound = t - HORIZON_US
            seen = s.seen_dev.get(device) if device is not None else None
            new_dev = 0 if device is None or (seen is not None and seen > bound) else 1
            seen = s.seen_term.get(terminal)
            new_term = 0 if seen is not None and seen > bound else 1
            seen = s.seen_reg.get(region) if region is not None else None
            new_reg = 0 if region is None or (seen is not None and seen > bound) else 1
        else:  # late event: from the last-seen times, scanning a bounded stretch if need be
            pay, first = s.pay, ts[0]
            new_dev = (
                0 if device is None else _late_new(s.seen_dev.get(device), device, 1, pay, lo30, p, t, first)
            )
            new_term = _late_new(s.seen_term.get(terminal), terminal, 2, pay, lo30, p, t, first)
            new_reg = (
                0 if region is None else _late_new(s.seen_reg.get(region), region, 3, pay, lo30, p, t, first)
            )
        sums = s.sums
        c, q = sums[2 * p], sums[2 * p + 1]
        values = card_values(
            cents,
            [p - lo1h, p - lo1d, p - lo7, p - lo30],
            [c - sums[2 * lo1h], c - sums[2 * lo1d], c - sums[2 * lo7], c - sums[2 * lo30]],
            q - sums[2 * lo30 + 1],
            t - ts[p - 1] if p > 0 else None,
            new_dev,
            new_term,
            new_reg,
        )
        if update and not dup:
            newest = p == len(ts)
            s.record(p, t, k, cents, device, terminal, region)
            if newest:  # the card's newest event: it becomes the most recent card
                cards.move_to_end(ev[4])
        return values

    def _risk_step(self, fam: str) -> Step:
        """Terminal / merchant: counts over 1 d, 7 d, 30 d and fraud labels known before the event."""
        table = self._times[fam]
        labels = self._labels[fam]
        slot = _FAMILY_SLOT[fam]
        keep, trim_at = RETENTION_US[fam], _TRIM_AT[fam]

        def step(ev: Event, update: bool) -> list[float]:
            entity = ev[slot]
            if entity is None:
                return risk_values(0, 0, 0, 0, 0)
            t, k = ev[0], ev[1]
            s = table.get(entity)
            if s is None:
                if update:
                    table[entity] = _Times(t, k)
                    if len(table) > self.max_entities:
                        self._evict_lru(fam, table)
                c1, c7, c30 = 0, 0, 0
            else:
                ts = s.ts
                last = ts[-1]
                if last < t or (last == t and s.ks[-1] < k):  # in order: the common case
                    p = len(ts)
                    s.lo0 = lo30 = _seek(ts, t - D30, s.lo0, p)
                    s.lo1 = lo7 = _seek(ts, t - D7, s.lo1, p)
                    s.lo2 = lo1 = _seek(ts, t - D1, s.lo2, p)
                    c1, c7, c30 = p - lo1, p - lo7, p - lo30
                    if update:
                        ts.append(t)
                        s.ks.append(k)
                        table.move_to_end(entity)
                        if ts[0] <= t - trim_at:
                            s.trim(t - keep)
                else:
                    p, dup = _position(ts, s.ks, t, k)
                    c30 = p - bisect_right(ts, t - D30, 0, p)
                    c7 = p - bisect_right(ts, t - D7, p - c30, p)
                    c1 = p - bisect_right(ts, t - D1, p - c7, p)
                    if update and not dup:
                        ts.insert(p, t)
                        s.ks.insert(p, k)
                        if ts[0] <= ts[-1] - trim_at:
                            s.trim(ts[-1] - keep)
            known = labels.get(entity)
            f7 = f30 = 0
            if known:
                b7, b30 = t - D7, t - D30
                for label_us, event_us in known.values():
                    if label_us < t and event_us > b30:
                        f30 += 1
                        if event_us > b7:
                            f7 += 1
            return risk_values(c1, c7, c30, f7, f30)

        return step

    def _lag_step(self, fam: str) -> Step:
        """A delayed risk family: reads its entity's event times and fraud labels (kept by the
        entity's own family, which ``families_for`` always computes with it); records nothing."""
        ent, delay = LAG_FAMILIES[fam]
        table = self._times[ent]
        labels = self._labels[ent]
        slot = _FAMILY_SLOT[fam]
        d = DELAYS_US[delay]

        def step(ev: Event, update: bool) -> list[float]:
            entity = ev[slot]
            if entity is None:
                return lag_values(0, 0, 0, 0, 0, 0)
            t = ev[0]
            end = t - d
            n1 = n7 = n30 = 0
            s = table.get(entity)
            if s is not None:
                ts = s.ts
                hi = bisect_right(ts, end)
                lo30 = bisect_right(ts, end - D30, 0, hi)
                lo7 = bisect_right(ts, end - D7, lo30, hi)
                n1 = hi - bisect_right(ts, end - D1, lo7, hi)
                n7, n30 = hi - lo7, hi - lo30
            known = labels.get(entity)
            frauds = _count_delayed(known.values(), t, end) if known else (0, 0, 0)
            return lag_values(n1, n7, n30, *frauds)

        return step

    def _activity_step(self, fam: str, values: Callable[[int, int], list[float]]) -> Step:
        """Region / device: counts over 1 h and 1 d."""
        table = self._times[fam]
        slot = _FAMILY_SLOT[fam]
        keep, trim_at = RETENTION_US[fam], _TRIM_AT[fam]

        def step(ev: Event, update: bool) -> list[float]:
            entity = ev[slot]
            if entity is None:
                return values(0, 0)
            t, k = ev[0], ev[1]
            s = table.get(entity)
            if s is None:
                if update:
                    table[entity] = _Times(t, k)
                    if len(table) > self.max_entities:
                        self._evict_lru(fam, table)
                return values(0, 0)
            ts = s.ts
            last = ts[-1]
            if last < t or (last == t and s.ks[-1] < k):  # in order: the common case
                p = len(ts)
                c1d = p - bisect_right(ts, t - D1, 0, p)
                c1h = p - bisect_right(ts, t - H1, p - c1d, p)
                if update:
                    ts.append(t)
                    s.ks.append(k)
                    table.move_to_end(entity)
                    if ts[0] <= t - trim_at:
                        s.trim(t - keep)
            else:
                p, dup = _position(ts, s.ks, t, k)
                c1d = p - bisect_right(ts, t - D1, 0, p)
                c1h = p - bisect_right(ts, t - H1, p - c1d, p)
                if update and not dup:
                    ts.insert(p, t)
                    s.ks.insert(p, k)
                    if ts[0] <= ts[-1] - trim_at:
                        s.trim(ts[-1] - keep)
            return values(c1h, c1d)

        return step

    # -- labels and bulk loads --------------------------------------------------------------
    def add_label(self, txid: str, event_us: int, label_us: int, terminal: Any, merchant: Any) -> None:
        label_us = max(label_us, event_us)
        for fam, entity in (("terminal", terminal), ("merchant", merchant)):
            if entity is None:
                continue
            table = self._labels[fam].setdefault(entity, {})
            old = table.get(txid)
            if old is None or label_us < old[0]:
                table[txid] = (label_us, event_us)
            if len(table) > 64 and len(table) % 64 == 0:  # drop labels past the horizon
                bound = event_us - RETENTION_US[fam]
                for key in [key for key, (_, e) in table.items() if e <= bound]:
                    del table[key]

    def backfill(self, events: Iterable[Event], families: Sequence[str]) -> int:
        n = 0
        steps = [self._steps[f] for f in families if f != "tx" and f not in LAG_FAMILIES]
        for ev in events:
            n += 1
            for step in steps:
                step(ev, True)
        return n


def _tx_step(ev: Event, update: bool) -> list[float]:
    return tx_values(ev[3], ev[0])


def _device_values(c1h: int, c1d: int) -> list[float]:
    return [float(c1h), float(c1d)]


# ---------------------------------------------------------------------------------------------
# Redis backend
# ---------------------------------------------------------------------------------------------
_SEP = "\x00"
#: Key TTLs, set on every write: Redis expires an entity idle for its family's TTL. Wall-clock
#: time, so this assumes event time does not run slower than the wall clock (production traffic);
#: Redis's own ``maxmemory`` policy is the size cap for the shared store.
_TTL_MS = {fam: ttl // 1000 for fam, ttl in TTL_US.items()}


def _scan_card(
    rows: Sequence[tuple[int, str, int, Any, Any, Any]],
    t: int,
    k: str,
    cents: int,
    device: Any,
    terminal: Any,
    region: Any,
) -> list[float]:
    """Card family from an unordered list of (t, txid, cents, device, terminal, region) rows."""
    counts = [0, 0, 0, 0]
    sums = [0, 0, 0, 0]
    q30 = 0
    last: int | None = None
    new_dev = 0 if device is None else 1
    new_term = 1
    new_reg = 0 if region is None else 1
    b1, b2, b3, b4 = t - H1, t - D1, t - D7, t - D30
    for tj, kj, cj, dj, tej, rj in rows:
        if tj > t or (tj == t and kj >= k) or tj <= b4:
            continue
        counts[3] += 1
        sums[3] += cj
        q30 += cj * cj
        if tj > b3:
            counts[2] += 1
            sums[2] += cj
            if tj > b2:
                counts[1] += 1
                sums[1] += cj
                if tj > b1:
                    counts[0] += 1
                    sums[0] += cj
        if last is None or tj > last:
            last = tj
        if device is not None and dj == device:
            new_dev = 0
        if tej == terminal:
            new_term = 0
        if region is not None and rj == region:
            new_reg = 0
    return card_values(
        cents, counts, sums, q30, None if last is None else t - last, new_dev, new_term, new_reg
    )


def _enc(v: Any) -> str:
    return "" if v is None else str(v)


def _dec(v: str) -> Any:
    return None if v == "" else v


class RedisBackend:
    """Shared state in Redis for several scoring replicas; one round trip per request."""

    name = "redis"

    def __init__(self, url: str, prefix: str = "fraudops:features", client: Any = None) -> None:
        import redis

        self.url = url
        self.prefix = prefix
        # Any: redis-py types replies as the union of its sync and async clients' results.
        self.r: Any = client or redis.Redis.from_url(url, decode_responses=True)

    def _key(self, fam: str, entity: Any) -> str:
        return f"{self.prefix}:{fam}:{entity}"

    def has_families(self) -> set[str]:
        return set(self.r.smembers(f"{self.prefix}:families"))

    def mark_families(self, families: Iterable[str]) -> None:
        fams = list(families)
        if fams:
            self.r.sadd(f"{self.prefix}:families", *fams)

    def close(self) -> None:
        self.r.close()

    def stats(self) -> StateStats | None:
        """None: Redis expires keys itself (its INFO keyspace shows them)."""
        return None

    def clear(self) -> None:
        keys = list(self.r.scan_iter(f"{self.prefix}:*", count=1000))
        for i in range(0, len(keys), 1000):
            self.r.delete(*keys[i : i + 1000])

    def compute(self, ev: Event, families: Sequence[str], update: bool) -> list[float]:
        t, k, cents = ev[0], ev[1], ev[2]
        pipe = self.r.pipeline(transaction=False)
        plan: list[tuple[str, Any]] = []
        for fam in families:
            if fam == "tx":
                continue
            entity = ev[_FAMILY_SLOT[fam]]
            if fam in LAG_FAMILIES:  # reads its entity's keys; writes nothing
                if entity is not None:
                    ent, delay = LAG_FAMILIES[fam]
                    end = t - DELAYS_US[delay]
                    key = self._key(ent, entity)
                    for w in (D1, D7, D30):
                        pipe.zcount(key, f"({end - w}", end)
                    pipe.zrangebyscore(
                        self._key(ent + "_labels", entity), f"({end - D30}", end, withscores=True
                    )
                continue
            plan.append((fam, entity))
            if entity is None:
                continue
            key = self._key(fam, entity)
            if fam == "card":
                pipe.zrangebyscore(key, f"({t - D30}", t, withscores=True)
                continue
            for w in COUNT_WINDOWS[fam]:
                pipe.zcount(key, f"({t - w}", f"({t}")
            pipe.zrangebyscore(key, t, t)  # same-timestamp members: ordered by transaction_id
            if fam in ("terminal", "merchant"):
                pipe.zrangebyscore(
                    self._key(fam + "_labels", entity), f"({t - D30}", f"({t}", withscores=True
                )
        if update:
            for fam, entity in plan:
                if entity is None:
                    continue
                key = self._key(fam, entity)
                if fam == "card":
                    member = _SEP.join((k, str(cents), _enc(ev[8]), _enc(ev[5]), _enc(ev[7])))
                else:
                    member = k
                pipe.zadd(key, {member: t})
                pipe.zremrangebyscore(key, "-inf", t - RETENTION_US[fam])
                pipe.pexpire(key, _TTL_MS[fam])
        results = pipe.execute() if len(pipe) else []
        out: list[float] = []
        i = 0
        for fam in families:
            if fam == "tx":
                out += tx_values(ev[3], t)
                continue
            entity = ev[_FAMILY_SLOT[fam]]
            if fam in LAG_FAMILIES:
                if entity is None:
                    out += lag_values(0, 0, 0, 0, 0, 0)
                    continue
                n1, n7, n30 = (int(c) for c in results[i : i + 3])
                end = t - DELAYS_US[LAG_FAMILIES[fam][1]]
                out += lag_values(
                    n1, n7, n30, *_count_delayed(_first_labels(results[i + 3]).values(), t, end)
                )
                i += 4
                continue
            if fam == "card":
                rows = []
                for member, score in results[i]:
                    kj, cj, dj, tej, rj = member.split(_SEP)
                    rows.append((int(score), kj, int(cj), _dec(dj), _dec(tej), _dec(rj)))
                i += 1
                out += _scan_card(rows, t, k, cents, ev[8], ev[5], ev[7])
                continue
            windows = COUNT_WINDOWS[fam]
            if entity is None:
                counts = [0] * len(windows)
                frauds = (0, 0)
            else:
                ties = sum(1 for m in results[i + len(windows)] if m < k)
                counts = [int(c) + ties for c in results[i : i + len(windows)]]
                i += len(windows) + 1
                frauds = (0, 0)
                if fam in ("terminal", "merchant"):
                    frauds = _count_frauds(results[i], t)
                    i += 1
            if fam == "region":
                out += region_values(counts[0], counts[1])
            elif fam == "device":
                out += [float(counts[0]), float(counts[1])]
            else:
                out += risk_values(counts[0], counts[1], counts[2], frauds[0], frauds[1])
        return out

    def add_label(self, txid: str, event_us: int, label_us: int, terminal: Any, merchant: Any) -> None:
        label_us = max(label_us, event_us)
        pipe = self.r.pipeline(transaction=False)
        for fam, entity in (("terminal", terminal), ("merchant", merchant)):
            if entity is None:
                continue
            key = self._key(fam + "_labels", entity)
            pipe.zadd(key, {f"{txid}{_SEP}{label_us}": event_us})
            pipe.zremrangebyscore(key, "-inf", event_us - RETENTION_US[fam])
            pipe.pexpire(key, _TTL_MS[fam])
        pipe.execute()

    def add_labels(self, labels: Iterable[tuple[str, int, int, Any, Any]]) -> None:
        """Add fraud labels in chunks of 5,000. Idempotent: a label is a set member (transaction,
        label time), so a feed killed between chunks and run again ends as if it ran once."""
        from fraudops.faults import crash_point

        pipe = self.r.pipeline(transaction=False)
        for n, (txid, event_us, label_us, terminal, merchant) in enumerate(labels, 1):
            label_us = max(label_us, event_us)
            for fam, entity in (("terminal", terminal), ("merchant", merchant)):
                if entity is not None:
                    key = self._key(fam + "_labels", entity)
                    pipe.zadd(key, {f"{txid}{_SEP}{label_us}": event_us})
                    pipe.pexpire(key, _TTL_MS[fam])
            if n % 5000 == 0:
                pipe.execute()
                crash_point("labels:after_chunk")
        pipe.execute()

    def backfill(self, events: Iterable[Event], families: Sequence[str]) -> int:
        pipe = self.r.pipeline(transaction=False)
        n = 0
        fams = [f for f in families if f != "tx" and f not in LAG_FAMILIES]
        for ev in events:
            n += 1
            t, k = ev[0], ev[1]
            for fam in fams:
                entity = ev[_FAMILY_SLOT[fam]]
                if entity is None:
                    continue
                if fam == "card":
                    member = _SEP.join((k, str(ev[2]), _enc(ev[8]), _enc(ev[5]), _enc(ev[7])))
                else:
                    member = k
                key = self._key(fam, entity)
                pipe.zadd(key, {member: t})
                pipe.pexpire(key, _TTL_MS[fam])
            if n % 2000 == 0:
                pipe.execute()
        pipe.execute()
        return n


def _first_labels(rows: Sequence[tuple[str, float]]) -> dict[str, tuple[int, int]]:
    """txid -> (earliest label_us, event_us) of label members ``txid<SEP>label_us`` (score = event)."""
    first: dict[str, tuple[int, int]] = {}
    for member, score in rows:
        txid, label = member.split(_SEP)
        label_us = int(label)
        old = first.get(txid)
        if old is None or label_us < old[0]:
            first[txid] = (label_us, int(score))
    return first


def _count_delayed(labels: Iterable[tuple[int, int]], t: int, end: int) -> tuple[int, int, int]:
    """Of (label_us, event_us) fraud labels, those known before ``t`` of events in ``(end - w, end]``
    for w = 1 d, 7 d, 30 d (embedded and Redis backends alike)."""
    f1 = f7 = f30 = 0
    b1, b7, b30 = end - D1, end - D7, end - D30
    for label_us, event_us in labels:
        if label_us < t and b30 < event_us <= end:
            f30 += 1
            if event_us > b7:
                f7 += 1
                if event_us > b1:
                    f1 += 1
    return f1, f7, f30


def _count_frauds(rows: Sequence[tuple[str, float]], t: int) -> tuple[int, int]:
    first = _first_labels(rows)
    b7 = t - D7
    f7 = f30 = 0
    for label_us, event_us in first.values():
        if label_us < t:
            f30 += 1
            if event_us > b7:
                f7 += 1
    return f7, f30


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------
class OnlineFeatureStore:
    """Exactly ``spec``'s vector for each event, from incremental per-entity state."""

    def __init__(
        self,
        spec: FeatureSpec | None = None,
        backend: EmbeddedBackend | RedisBackend | None = None,
        registry: FeatureRegistry | None = None,
    ) -> None:
        self.registry = registry
        self.backend = backend if backend is not None else EmbeddedBackend()
        self._configure(spec or FeatureSpec.default(registry))
        self.backend.mark_families(self.families)

    def _configure(self, spec: FeatureSpec) -> None:
        resolve(spec, self.registry)  # refuses missing / mismatched features, naming each
        fams = families_for(spec.names)
        layout = [name for fam in fams for name in FAMILY_FEATURES[fam]]
        self.spec = spec
        self.families: tuple[str, ...] = tuple(fams)
        index = [layout.index(n) for n in spec.names]
        #: None when the spec asks for whole families in layout order (nothing to pick)
        self._index: list[int] | None = None if index == list(range(len(layout))) else index

    @property
    def feature_names(self) -> list[str]:
        return self.spec.names

    def update_and_vector(self, tx: Mapping[str, Any]) -> list[float]:
        """Record ``tx`` in the state and return its feature vector (computed before recording)."""
        values = self.backend.compute(event_from_mapping(tx), self.families, True)
        index = self._index
        return values if index is None else [values[i] for i in index]

    def vector(self, tx: Mapping[str, Any]) -> list[float]:
        """The vector ``tx`` would get, without recording it."""
        values = self.backend.compute(event_from_mapping(tx), self.families, False)
        index = self._index
        return values if index is None else [values[i] for i in index]

    def add_label(
        self,
        transaction_id: str,
        event_time: Any,
        label_time: Any,
        is_fraud: object,  # any truthy value (numpy bools from frames included)
        terminal_id: Any,
        merchant_id: Any = None,
    ) -> None:
        """Record a label; it counts for events later than ``label_time`` (genuine labels are ignored)."""
        if not is_fraud:
            return
        self.backend.add_label(
            str(transaction_id),
            to_us(event_time),
            to_us(label_time),
            _clean(terminal_id),
            _clean(merchant_id),
        )

    # -- warm start -------------------------------------------------------------------------
    def backfill(
        self,
        transactions: pd.DataFrame,
        labels: pd.DataFrame | None = None,
        families: Sequence[str] | None = None,
    ) -> int:
        """Load history (transactions before the first live event, labels already known)."""
        fams = list(families if families is not None else self.families)
        n = _load_history(self.backend, transactions, labels, fams)
        self.backend.mark_families(fams)
        return n

    def warm_from_warehouse(
        self,
        warehouse: Warehouse,
        as_of: dt.datetime,
        families: Sequence[str] | None = None,
        history_days: int | None = None,
    ) -> int:
        """Backfill from the warehouse: transactions in [as_of - history, as_of) (default: the
        families' look-back, 30 days plus the largest label delay), labels known by as_of."""
        from fraudops.features.offline import load_window

        fams = list(families if families is not None else self.families)
        need = lookback_days(fams)
        history_days = need if history_days is None else history_days
        if history_days < need:
            raise FeatureSpecError(f"history_days must be >= {need} (the families' longest look-back)")
        tx, labels = load_window(warehouse, as_of, as_of, history_days)
        return self.backfill(tx, labels, fams)

    def activate(
        self,
        spec: FeatureSpec,
        *,
        warehouse: Warehouse | None = None,
        as_of: dt.datetime | None = None,
        transactions: pd.DataFrame | None = None,
        labels: pd.DataFrame | None = None,
    ) -> list[str]:
        """Switch to ``spec``; families it adds are backfilled first so they never start cold.

        Returns the families that were backfilled. Refuses (``FeatureSpecError``) when new state is
        needed and no history source (warehouse + as_of, or frames) is given.
        """
        resolve(spec, self.registry)
        new = [f for f in families_for(spec.names) if f != "tx" and f not in self.backend.has_families()]
        if new:
            if transactions is not None:
                self.backfill(transactions, labels, new)
            elif warehouse is not None and as_of is not None:
                self.warm_from_warehouse(warehouse, as_of, new)
            else:
                raise FeatureSpecError(
                    f"activating {spec.id} needs state for {new}: "
                    "pass warehouse and as_of (or frames) to backfill"
                )
        self._configure(spec)
        self.backend.mark_families(self.families)
        return new

    # -- widening off the hot path ------------------------------------------------------------
    def prepare(self, spec: FeatureSpec, transactions: pd.DataFrame, labels: pd.DataFrame | None) -> Prepared:
        """Build the state ``spec`` adds from history, *without* touching what the hot path reads.

        Embedded state: into a scratch backend, adopted by ``commit``. Redis: into the new
        families' own keys, which no live event reads until ``commit`` switches the spec. Events
        the store records meanwhile are the caller's to keep and hand to ``commit``.
        """
        resolve(spec, self.registry)
        new = [f for f in families_for(spec.names) if f != "tx" and f not in self.backend.has_families()]
        target: EmbeddedBackend | RedisBackend = (
            EmbeddedBackend(self.backend.max_entities)
            if isinstance(self.backend, EmbeddedBackend)
            else self.backend
        )
        n = _load_history(target, transactions, labels, new) if new else 0
        return Prepared(spec, tuple(new), target, n)

    def commit(self, prepared: Prepared, since: Sequence[Mapping[str, Any]] = ()) -> list[str]:
        """Switch to the prepared spec: replay ``since`` (events recorded after the history was read;
        replaying one the history held changes nothing) into the new families, adopt them, switch.
        Costs O(len(since)): call it under the hot path's lock."""
        new = list(prepared.families)
        if new:
            if since:
                prepared.backend.backfill([event_from_mapping(tx) for tx in since], new)
            if prepared.backend is not self.backend:
                assert isinstance(self.backend, EmbeddedBackend) and isinstance(
                    prepared.backend, EmbeddedBackend
                )
                self.backend.adopt(prepared.backend, new)
        self._configure(prepared.spec)
        self.backend.mark_families(self.families)
        return new


@dataclass(frozen=True)
class Prepared:
    """State for a wider spec, built off the hot path (``OnlineFeatureStore.prepare``)."""

    spec: FeatureSpec
    #: The families it adds (their state is in ``backend``).
    families: tuple[str, ...]
    backend: EmbeddedBackend | RedisBackend
    #: History transactions loaded.
    events: int


def _load_history(
    backend: EmbeddedBackend | RedisBackend,
    transactions: pd.DataFrame,
    labels: pd.DataFrame | None,
    fams: Sequence[str],
) -> int:
    n = backend.backfill(events_from_frame(transactions), fams)
    if labels is not None and any(f in fams for f in ("terminal", "merchant")):
        label_rows = labels_from_frame(labels, transactions)
        if isinstance(backend, RedisBackend):
            backend.add_labels(label_rows)
        else:
            for row in label_rows:
                backend.add_label(*row)
    return n
