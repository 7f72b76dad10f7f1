"""The scoring service without HTTP: ``ScoringService.score(request) -> response dict``.

Why a plain object: the HTTP layer (``app.py``) only parses and serialises, so every behaviour
(features, fallback, logging, mirroring) is testable by calling ``score`` directly, and the same
object backs ``/health``, ``/version`` and the control API.

Per request: the online features are computed once (union vector), the champion scores its
slice; if it raises, returns NaN or a value outside [0, 1], or takes longer than its per-request
budget, the previous champion (kept loaded) answers instead and the event is counted
(``fraudops_fallbacks``), logged (rate-limited) and written with the prediction (``fallback``,
``error``). A sample goes to the shadow pool without ever blocking; the prediction row goes to a
micro-batching, spooling writer. Requests that arrive together (the HTTP fast path hands over
whatever one event-loop turn read) are scored together: features one by one in arrival order,
then one model call for all of them (``score_many``).

Budget caveat: the budget is checked after the call returns (an ONNX call cannot be pre-empted
in-process without a thread hop that costs more than the call); a model that truly hangs is a
shadow-pool concern, where each challenger lives in its own killable process.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import orjson

from fraudops.exceptions import FraudopsError, LatencyBudgetError
from fraudops.registry import sample_rates
from fraudops.serving.features import FeatureRouter
from fraudops.serving.metrics import ServingMetrics
from fraudops.serving.models import (
    CHAMPION,
    AliasWatcher,
    BundleCache,
    ChampionManager,
    ModelSlot,
    slot_from_bundle,
)
from fraudops.serving.options import ServingOptions
from fraudops.serving.registry_faults import Backoff, RegistryUnavailable, Waiting, unavailable_reason
from fraudops.serving.rows import decide, shadow_row
from fraudops.serving.schema import RequestError, clean_request_id
from fraudops.serving.shadow import SHED_PREFIX
from fraudops.vocabulary import CHALLENGER_PREFIX, Action

if TYPE_CHECKING:
    from fraudops.serving.predlog import PredictionLog
    from fraudops.serving.schema import ScoreRequest
    from fraudops.serving.shadow import ShadowPool
    from fraudops.serving.streams import StreamMirror
    from fraudops.warehouse import Warehouse

log = logging.getLogger(__name__)


class NotReady(FraudopsError):
    """No champion is loaded yet (503)."""


class ModelFailure(FraudopsError):
    """The champion failed and no previous version could answer (503)."""


#: ``/health`` and ``/version``: the registry state when something waits for it.
WAITING_FOR_REGISTRY = "waiting for registry"
#: ``Waiting.reason`` of a version that was over its latency budget at load (measured again later).
LATENCY = "latency"
#: ``Waiting.reason`` of an alias target no audit row names (moved behind the platform's back).
UNAUDITED = "unaudited alias move"
#: ``Waiting.reason`` while the audit trail cannot be read (the warehouse is unreachable).
AUDIT_UNREADABLE = "audit trail unreadable"
#: Waiting reasons that are not the registry's (``/health`` does not say "waiting for registry").
_NOT_REGISTRY = (LATENCY, UNAUDITED, AUDIT_UNREADABLE)


@dataclass(frozen=True)
class PendingRollback:
    """A rollback applied from the local cache while the registry was unreachable.

    Its ``deployments`` row is written ``pending`` first (intent); once the registry answers again
    the watcher moves the ``champion`` alias with the same idempotency key, which marks the row
    ``applied`` (``registry.move_alias``). Until then the service keeps serving ``version``
    whatever the registry alias still says.
    """

    version: str
    previous_version: str | None
    actor: str
    reason: str
    idempotency_key: str
    deployment_id: str
    at: float


class ScoringService:
    """Champion + fallback scoring, features, mirroring, logging; owns the watcher and pool."""

    def __init__(
        self,
        options: ServingOptions | None = None,
        *,
        warehouse: Warehouse | None = None,
        model_name: str | None = None,
        shadow: bool = True,
    ) -> None:
        self.options = options or ServingOptions.from_env()
        s = self.options.settings
        self.model_name = model_name or s.mlflow.model_name
        self.tracking_uri = s.mlflow.tracking_uri
        self.warehouse = warehouse
        self.metrics = ServingMetrics()
        self.manager = ChampionManager()
        self.router = FeatureRouter(
            warehouse=warehouse if self.options.warm_days > 0 else None,
            warm_days=self.options.warm_days,
            backend=_backend(s.redis_url),
            max_entities=self.options.feature_max_entities,
            on_degraded=self.metrics.state_degraded_events.inc,
            on_replayed=self.metrics.state_replayed.inc,
        )
        self.metrics.on_scrape(lambda: self.metrics.state_degraded.set(int(self.router.outage["degraded"])))
        self.metrics.on_scrape(lambda: self.metrics.set_feature_stats(self.router.stats()))
        self.cache = BundleCache(self.options.root / "bundles", self.tracking_uri)
        self.watcher = AliasWatcher(
            self.model_name,
            self.tracking_uri,
            self.apply_aliases,
            self.options.alias_poll_s,
            on_error=self._on_poll_error,
            due_in=self._retry_due_in,
        )
        self.writer: PredictionLog | None = None
        if warehouse is not None and self.options.log_predictions:
            from fraudops.serving.predlog import PredictionLog

            self.writer = PredictionLog(
                warehouse.cfg,
                self.options.root / "spool" / "predictions",
                batch_size=self.options.log_batch_size,
                flush_interval_s=self.options.log_flush_interval_s,
                retry_interval_s=self.options.log_retry_interval_s,
            )
            self.metrics.on_scrape(lambda: self.metrics.set_log_stats(self.writer.snapshot()))  # type: ignore[union-attr]
        self.shadow: ShadowPool | StreamMirror | None = None
        if shadow and self.options.shadow_transport == "stream":
            from fraudops.serving.streams import StreamMirror

            self.shadow = StreamMirror(
                self.options, self.metrics, self._on_shadow_result, s.redis_url, self.model_name
            )
        elif shadow:
            from fraudops.serving.shadow import ShadowPool

            self.shadow = ShadowPool(self.options, self.metrics, self._on_shadow_result)
        self.sample_rate = self.options.shadow_sample_rate
        self.rejected: dict[str, str] = {}  # "alias@version" -> reason (broken: never retried)
        # "alias@version" -> why it is not loaded yet (registry unreachable: retried with backoff).
        self.waiting: dict[str, Waiting] = {}
        self.backoff = Backoff()
        self._labels_stop = threading.Event()
        self._label_thread: threading.Thread | None = None
        # A load over the latency budget is measured again (the host may just have been busy):
        # up to ``latency_attempts`` loads, ``latency_backoff`` apart, before it is refused.
        self.latency_attempts = 5
        self.latency_backoff = Backoff(base_s=5.0, cap_s=60.0)
        # An alias target without a matching audit row is looked at again this often (its row
        # may follow; a legitimate move writes it first).
        self.audit_backoff = Backoff(base_s=2.0, cap_s=30.0)
        # Rollbacks applied while the registry was down, oldest first, not yet moved in the registry.
        self.pending_rollbacks: list[PendingRollback] = []
        # Champion swaps (watcher thread, control API thread) one at a time; loads stay outside it.
        self._swap_lock = threading.Lock()
        # Pushing pending rollbacks to the registry (watcher or control API), once each.
        self._reconcile_lock = threading.Lock()
        self.fallback_count = 0
        self.started_at = time.time()
        self._rand = random.random
        # Request ids: a random per-process prefix + a counter (unique, and cheaper than uuid4).
        self._id_prefix = uuid.uuid4().hex[:12] + "-"
        self._ids = itertools.count(1)
        # Accepted event times (issue #18): within [clock - past, clock + future].
        future_s, past_s = self.options.event_time_bounds_s
        self._future = dt.timedelta(seconds=future_s)
        self._past = dt.timedelta(seconds=past_s)
        self._simulated_clock = self.options.event_clock == "simulated"

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, wait: bool = False, timeout_s: float = 300.0) -> ScoringService:
        if self.writer is not None:
            self.writer.start()
        if self.shadow is not None:
            self.shadow.start()
        self.watcher.start()
        if self.router.warehouse is not None and self.options.label_sync_s > 0:
            self._labels_stop.clear()
            self._label_thread = threading.Thread(target=self._feed_labels, name="label-feed", daemon=True)
            self._label_thread.start()
        if wait:
            self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.manager.current is None:
            if time.monotonic() > deadline:
                raise NotReady(
                    f"no champion loaded after {timeout_s:.0f} s: {self.watcher.last_error or self.rejected}"
                )
            time.sleep(0.05)

    def _feed_labels(self) -> None:
        """Fraud labels that reach the warehouse after the warm-up, into the online store."""
        while not self._labels_stop.wait(self.options.label_sync_s):
            try:
                n = self.router.sync_labels()
            except Exception as err:  # the warehouse away: the next interval tries again
                self.metrics.label_sync_errors.inc()
                log.warning("label sync failed: %s", f"{type(err).__name__}: {err}"[:300])
                continue
            if n:
                self.metrics.labels_synced.inc(n)

    def stop(self) -> None:
        self._labels_stop.set()
        if self._label_thread is not None:
            self._label_thread.join(30)
        self.watcher.stop()
        if self.shadow is not None:
            self.shadow.stop()
        if self.writer is not None:
            self.writer.close()

    @property
    def ready(self) -> bool:
        return self.manager.current is not None

    # -- registry changes (watcher thread) --------------------------------------------------
    def apply_aliases(self, aliases: dict[str, str], tags: dict[str, str] | None = None) -> None:
        """Bring loaded models in line with the registry aliases (and the challengers' sample
        rates with the registered model's ``tags``).

        Rollbacks applied while the registry was down are written to it first; one that still
        cannot be written keeps the champion where the rollback put it.
        """
        if self.pending_rollbacks:
            try:
                self.reconcile_pending()
            except Exception as err:  # logged there; the rollback keeps serving meanwhile
                log.debug("pending rollbacks stay pending: %s", err)
            pending = self.pending_rollbacks
            if pending:
                aliases = {**aliases, CHAMPION: pending[-1].version}
        champ = aliases.get(CHAMPION)
        if champ is not None:
            current, previous = self.manager.pair
            if current is None or current.version != champ:
                if previous is not None and previous.version == champ:  # back to the one before
                    slot = previous if self._may_serve(CHAMPION, champ) else None
                else:
                    slot = self._load(CHAMPION, champ)
                if slot is not None:
                    with self._swap_lock:
                        pending = self.pending_rollbacks
                        # A rollback made while this version loaded wins over the alias read before it.
                        if not pending or pending[-1].version == champ:
                            self._swap_to(slot)
        wanted_keys = set() if champ is None else {f"{CHAMPION}@{champ}"}
        if self.shadow is not None:
            wanted = {a: v for a, v in aliases.items() if a.startswith(CHALLENGER_PREFIX)}
            wanted_keys |= {f"{a}@{v}" for a, v in wanted.items()}
            loaded: dict[str, ModelSlot | None] = {}
            for alias, version in wanted.items():
                if self.shadow.has(alias, version):
                    loaded[alias] = None
                    continue
                slot = self._load(alias, version, scorer=False)
                if slot is not None:
                    self.router.ensure([slot.spec])
                    loaded[alias] = slot
            if tags is not None:
                self.shadow.set_rates(sample_rates(tags))
            self.shadow.sync(loaded, keep=set(wanted))
        # An alias that moved on takes its wait with it.
        for key in [k for k in self.waiting if k not in wanted_keys]:
            self.waiting.pop(key, None)
        self.metrics.registry_waiting.set(self._registry_waits())

    def _swap_to(self, slot: ModelSlot) -> None:
        """Make ``slot`` the champion (caller holds ``_swap_lock``)."""
        self.router.ensure([slot.spec])
        _freeze_heap()
        self.manager.promote(slot)
        self.metrics.swaps.inc()
        self.metrics.champion.set(float(slot.version) if slot.version.isdigit() else -1)

    def _load(self, alias: str, version: str, scorer: bool = True) -> ModelSlot | None:
        """The slot of ``version``, or None: refused for good (``rejected``: the bundle is broken)
        or not yet (``waiting``: the registry was unreachable; tried again after a backoff)."""
        key = f"{alias}@{version}"
        if key in self.rejected:
            return None
        if not self._may_try(key, alias, version):
            return None
        waiting = self.waiting.get(key)
        try:
            slot = self._build_slot(alias, version, scorer)
        except Exception as err:
            why = unavailable_reason(err)
            if why is not None:
                self._wait_for_registry(key, alias, version, why, err)
                return None
            reason = f"{type(err).__name__}: {err}"[:500]
            if isinstance(err, LatencyBudgetError):
                attempts = 1 + (waiting.attempts if waiting is not None and waiting.reason == LATENCY else 0)
                if attempts < self.latency_attempts:
                    self._measure_again(key, alias, version, err, attempts)
                    return None
                reason = f"{reason}, on {attempts} loads"
            self.waiting.pop(key, None)
            self.rejected[key] = reason
            self.metrics.load_failures.labels(alias).inc()
            log.error("refusing %s v%s for %s: %s", self.model_name, version, alias, reason)
            return None
        if self.waiting.pop(key, None) is not None:
            log.info("%s v%s for %s loaded after waiting", self.model_name, version, alias)
        return slot

    def _may_try(self, key: str, alias: str, version: str) -> bool:
        """``alias@version`` may be loaded (or served again) now: no backoff for it is running and
        its alias move is audited. A refusal leaves it in ``waiting``; a pass leaves ``waiting``
        as it was (a latency re-measurement keeps its attempt count)."""
        waiting = self.waiting.get(key)
        if waiting is not None and time.monotonic() < waiting.next_try:
            return False
        return self._audited(key, alias, version, waiting)

    def _may_serve(self, alias: str, version: str) -> bool:
        """An already loaded ``version`` (the previous champion) may serve as ``alias`` again."""
        key = f"{alias}@{version}"
        if not self._may_try(key, alias, version):
            return False
        self.waiting.pop(key, None)
        return True

    def _audited(self, key: str, alias: str, version: str, waiting: Waiting | None) -> bool:
        """True when the newest ``deployments`` row of ``alias`` names ``version`` (finding 10 of
        issue #18: only a move the platform recorded is served). Otherwise the version waits and is
        looked at again; the service keeps what it serves. No warehouse (tests, tools): no check."""
        if self.warehouse is None:
            return True
        from fraudops.registry import audited_version

        try:
            has_rows, named = audited_version(self.warehouse, self.model_name, alias)
        except Exception as err:
            before = 0 if waiting is None or waiting.reason != AUDIT_UNREADABLE else waiting.attempts
            entry = self._wait(key, alias, version, AUDIT_UNREADABLE, err, before + 1, self.backoff)
            log.warning(
                "%s v%s for %s: cannot read the audit trail (%s); trying again in %.1f s",
                self.model_name,
                version,
                alias,
                err,
                entry.next_try - time.monotonic(),
            )
            return False
        if named == version:
            return True
        before = 0 if waiting is None or waiting.reason != UNAUDITED else waiting.attempts
        what = f"its newest audit row names v{named}" if has_rows else "it has no audit row"
        refusal = PermissionError(f"{alias} -> v{version} was not moved by the platform ({what})")
        self._wait(key, alias, version, UNAUDITED, refusal, before + 1, self.audit_backoff)
        if before == 0:
            self.metrics.unaudited.labels(alias).inc()
            log.error("refusing to serve %s v%s as %s for now: %s", self.model_name, version, alias, refusal)
        return False

    def _wait(
        self, key: str, alias: str, version: str, reason: str, err: Exception, attempts: int, backoff: Backoff
    ) -> Waiting:
        """Put ``alias@version`` in ``waiting`` for another load after ``backoff``'s jittered delay."""
        before = self.waiting.get(key)
        entry = self.waiting[key] = Waiting(
            alias=alias,
            version=version,
            reason=reason,
            error=f"{type(err).__name__}: {err}"[:500],
            attempts=attempts,
            next_try=time.monotonic() + backoff.delay(attempts, self._rand),
            since=time.time() if before is None else before.since,
        )
        return entry

    def _measure_again(
        self, key: str, alias: str, version: str, err: LatencyBudgetError, attempts: int
    ) -> None:
        """``version`` was over its latency budget on this (busy) host: load it again later."""
        entry = self._wait(key, alias, version, LATENCY, err, attempts, self.latency_backoff)
        self.metrics.load_retries.labels(alias).inc()
        log.warning(
            "%s v%s for %s: %s (load %d of %d); measuring again in %.0f s",
            self.model_name,
            version,
            alias,
            err,
            attempts,
            self.latency_attempts,
            entry.next_try - time.monotonic(),
        )

    def _wait_for_registry(self, key: str, alias: str, version: str, why: str, err: Exception) -> None:
        before = self.waiting.get(key)
        attempts = 1 if before is None else before.attempts + 1
        entry = self._wait(key, alias, version, why, err, attempts, self.backoff)
        self.metrics.registry_unavailable.labels("load", why).inc()
        self.metrics.registry_waiting.set(self._registry_waits())
        log.warning(
            "%s v%s for %s: registry unreachable (%s, attempt %d); trying again in %.1f s",
            self.model_name,
            version,
            alias,
            why,
            attempts,
            entry.next_try - time.monotonic(),
        )

    def _registry_waits(self) -> int:
        """How many wanted versions wait for the registry (not for latency or an audit row)."""
        return sum(w.reason not in _NOT_REGISTRY for w in list(self.waiting.values()))

    def _retry_due_in(self) -> float | None:
        """Seconds until the earliest waiting load may be tried again (None: nothing waits)."""
        waits = [w.next_try for w in list(self.waiting.values())]
        return None if not waits else min(waits) - time.monotonic()

    def _on_poll_error(self, err: Exception) -> None:
        why = unavailable_reason(err)
        if why is not None:
            self.metrics.registry_unavailable.labels("alias_poll", why).inc()

    def _build_slot(self, alias: str, version: str, scorer: bool) -> ModelSlot:
        """Fetch (or reuse the cached bundle of) ``version`` and load it; raises on any failure."""
        path = self.cache.fetch(self.model_name, version)
        # The threshold the release matched to the alert budget (version tag), else the
        # manifest's: for the champion and for shadow workers alike (an old champion in
        # reverse shadow keeps the threshold it served at).
        served = self.cache.served_threshold(self.model_name, version)
        if scorer:
            return slot_from_bundle(
                self.model_name,
                version,
                alias,
                path,
                self.options.budget_ms,
                threshold=served,
                expect=self.cache.expected_digests(self.model_name, version),
                tie_share=self.cache.cached_tie_share(self.model_name, version),
            )
        import json

        from fraudops.features.spec import FeatureSpec

        spec = FeatureSpec.from_dict(json.loads((path / "feature_spec.json").read_text()))
        manifest = json.loads((path / "manifest.json").read_text())
        return ModelSlot(
            self.model_name,
            version,
            alias,
            None,
            spec,
            served if served is not None else float(manifest.get("decision_threshold", 0.5)),
            float(manifest.get("latency_budget_ms", 5.0)),
            path,
        )

    # -- rollback without the registry (control API thread) ---------------------------------
    def rollback_offline(self, version: str, *, actor: str, reason: str, why: str) -> PendingRollback | None:
        """Serve ``version`` again from what this service holds: the loaded previous champion, or
        the bundle cache (verified again before it serves). None: it already serves ``version``.

        The intent is audited first (a ``pending`` ``deployments`` row), then the champion swaps;
        the registry alias follows once MLflow answers (``reconcile_pending``). Raises
        ``RegistryUnavailable`` when ``version`` is neither loaded nor cached.
        """
        from fraudops.registry import PENDING, record_deployment

        if self.warehouse is None:
            raise RegistryUnavailable(why, "the model registry is unreachable and there is no warehouse")
        current, previous = self.manager.pair
        if current is not None and current.version == version:
            return None
        slot = previous if previous is not None and previous.version == version else None
        if slot is None:
            path = self.cache.cached(self.model_name, version)
            if path is None:
                raise RegistryUnavailable(
                    why,
                    f"the model registry is unreachable ({why}) and {self.model_name} v{version} is not in "
                    "this service's bundle cache; roll back to a version it served before, or retry "
                    "when MLflow is back",
                )
            from fraudops.training.package import verify_artifact

            verify_artifact(path, n_latency_calls=200)
            slot = slot_from_bundle(
                self.model_name,
                version,
                CHAMPION,
                path,
                self.options.budget_ms,
                threshold=self.cache.cached_threshold(self.model_name, version),
                tie_share=self.cache.cached_tie_share(self.model_name, version),
            )
        key = f"offline-rollback:{self.model_name}:{version}:{uuid.uuid4().hex}"
        deployment_id = record_deployment(
            self.warehouse,
            model_name=self.model_name,
            alias=CHAMPION,
            version=version,
            previous_version=None if current is None else current.version,
            action=Action.ROLLBACK,
            actor=actor,
            reason=f"{reason} (registry unreachable: {why}; applied from the local cache)",
            idempotency_key=key,
            state=PENDING,
        )
        move = PendingRollback(
            version=version,
            previous_version=None if current is None else current.version,
            actor=actor,
            reason=reason,
            idempotency_key=key,
            deployment_id=deployment_id,
            at=time.time(),
        )
        with self._swap_lock:
            self.pending_rollbacks = [*self.pending_rollbacks, move]
            self._swap_to(slot)
        log.warning(
            "rolled back to %s v%s from the local cache (registry unreachable: %s); alias move pending",
            self.model_name,
            version,
            why,
        )
        return move

    def reconcile_pending(self) -> None:
        """Move the registry alias for each rollback made while it was down, oldest first; raises
        ``RegistryUnavailable`` if it still cannot be reached (the rest stay pending)."""
        from fraudops.registry import move_alias

        with self._reconcile_lock:
            while self.pending_rollbacks:
                move = self.pending_rollbacks[0]
                try:
                    move_alias(
                        self.warehouse,  # type: ignore[arg-type]  # set: rollback_offline checks it
                        model_name=self.model_name,
                        alias=CHAMPION,
                        version=move.version,
                        action=Action.ROLLBACK,
                        actor=move.actor,
                        reason=move.reason,
                        tracking_uri=self.tracking_uri,
                        idempotency_key=move.idempotency_key,
                    )
                except Exception as err:
                    why = unavailable_reason(err)
                    log.warning("pending rollback to v%s not written to the registry: %s", move.version, err)
                    if why is None:
                        raise
                    self.metrics.registry_unavailable.labels("reconcile", why).inc()
                    raise RegistryUnavailable(why, f"cannot write pending rollbacks: {err}") from err
                with self._swap_lock:
                    self.pending_rollbacks = self.pending_rollbacks[1:]
                log.info("pending rollback to %s v%s written to the registry", self.model_name, move.version)

    def registry_status(self) -> dict[str, Any]:
        """``ok``, or ``waiting for registry`` with what waits (``/health``, ``/version``)."""
        now = time.monotonic()
        waiting = {
            key: {
                "alias": w.alias,
                "version": w.version,
                "reason": w.reason,
                "attempts": w.attempts,
                "retry_in_s": round(max(w.next_try - now, 0.0), 1),
                "since": dt.datetime.fromtimestamp(w.since, dt.UTC).isoformat(),
                "error": w.error,
            }
            for key, w in list(self.waiting.items())
        }
        registry_waits = self._registry_waits() > 0
        waits = bool(registry_waits or self.pending_rollbacks or self.watcher.failing)
        polling = "failing" if self.watcher.failing else "ok"
        status: dict[str, Any] = {
            "state": WAITING_FOR_REGISTRY if waits else "ok",
            "waiting": waiting,
            "alias_poll": polling,
        }
        if self.pending_rollbacks:
            status["pending_rollbacks"] = [
                {k: v for k, v in asdict(m).items() if k != "idempotency_key"} for m in self.pending_rollbacks
            ]
        return status

    # -- hot path ---------------------------------------------------------------------------
    def score(
        self,
        request: ScoreRequest,
        request_id: str | None = None,
        defer: Callable[[Callable[[], None]], None] | None = None,
    ) -> dict[str, Any]:
        """Score one validated request; raises ``NotReady`` / ``ModelFailure`` (both 503)."""
        (out,) = self.score_many([request], [request_id], defer)
        if isinstance(out, Exception):
            raise out
        return out

    def score_many(
        self,
        requests: Sequence[ScoreRequest],
        request_ids: Sequence[str | None] | None = None,
        defer: Callable[[Callable[[], None]], None] | None = None,
    ) -> list[dict[str, Any] | Exception]:
        """Score requests that arrived together, in arrival order; raises ``NotReady``.

        Features are computed one request after the other in the given order (what each sees is
        exactly what it would see alone), then the champion scores all vectors in one call: under
        load the HTTP layer hands over whatever arrived in the same event-loop turn, and one ONNX
        call for a dozen rows costs little more than for one. The pair (champion, previous) is
        read once, so a batch is answered entirely by one version.

        Per row: the champion's answer; if it fails that row, the previous version's; if nobody
        can answer, a ``ModelFailure`` in its place; for a request whose event time lies outside
        the clock's bounds (``ServingOptions.event_clock``), a ``RequestError`` (422) and no state
        change; for a request whose features raised, a bug, that exception. Each scored request's
        prediction row is spooled here, before any answer leaves (acknowledged means spooled).
        Shadow offers do not shape the answers: with ``defer`` (the HTTP layer passes one) they
        are handed over, one callable per scored request in order, to run once the responses are
        on the wire; without it they run here.
        """
        t0 = time.perf_counter()
        current, previous = self.manager.pair
        if current is None:
            raise NotReady("no champion loaded yet")
        txs = [r.to_transaction() for r in requests]
        compute = self.router.compute
        unions: list[list[float]] = []
        # A request refused here (event time out of bounds: RequestError) or whose features raised
        # (a bug) fails alone, in its place.
        broken: dict[int, Exception] = {}
        bounds = None if self._simulated_clock else self._time_bounds(dt.datetime.now(dt.UTC))
        for k, tx in enumerate(txs):
            t = tx["event_time"]
            if bounds is None:  # simulated: the clock moves with every accepted event
                bounds = self._time_bounds(self.router.last_event)
            if not bounds[0] <= t <= bounds[1]:
                broken[k] = self._out_of_bounds(t, bounds)
                continue
            if self._simulated_clock:
                bounds = None
            try:
                unions.append(compute(tx))
            except Exception as err:
                log.exception("features failed for transaction %s", requests[k].transaction_id)
                broken[k] = err
        scored = iter(zip(unions, self._predict_many(current, previous, unions), strict=True))
        latency_ms = (time.perf_counter() - t0) * 1e3
        m = self.metrics
        m.batch_size.observe(len(requests))
        out: list[dict[str, Any] | Exception] = []
        for k, request in enumerate(requests):
            if k in broken:
                out.append(broken[k])
                continue
            union, (slot, score, failure) = next(scored)
            rid = (clean_request_id(request_ids[k]) if request_ids is not None else None) or (
                f"{self._id_prefix}{next(self._ids):x}"
            )
            decision = None if score is None else self.decide(score, slot, requests[k].transaction_id)
            fallback = failure is not None and slot is not current
            m.model_latency.labels(slot.version, "production").observe(latency_ms / 1e3)
            if decision is not None:
                m.decisions.labels(decision).inc()
            offered = () if self.shadow is None else self.shadow.select(self._rand())
            record = self._recorder(
                request, rid, txs[k], union, slot, score, decision, latency_ms, fallback, failure, offered
            )
            if defer is None:
                record()
            else:
                defer(record)
            if score is None:
                out.append(
                    ModelFailure(
                        f"champion v{current.version} failed ({failure}) and no previous version is loaded"
                    )
                )
                continue
            out.append(
                {
                    "request_id": rid,
                    "transaction_id": request.transaction_id,
                    "score": score,
                    "decision": decision,
                    "model_name": slot.name,
                    "model_version": slot.version,
                    "fallback": fallback,
                    "latency_ms": round(latency_ms, 4),
                }
            )
        return out

    def _time_bounds(self, clock: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
        """[earliest, latest] accepted event time around ``clock``.

        A simulated clock that has seen no event yet (cold start, empty warehouse) takes the first
        event within ten years of the wall clock, which then sets it.
        """
        if clock is None:
            clock, future, past = dt.datetime.now(dt.UTC), _FIRST_SIMULATED, _FIRST_SIMULATED
        else:
            future, past = self._future, self._past
        return _shift(clock, -past), _shift(clock, future)

    def _out_of_bounds(self, t: dt.datetime, bounds: tuple[dt.datetime, dt.datetime]) -> RequestError:
        """The 422 of an event time outside ``bounds`` (counted in ``fraudops_requests_total``)."""
        clock = "simulated clock" if self._simulated_clock else "server clock"
        if t > bounds[1]:
            ahead = self._future.total_seconds()
            reason = (
                f"is more than {ahead:g} s ahead of the {clock} (latest accepted {bounds[1].isoformat()})"
            )
        else:
            behind = self._past.total_seconds()
            reason = (
                f"is more than {behind:g} s behind the {clock} (earliest accepted {bounds[0].isoformat()})"
            )
        return RequestError(422, [{"field": "timestamp", "reason": reason}])

    def _recorder(
        self,
        request: ScoreRequest,
        rid: str,
        tx: dict[str, Any],
        union: list[float],
        slot: ModelSlot,
        score: float | None,
        decision: str | None,
        latency_ms: float,
        fallback: bool,
        failure: str | None,
        offered: tuple[Any, ...],
    ) -> Callable[[], None]:
        """Spool the request's prediction row now; return its after-response work (the shadow offer).

        The row is written before the answer leaves: ``PredictionLog.write`` puts it in a spool file
        (in the OS when it returns), so a service killed after answering has not lost it.
        """
        if self.writer is not None:
            self.writer.write(
                {
                    "transaction_id": request.transaction_id,
                    "request_id": rid,
                    "model_name": slot.name,
                    "model_version": slot.version,
                    "mode": "production",
                    "alias": CHAMPION,
                    "score": score,
                    "decision": decision,
                    "latency_ms": latency_ms,
                    "fallback": fallback,
                    "error": failure,
                    "amount": request.amount,
                    "event_time": tx["event_time"],
                    "feature_set": slot.spec_id,
                    "features": orjson.dumps(self.router.slice(union, slot.spec_id)).decode(),
                    "served_at": dt.datetime.now(dt.UTC),
                    "sampled": bool(offered),
                    "sampled_for": _offer_list(offered),
                }
            )

        def offer() -> None:
            if offered:
                self.shadow.mirror(rid, tx, union, self.router, offered)  # type: ignore[union-attr]

        return offer

    def _predict_many(
        self, current: ModelSlot, previous: ModelSlot | None, unions: list[list[float]]
    ) -> list[tuple[ModelSlot, float | None, str | None]]:
        """Per row: (slot that answered, score or None, failure description or None)."""
        tried = self._try_many(current, unions)
        answers: list[tuple[ModelSlot, float | None, str | None]] = [(current, v, r) for v, r in tried]
        failed = [k for k, (_, reason) in enumerate(tried) if reason is not None]
        if not failed:
            return answers
        alt = (
            self._try_many(previous, [unions[k] for k in failed], budget=False)
            if previous is not None
            else [(None, None)] * len(failed)
        )
        for k, (alt_value, why) in zip(failed, alt, strict=True):
            value, reason = tried[k]
            self.metrics.errors.labels(current.version, "production", reason).inc()
            self.metrics.fallbacks.labels(current.version, reason).inc()
            self.fallback_count += 1
            if self.fallback_count <= 10 or self.fallback_count % 1000 == 0:
                log.warning(
                    "champion v%s failed (%s); answered by %s (fallbacks so far: %d)",
                    current.version,
                    reason,
                    "nobody" if previous is None else f"v{previous.version}",
                    self.fallback_count,
                )
            failure = f"champion v{current.version}: {reason}"
            if previous is not None and why is None:
                answers[k] = (previous, alt_value, failure)
                continue
            if previous is not None:
                self.metrics.errors.labels(previous.version, "production", why).inc()
            # A late but valid score is better than no answer.
            answers[k] = (current, value if reason == "timeout" else None, failure)
        return answers

    def _try_many(
        self, slot: ModelSlot, unions: list[list[float]], budget: bool = True
    ) -> list[tuple[float | None, str | None]]:
        """Per row (score, None) or (score or None, error:<type> / nan / out_of_range / timeout).

        The budget is per request: the call's time divided by its rows (a batch of twelve may
        take longer than one row, and each of its requests was still served within budget).
        """
        n = len(unions)
        if n == 0:  # every request of the batch failed before the model
            return []
        try:
            t = time.perf_counter()
            rows = [self.router.slice(u, slot.spec_id) for u in unions]
            values = [float(v) for v in slot.scorer.score_batch(rows)]
            elapsed_ms = (time.perf_counter() - t) * 1e3
            if len(values) != n:
                raise ValueError(f"{len(values)} scores for {n} rows")
        except Exception as err:
            return [(None, f"error:{type(err).__name__}")] * n
        late = budget and elapsed_ms / n > slot.budget_ms
        out: list[tuple[float | None, str | None]] = []
        for value in values:
            if value != value:
                out.append((None, "nan"))
            elif not 0.0 <= value <= 1.0:
                out.append((None, "out_of_range"))
            else:
                out.append((value, "timeout" if late else None))
        return out

    def decide(self, score: float, slot: ModelSlot, transaction_id: str) -> str:
        return decide(score, slot.threshold, self.options.review_band, slot.tie_share, transaction_id)

    # -- shadow results (collector thread) --------------------------------------------------
    def _on_shadow_result(self, result: dict[str, Any]) -> None:
        if result.get("latency_ms") is not None:
            self.metrics.model_latency.labels(result["model_version"], "shadow").observe(
                result["latency_ms"] / 1e3
            )
        error = result.get("error")
        if error and not error.startswith(SHED_PREFIX):  # sheds have their own counter
            self.metrics.errors.labels(result["model_version"], "shadow", "error").inc()
        if self.writer is not None:
            self.writer.write(shadow_row(result, self.model_name, self.options.review_band))

    # -- introspection ----------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        from fraudops import __version__

        current, previous = self.manager.pair
        return {
            "service": "fraudops-scoring",
            "version": __version__,
            "model_name": self.model_name,
            CHAMPION: None if current is None else _slot_info(current),
            "previous": None if previous is None else _slot_info(previous),
            "challengers": {} if self.shadow is None else self.shadow.status(),
            "feature_union": None if self.router.union is None else self.router.union.id,
            "online_state": {"backend": self.router.backend_name, **self.router.outage},
            "last_feature_widening": self.router.last_widening,
            "shadow_sample_rate": self.sample_rate,
            "fallbacks": self.fallback_count,
            "swaps": self.manager.swaps,
            "rejected": self.rejected,
            "registry": self.registry_status(),
            "alias_poll": {"errors": self.watcher.errors, "last_error": self.watcher.last_error},
            "prediction_log": None if self.writer is None else self.writer.describe(),
        }


#: A simulated clock with no event yet accepts a first event this close to the wall clock.
_FIRST_SIMULATED = dt.timedelta(days=3653)
_MIN = dt.datetime.min.replace(tzinfo=dt.UTC)
_MAX = dt.datetime.max.replace(tzinfo=dt.UTC)


def _shift(t: dt.datetime, by: dt.timedelta) -> dt.datetime:
    try:
        return t + by
    except OverflowError:
        return _MAX if by > dt.timedelta(0) else _MIN


def _freeze_heap() -> None:
    """Move what is alive now (imports, warm feature state, sessions) out of the collector's reach.

    A full collection over a heap holding MLflow's module graph and a warm online store takes tens
    of milliseconds with the GIL held: every request waiting behind it pays that in its latency.
    ``gc.freeze`` is cheap (no collection) and whatever it keeps of garbage is small and one-off.
    """
    import gc

    gc.freeze()


def _offer_list(offered: tuple[Any, ...]) -> str | None:
    """``sampled_for`` of a production row: the versions it was offered to, comma-delimited on
    both ends (``,7,9,``) so one version is found with ``STRPOS(sampled_for, ',7,')``."""
    if not offered:
        return None
    return "," + ",".join(w.version for w in offered) + ","


def _slot_info(slot: ModelSlot) -> dict[str, Any]:
    return {
        "version": slot.version,
        "feature_set": slot.spec_id,
        "decision_threshold": slot.threshold,
        "tie_share": slot.tie_share,
        "budget_ms": slot.budget_ms,
        "loaded_at": dt.datetime.fromtimestamp(slot.loaded_at, dt.UTC).isoformat(),
    }


def _backend(redis_url: str) -> Any:
    if not redis_url:
        return None
    from fraudops.features.online import RedisBackend

    return RedisBackend(redis_url)
