"""One online feature computation per event, shared by every loaded model.

Why a router: the champion, the previous champion (kept for fallback) and the challengers may
declare different feature specs. The online store is configured with the *union* of their
features (in registry order), so each event updates the per-entity state exactly once and every
model receives a slice of that one vector; a challenger in the shadow pool therefore sees exactly
the inputs production computed. Two loaded models asking for different *versions* of one feature
cannot share a vector: such a model is refused (``FeatureSpecError``) and never loaded.
The union only grows while the service runs (dropping a family would discard warm state).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
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


class FeatureRouter:
    """The union-spec online store plus the slice of the union vector each spec needs."""

    def __init__(
        self,
        *,
        warehouse: Warehouse | None = None,
        warm_days: float = 30.0,
        backend: Any = None,
        max_entities: int | None = None,
    ) -> None:
        self.warehouse = warehouse
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
                tx, labels = self._history(union)
                n = store.backfill(tx, labels) if len(tx) else 0
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
            vector = self.store.update_and_vector(tx)
            self._recent.append(tx)
            if self._recording is not None:
                self._recording.append(tx)
        t = tx["event_time"]
        if self.last_event is None or t > self.last_event:
            self.last_event = t
        return vector

    def stats(self) -> StateStats | None:
        """The online state's entity counts and evictions (None: not started, or Redis)."""
        store = self.store
        return None if store is None else store.backend.stats()

    def slice(self, union_vector: list[float], spec_id: str) -> list[float]:
        idx = self._slices[spec_id]
        return union_vector if idx is None else [union_vector[i] for i in idx]
