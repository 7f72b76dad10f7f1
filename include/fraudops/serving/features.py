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
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fraudops.exceptions import FeatureSpecError
from fraudops.features.spec import FeatureSpec

if TYPE_CHECKING:
    from fraudops.features.online import OnlineFeatureStore, StateStats
    from fraudops.warehouse import Warehouse

log = logging.getLogger(__name__)


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
        #: Newest event time seen (the "now" of accelerated simulated traffic).
        self.last_event: dt.datetime | None = None
        # The event loop computes vectors while the alias watcher may widen the union.
        self.lock = threading.Lock()

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
        with self.lock:
            if self.store is None:
                store = OnlineFeatureStore(union, self.backend)
                self._warm(store, None)
                self.store = store
            else:
                new = self._warm(self.store, union)
                log.info("online feature union widened to %s (backfilled %s)", union.id, new)
            self.union = union
            self._slices = {}
            self._add_slices(specs)

    def _warm(self, store: OnlineFeatureStore, activate: FeatureSpec | None) -> list[str]:
        import pandas as pd

        from fraudops.features.offline import LABEL_COLUMNS, TX_COLUMNS

        now = self.last_event or dt.datetime.now(dt.UTC)
        if self.warehouse is not None and self.warm_days > 0:
            tx, labels = self._history(now)
        else:
            tx, labels = pd.DataFrame(columns=list(TX_COLUMNS)), pd.DataFrame(columns=list(LABEL_COLUMNS))
        if activate is not None:
            return store.activate(activate, transactions=tx, labels=labels)
        n = store.backfill(tx, labels) if len(tx) else 0
        log.info("online store warmed with %d transactions", n)
        return list(store.families)

    def _history(self, now: dt.datetime) -> tuple[Any, Any]:
        """Transactions of the last ``warm_days`` before the newest one, and labels known by then."""
        from fraudops.features.offline import load_window

        assert self.warehouse is not None
        if self.last_event is None:
            rows = self.warehouse.query(
                f"SELECT MAX(event_time) AS t FROM `{self.warehouse.table_id('transactions')}`"
            )
            newest = rows[0]["t"] if rows and rows[0]["t"] is not None else None
            if newest is None:
                return load_window(self.warehouse, now, now, 0)
            now = newest + dt.timedelta(microseconds=1)
            self.last_event = newest
        return load_window(self.warehouse, now, now, 0 if self.warm_days <= 0 else self.warm_days)  # type: ignore[arg-type]

    def _add_slices(self, specs: Sequence[FeatureSpec]) -> None:
        assert self.union is not None
        pos = {n: i for i, n in enumerate(self.union.names)}
        for spec in specs:
            idx = [pos[n] for n in spec.names]
            self._slices[spec.id] = None if idx == list(range(len(pos))) else idx

    # -- hot path ---------------------------------------------------------------------------
    def compute(self, tx: Mapping[str, Any]) -> list[float]:
        """Record ``tx`` and return the union vector (computed before recording)."""
        with self.lock:
            assert self.store is not None
            vector = self.store.update_and_vector(tx)
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
