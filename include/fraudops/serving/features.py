"""One online feature computation per event, shared by every loaded model.

Why a router: the champion, the previous champion (kept for fallback) and the challengers may
declare different feature specs. The online store is configured with the *union* of their
features (in registry order), so each event updates the per-entity state exactly once and every
model receives a slice of that one vector; a challenger in the shadow pool therefore sees exactly
the inputs production computed. Two loaded models asking for different *versions* of one feature
cannot share a vector: such a model is refused (``FeatureSpecError``) and never loaded.
The union only grows while the service runs (dropping a family would discard warm state).

Shared state (Redis, the ``scale`` profile) can become unreachable. Scoring then goes on in
*degraded* mode: the replica computes features from a local embedded store that starts empty at
the outage (each entity's history is what this replica saw since), counts every such event and
keeps it (up to ``OUTAGE_EVENTS``); a recovery thread pings Redis and, once it answers, writes the
kept events to it (idempotent: an event is a sorted-set member keyed by its transaction id), then
switches back. Redis's own persistence (append-only file) brings back what it held before.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fraudops.exceptions import FeatureSpecError
from fraudops.features.spec import FeatureSpec

if TYPE_CHECKING:
    from fraudops.features.online import OnlineFeatureStore, StateStats
    from fraudops.warehouse import Warehouse

log = logging.getLogger(__name__)

#: Live events kept for a widening's catch-up (a few seconds of traffic at the demo's rate and
#: more than the warehouse writer's micro-batch interval at production rates).
RECENT_EVENTS = 4096
#: How far before the newest fed label each label sync reads again (the event log's late writes).
LABEL_OVERLAP = dt.timedelta(days=1)
#: Events scored during a shared-state outage kept for the replay (older ones are dropped, counted).
OUTAGE_EVENTS = 500_000


def _state_unreachable(err: BaseException) -> bool:
    """True for the errors of an unreachable Redis (connection refused or lost, timeout)."""
    try:
        import redis
    except ImportError:  # no Redis client: no shared state either
        return False
    return isinstance(err, (redis.ConnectionError, redis.TimeoutError))


class FeatureRouter:
    """The union-spec online store plus the slice of the union vector each spec needs."""

    def __init__(
        self,
        *,
        warehouse: Warehouse | None = None,
        warm_days: float = 30.0,
        backend: Any = None,
        max_entities: int | None = None,
        on_degraded: Callable[[], None] | None = None,
        on_replayed: Callable[[int], None] | None = None,
    ) -> None:
        self.warehouse = warehouse
        self.max_entities = max_entities
        #: Set while the shared state is unreachable: the local store scoring goes on with.
        self._fallback: OnlineFeatureStore | None = None
        self._outage: deque[Mapping[str, Any]] = deque(maxlen=OUTAGE_EVENTS)
        self.outage: dict[str, Any] = {"degraded": False, "events": 0, "replayed": 0, "outages": 0}
        self._on_degraded = on_degraded
        self._on_replayed = on_replayed
        self.warm_days = warm_days
        if backend is None and max_entities is not None:
            from fraudops.features.online import EmbeddedBackend

            backend = EmbeddedBackend(max_entities)
        self.backend = backend
        self.store: OnlineFeatureStore | None = None
        self.union: FeatureSpec | None = None
        self._slices: dict[str, list[int] | None] = {}
        #: Every spec the router has served (its slice must survive a widening of the union).
        self._specs: dict[str, FeatureSpec] = {}
        #: Newest event time seen (the "now" of accelerated simulated traffic).
        self.last_event: dt.datetime | None = None
        # The event loop computes vectors while the alias watcher may widen the union.
        self.lock = threading.Lock()
        self._widening = threading.Lock()
        #: Live events seen while a widening builds its state off the lock (None: not widening).
        self._recording: list[Mapping[str, Any]] | None = None
        #: The newest live events (references to the request bodies): replayed into a widening's
        #: new families too, so events scored before it began but not yet in the warehouse (its
        #: event log arrives in micro-batches) are not missing from their history.
        self._recent: deque[Mapping[str, Any]] = deque(maxlen=RECENT_EVENTS)
        #: What the last widening cost (``/version`` shows it).
        self.last_widening: dict[str, Any] | None = None
        #: Fraud labels with ``label_time`` before this are in the store (None: not warmed yet).
        self.labels_since: dt.datetime | None = None

    # -- configuration (watcher thread) -----------------------------------------------------
    def ensure(self, specs: Sequence[FeatureSpec]) -> None:
        """Make the union cover ``specs`` (backfilling new families); refuse version conflicts."""
        from fraudops.features.definitions import REGISTRY
        from fraudops.features.online import OnlineFeatureStore

        wanted: dict[str, int] = dict(self.union.features) if self.union else {}
        for spec in specs:
            for name, version in spec.features:
                if wanted.get(name, version) != version:
                    raise FeatureSpecError(
                        f"feature {name} is needed at v{version} by spec {spec.id} but at "
                        f"v{wanted[name]} by another loaded model: one online vector cannot serve both"
                    )
                wanted[name] = version
        order = {d.name: i for i, d in enumerate(REGISTRY.definitions)}
        union = FeatureSpec(tuple(sorted(wanted.items(), key=lambda kv: order.get(kv[0], 1 << 30))))
        if self.union is not None and union.id == self.union.id:
            self._add_slices(specs)
            return
        with self._widening:  # one widening at a time (watcher and control API threads)
            if self.store is None:
                # Nothing is served before the first store exists: no hot path to protect.
                store = OnlineFeatureStore(union, self.backend)
                warm_key = self._shared_warm_key(union)
                if warm_key is not None and self.backend.r.exists(warm_key):
                    # Shared state another replica already warmed (and keeps current): only the
                    # clock and the label feed's start are this replica's own.
                    self._clock_from_warehouse()
                    log.info("online store: shared state already warmed (%s)", warm_key)
                else:
                    tx, labels = self._history(union)
                    n = store.backfill(tx, labels) if len(tx) else 0
                    if warm_key is not None:
                        self.backend.r.set(warm_key, str(n))
                    log.info("online store warmed with %d transactions", n)
                with self.lock:
                    self.store = store
                    self._set_union(union, specs)
                return
            # Finding 3 of issue #18: reading 30 days of history and backfilling the new families
            # happen here, off the hot path's lock; live events are recorded meanwhile and replayed
            # into the new state under the lock, which then only swaps references.
            t0 = time.perf_counter()
            with self.lock:
                self._recording = []
                backlog = list(self._recent)
            try:
                tx, labels = self._history(union)
                prepared = self.store.prepare(union, tx, labels)
            except BaseException:
                with self.lock:
                    self._recording = None
                raise
            t1 = time.perf_counter()
            with self.lock:
                since, self._recording = backlog + (self._recording or []), None
                new = self.store.commit(prepared, since)
                self._set_union(union, specs)
            t2 = time.perf_counter()
            self.last_widening = {
                "union": union.id,
                "families": new,
                "history_events": prepared.events,
                "replayed_events": len(since),
                "off_lock_s": round(t1 - t0, 3),
                "under_lock_s": round(t2 - t1, 4),
            }
            log.info("online feature union widened: %s", self.last_widening)

    def _shared_warm_key(self, union: FeatureSpec) -> str | None:
        """The key marking shared (Redis) state as warmed for ``union`` (set after the backfill
        completes, so a replica killed halfway leaves it unset); None for embedded state."""
        from fraudops.features.online import RedisBackend

        if not isinstance(self.backend, RedisBackend) or self.warehouse is None or self.warm_days <= 0:
            return None
        return f"{self.backend.prefix}:warmed:{union.id}"

    def _clock_from_warehouse(self) -> None:
        """The simulated clock and the label feed's start, without reading the history."""
        assert self.warehouse is not None
        newest = self.warehouse.newest_event_time()
        now = dt.datetime.now(dt.UTC) if newest is None else newest + dt.timedelta(microseconds=1)
        if newest is not None:
            self.last_event = newest
        if self.labels_since is None:
            self.labels_since = now

    def _set_union(self, union: FeatureSpec, specs: Sequence[FeatureSpec]) -> None:
        """Switch to ``union`` (under the hot path's lock): the positions of every feature may move,
        so the slices of every spec served so far are rebuilt, not only those of ``specs``."""
        self.union = union
        self._specs.update((spec.id, spec) for spec in specs)
        self._slices = self._slices_for(list(self._specs.values()))

    def _history(self, spec: FeatureSpec) -> tuple[Any, Any]:
        """What the store is warmed with: the warehouse's last ``warm_days`` (at least ``spec``'s
        look-back: 30 days plus its largest label delay), or nothing."""
        import pandas as pd

        from fraudops.features.offline import LABEL_COLUMNS, TX_COLUMNS

        if self.warehouse is not None and self.warm_days > 0:
            from fraudops.features.definitions import families_for, lookback_days

            days = max(self.warm_days, lookback_days(families_for(spec.names)))
            return self._window(self.last_event or dt.datetime.now(dt.UTC), days)
        return pd.DataFrame(columns=list(TX_COLUMNS)), pd.DataFrame(columns=list(LABEL_COLUMNS))

    def _window(self, now: dt.datetime, days: float) -> tuple[Any, Any]:
        """Transactions of the last ``days`` before the newest one, and labels known by then."""
        from fraudops.features.offline import load_window

        assert self.warehouse is not None
        if self.last_event is None:
            newest = self.warehouse.newest_event_time()
            if newest is None:
                return load_window(self.warehouse, now, now, 0)
            now = newest + dt.timedelta(microseconds=1)
            self.last_event = newest
        if self.labels_since is None:  # the warm-up loads the labels known by ``now``
            self.labels_since = now
        return load_window(self.warehouse, now, now, days)

    # -- labels (label feed thread) ---------------------------------------------------------
    def sync_labels(self) -> int:
        """Feed the fraud labels that reached the warehouse since the last sync into the store.

        Why: the risk features count fraud labels known before each event (``label_time < t``),
        and the offline builder sees every label the warehouse holds. A store that only knew the
        labels of its warm-up would drift away from training as the service runs (fresh-clone run
        6: the 7-day terminal and merchant fraud features of live traffic were far from the
        retrained challenger's reference, and the drift check rejected it). Labels are read with
        an overlap of ``LABEL_OVERLAP`` before the newest one already fed (late writes of the
        event log); adding a known label again changes nothing. A label that arrives after events
        later than its ``label_time`` were scored counts only from then on (the poll interval is
        the skew). Returns the fraud labels new since the last sync (re-reads not counted).
        """
        if self.warehouse is None or self.store is None or self.labels_since is None:
            return 0
        from fraudops.features.online import RedisBackend, labels_from_frame

        wh = self.warehouse
        frame = wh.query_df(
            f"SELECT l.transaction_id, l.event_time, l.label_time, l.is_fraud, t.terminal_id, "
            f"t.merchant_id FROM `{wh.table_id('labels')}` AS l JOIN `{wh.table_id('transactions')}` AS t "
            "ON t.transaction_id = l.transaction_id WHERE l.is_fraud AND l.label_time >= @since",
            {"since": self.labels_since - LABEL_OVERLAP},
        )
        if frame.empty:
            return 0
        rows = labels_from_frame(frame, frame)
        # A widening in progress adopts its families' labels first (``_widening``).
        with self._widening, self.lock:
            backend = self.store.backend
            if isinstance(backend, RedisBackend):
                backend.add_labels(rows)
            else:
                for row in rows:
                    backend.add_label(*row)
        before = self.labels_since
        fresh = int((frame["label_time"] > before).sum())
        self.labels_since = max(before, frame["label_time"].max().to_pydatetime())
        return fresh

    def _add_slices(self, specs: Sequence[FeatureSpec]) -> None:
        self._specs.update((spec.id, spec) for spec in specs)
        self._slices = {**self._slices, **self._slices_for(specs)}

    def _slices_for(self, specs: Sequence[FeatureSpec]) -> dict[str, list[int] | None]:
        assert self.union is not None
        pos = {n: i for i, n in enumerate(self.union.names)}
        out: dict[str, list[int] | None] = {}
        for spec in specs:
            idx = [pos[n] for n in spec.names]
            out[spec.id] = None if idx == list(range(len(pos))) else idx
        return out

    # -- hot path ---------------------------------------------------------------------------
    def compute(self, tx: Mapping[str, Any]) -> list[float]:
        """Record ``tx`` and return the union vector (computed before recording)."""
        with self.lock:
            assert self.store is not None
            if self._fallback is not None:
                vector = self._degraded(tx)
            else:
                try:
                    vector = self.store.update_and_vector(tx)
                except Exception as err:
                    if not _state_unreachable(err):
                        raise
                    self._begin_outage(err)
                    vector = self._degraded(tx)
            self._recent.append(tx)
            if self._recording is not None:
                self._recording.append(tx)
        t = tx["event_time"]
        if self.last_event is None or t > self.last_event:
            self.last_event = t
        return vector

    # -- shared-state outage ------------------------------------------------------------------
    def _begin_outage(self, err: BaseException) -> None:
        """Switch to a local store (caller holds ``lock``) and start the recovery thread."""
        from fraudops.features.online import EmbeddedBackend, OnlineFeatureStore

        assert self.union is not None
        log.error("shared online state unreachable (%s): scoring with degraded features", err)
        self._fallback = OnlineFeatureStore(self.union, EmbeddedBackend(self.max_entities or 1_000_000))
        self.outage.update(degraded=True, outages=self.outage["outages"] + 1, since=time.time())
        threading.Thread(target=self._recover, name="state-recovery", daemon=True).start()

    def _degraded(self, tx: Mapping[str, Any]) -> list[float]:
        assert self._fallback is not None
        vector = self._fallback.update_and_vector(tx)
        if len(self._outage) == OUTAGE_EVENTS:  # the oldest kept event falls out: never replayed
            self.outage["dropped"] = self.outage.get("dropped", 0) + 1
        self._outage.append(tx)
        self.outage["events"] += 1
        if self._on_degraded is not None:
            self._on_degraded()
        return vector

    def _recover(self) -> None:
        """Ping the shared state until it answers; write the outage's events to it (off the lock,
        then the few that arrived meanwhile under it) and switch back."""
        from fraudops.features.online import event_from_mapping

        assert self.store is not None
        backend: Any = self.store.backend  # a RedisBackend: only shared state has outages
        families = [f for f in self.store.families if f != "tx"]
        while True:
            time.sleep(0.5)
            try:
                backend.r.ping()
            except Exception:
                continue
            with self.lock:
                batch = list(self._outage)
                self._outage.clear()
            rest: list[Mapping[str, Any]] = []
            try:
                backend.backfill([event_from_mapping(t) for t in batch], families)
                with self.lock:
                    rest = list(self._outage)
                    self._outage.clear()
                    backend.backfill([event_from_mapping(t) for t in rest], families)
                    self._fallback = None
                    replayed = len(batch) + len(rest)
                    self.outage.update(degraded=False, replayed=self.outage["replayed"] + replayed)
                    self.outage.pop("since", None)
            except Exception as err:  # gone again: what was taken goes back, oldest first
                if not _state_unreachable(err):
                    log.exception("replaying the outage's events failed; trying again")
                with self.lock:
                    self._outage.extendleft(reversed(batch + rest))
                continue
            log.warning("shared online state back: %d events of the outage replayed into it", replayed)
            if self._on_replayed is not None:
                self._on_replayed(replayed)
            return

    @property
    def backend_name(self) -> str:
        """``redis`` or ``embedded``: where the online state lives."""
        store = self.store
        backend = self.backend if store is None else store.backend
        return str(getattr(backend, "name", "embedded"))

    def stats(self) -> StateStats | None:
        """The online state's entity counts and evictions (None: not started, or Redis)."""
        store = self.store
        return None if store is None else store.backend.stats()

    def slice(self, union_vector: list[float], spec_id: str) -> list[float]:
        idx = self._slices[spec_id]
        return union_vector if idx is None else [union_vector[i] for i in idx]
