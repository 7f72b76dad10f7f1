"""Shadow traffic through Redis Streams (the ``scale`` profile): the replica side.

With several scoring replicas, challengers no longer live inside one process: each replica puts
the events it offers a challenger on that challenger's stream, and shadow workers
(``serving/shadow_worker.py``, scaled on their own) read the streams through one consumer group.
Delivery is at least once; a worker writes each result through its own prediction spool, whose
keyed MERGE makes the warehouse row exactly once, then acknowledges and deletes the entry.

Keys (``prefix`` ``fraudops:shadow``):

* ``<prefix>:s:<alias>:<version>`` — a challenger version's stream; field ``e``: the JSON frame
  ``[request_id, transaction_id, vector, amount, event_time]`` (the slice of production's vector
  for the challenger's feature spec, exactly as the in-process pool sends it);
* ``<prefix>:meta:<stream>`` — hash: model name, alias, version, feature spec, threshold;
* ``<prefix>:streams`` — the set of streams workers read;
* ``<prefix>:dead:<stream>`` — counter of dead-lettered events; ``<prefix>:workers`` — hash of
  worker heartbeats (JSON status, with the time it was written).

The replica never waits for Redis on the request path: ``mirror`` appends to a bounded buffer that
a sender thread writes with one pipeline per batch. A full buffer, or a stream whose backlog is
over ``max_backlog``, sheds the event (``shed:queue_full``, a capacity shed the evidence leaves out),
logged as a shadow row by this replica like the in-process pool's sheds.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from fraudops.serving.shadow import apply_rates, shed

if TYPE_CHECKING:
    from fraudops.serving.features import FeatureRouter
    from fraudops.serving.metrics import ServingMetrics
    from fraudops.serving.models import ModelSlot
    from fraudops.serving.options import ServingOptions

log = logging.getLogger(__name__)

PREFIX = "fraudops:shadow"
GROUP = "shadow"
#: A worker heartbeat older than this is not counted as alive.
WORKER_STALE_S = 10.0
#: Events the replica buffers for the sender thread before it sheds.
BUFFER_EVENTS = 20_000
#: The sender writes at most this many entries per pipeline.
SEND_BATCH = 256


def stream_key(alias: str, version: str, prefix: str = PREFIX) -> str:
    return f"{prefix}:s:{alias}:{version}"


def meta_key(stream: str, prefix: str = PREFIX) -> str:
    return f"{prefix}:meta:{stream}"


def dead_key(stream: str, prefix: str = PREFIX) -> str:
    """Counter of ``stream``'s dead-lettered events."""
    return f"{prefix}:dead:{stream}"


def ensure_group(r: Any, stream: str) -> None:
    """Create the consumer group of ``stream`` (and the stream) if missing; idempotent."""
    import redis

    try:
        r.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except redis.ResponseError as err:
        if "BUSYGROUP" not in str(err):
            raise


def stream_backlog(r: Any, stream: str) -> tuple[int, int]:
    """(lag: entries not yet delivered to the group, pending: delivered and not acknowledged)."""
    for g in r.xinfo_groups(stream):
        if g.get("name") == GROUP:
            lag = g.get("lag")
            return (int(lag) if lag is not None else int(r.xlen(stream))), int(g.get("pending") or 0)
    return int(r.xlen(stream)), 0


def worker_status(r: Any, prefix: str = PREFIX) -> dict[str, dict[str, Any]]:
    """The shadow workers' last heartbeats (consumer name -> status with ``age_s``)."""
    now = time.time()
    out: dict[str, dict[str, Any]] = {}
    for name, raw in r.hgetall(f"{prefix}:workers").items():
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        doc["age_s"] = round(now - float(doc.get("at", 0)), 1)
        out[name] = doc
    return out


@dataclass
class _Target:
    """A challenger version the replica offers events to (what ``select`` returns)."""

    alias: str
    version: str
    spec_id: str
    threshold: float
    stream: str
    sample_rate: float = 0.0
    mirrored: int = 0
    shed: int = 0
    lag: int = 0
    pending: int = 0
    dead_letters: int = 0


class StreamMirror:
    """The scoring replica's shadow transport in the ``scale`` profile (same interface as
    ``ShadowPool``: ``sync``, ``set_rates``, ``select``, ``mirror``, ``status``)."""

    def __init__(
        self,
        options: ServingOptions,
        metrics: ServingMetrics,
        on_result: Callable[[dict[str, Any]], None],
        redis_url: str,
        model_name: str,
        *,
        prefix: str = PREFIX,
        max_backlog: int | None = None,
        client: Any = None,
    ) -> None:
        import redis

        self.options = options
        self.metrics = metrics
        self.on_result = on_result
        self.model_name = model_name
        self.prefix = prefix
        self.r: Any = client or redis.Redis.from_url(
            redis_url, decode_responses=True, socket_timeout=2.0, socket_connect_timeout=1.0
        )
        #: Entries a stream may hold undelivered before events offered to it are shed.
        self.max_backlog = max_backlog if max_backlog is not None else 50 * options.shadow_queue_size
        self.rates: dict[str, float] = {}
        self.default_rate = options.shadow_sample_rate
        self.faults: dict[str, str] = {}  # the in-process pool's fault injection has no meaning here
        self._targets: dict[str, _Target] = {}
        self._snapshot: tuple[_Target, ...] = ()
        self._lock = threading.Lock()
        self._buffer: collections.deque[tuple[_Target, str, bytes]] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.send_errors = 0
        self.last_error = ""
        self.workers: dict[str, dict[str, Any]] = {}

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        for target, name in ((self._send, "shadow-stream-sender"), (self._watch, "shadow-stream-watch")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Send what is buffered (up to 10 s), then stop."""
        deadline = time.monotonic() + 10.0
        while self._buffer and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(10)
        self._threads.clear()
        # Redis never came back: these were never offered to a worker, a capacity shed (left out
        # of the evidence like a full queue), not the challenger's failure.
        for target, request_id, frame in list(self._buffer):
            self._shed_frame(target, request_id, frame, "queue_full")
        self._buffer.clear()
        self.r.close()

    # -- membership (watcher thread) --------------------------------------------------------
    def has(self, alias: str, version: str) -> bool:
        t = self._targets.get(alias)
        return t is not None and t.version == version

    def sync(self, loaded: dict[str, ModelSlot | None], keep: set[str]) -> None:
        """Offer events to the new (alias, version) slots from now on; stop offering to aliases
        that are gone (their streams drain: the workers finish what was put on them)."""
        with self._lock:
            for alias in [a for a in self._targets if a not in keep]:
                log.info("challenger %s retired: no more events on its stream", alias)
                self._targets.pop(alias)
            for alias, slot in loaded.items():
                if slot is None:
                    continue
                stream = stream_key(alias, slot.version, self.prefix)
                self._register(stream, alias, slot)
                t = _Target(
                    alias,
                    slot.version,
                    slot.spec_id,
                    slot.threshold,
                    stream,
                    sample_rate=self.rates.get(alias, self.default_rate),
                )
                self._targets[alias] = t
                self.metrics.shadow_sample_rate.labels(alias).set(t.sample_rate)
            self._snapshot = tuple(self._targets.values())

    def _register(self, stream: str, alias: str, slot: ModelSlot) -> None:
        """Describe the stream for the workers and create its group (raises when Redis is down:
        the watcher tries the alias again at its next poll)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(
            meta_key(stream, self.prefix),
            mapping={
                "model_name": self.model_name,
                "alias": alias,
                "version": slot.version,
                "spec_id": slot.spec_id,
                "threshold": repr(float(slot.threshold)),
            },
        )
        pipe.sadd(f"{self.prefix}:streams", stream)
        pipe.execute()
        ensure_group(self.r, stream)

    def set_rates(self, rates: dict[str, float]) -> None:
        with self._lock:
            self.rates = dict(rates)
            apply_rates(self._targets.values(), self.rates, self.default_rate, self.metrics)

    def select(self, u: float) -> tuple[_Target, ...]:
        return tuple(t for t in self._snapshot if u < t.sample_rate)

    # -- hot path (event loop) --------------------------------------------------------------
    def mirror(
        self,
        request_id: str,
        tx: dict[str, Any],
        union: list[float],
        router: FeatureRouter,
        workers: tuple[_Target, ...] | None = None,
    ) -> None:
        """Buffer one event for each of ``workers``' streams; never blocks, sheds instead."""
        frames: dict[str, bytes] = {}
        for t in self._snapshot if workers is None else workers:
            if len(self._buffer) >= BUFFER_EVENTS or t.lag >= self.max_backlog:
                self._shed(t, "queue_full", request_id, tx)
                continue
            frame = frames.get(t.spec_id)
            if frame is None:
                frame = frames[t.spec_id] = orjson.dumps(
                    (
                        request_id,
                        tx["transaction_id"],
                        router.slice(union, t.spec_id),
                        tx["amount"],
                        tx["event_time"],
                    ),
                    default=str,
                )
            self._buffer.append((t, request_id, frame))
            self.metrics.mirrored.labels(t.alias).inc()
        if len(self._buffer) >= SEND_BATCH:
            self._wake.set()

    def _shed(self, t: _Target, reason: str, request_id: str, tx: dict[str, Any]) -> None:
        shed(t, reason, request_id, tx, self.metrics, self.on_result)

    def _shed_frame(self, t: _Target, request_id: str, frame: bytes, reason: str) -> None:
        _rid, txid, _vector, amount, event_time = orjson.loads(frame)
        self._shed(
            t, reason, request_id, {"transaction_id": txid, "amount": amount, "event_time": event_time}
        )

    # -- sender thread ----------------------------------------------------------------------
    def _send(self) -> None:
        """Write buffered events to their streams, a pipeline per batch; on a Redis error keep
        the batch and try again (the buffer's bound sheds new events meanwhile)."""
        batch: list[tuple[_Target, str, bytes]] = []
        while not self._stop.is_set():
            if not batch:
                self._wake.wait(0.02)
                self._wake.clear()
                while self._buffer and len(batch) < SEND_BATCH:
                    batch.append(self._buffer.popleft())
                if not batch:
                    continue
            try:
                pipe = self.r.pipeline(transaction=False)
                for t, _rid, frame in batch:
                    pipe.xadd(t.stream, {"e": frame})
                pipe.execute()
            except Exception as err:
                self.send_errors += 1
                self.last_error = f"{type(err).__name__}: {err}"[:300]
                if self.send_errors <= 5 or self.send_errors % 100 == 0:
                    log.warning(
                        "shadow stream write failed (%d so far): %s", self.send_errors, self.last_error
                    )
                self._stop.wait(0.5)
                continue
            for t, _rid, _frame in batch:
                t.mirrored += 1
            batch = []
        self._buffer.extendleft(reversed(batch))  # unsent: back in front, in order

    # -- backlog and workers (once a second) ------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.refresh()
            except Exception as err:
                self.last_error = f"{type(err).__name__}: {err}"[:300]

    def refresh(self) -> None:
        """Read each stream's backlog and the workers' heartbeats into the metrics."""
        for t in self._snapshot:
            t.lag, t.pending = stream_backlog(self.r, t.stream)
            t.dead_letters = int(self.r.get(dead_key(t.stream, self.prefix)) or 0)
            self.metrics.stream_lag.labels(t.alias).set(t.lag)
            self.metrics.stream_pending.labels(t.alias).set(t.pending)
            self.metrics.stream_dead_letters.labels(t.alias).set(t.dead_letters)
        self.workers = worker_status(self.r, self.prefix)
        self.metrics.stream_workers.set(sum(w["age_s"] < WORKER_STALE_S for w in self.workers.values()))

    # -- reporting --------------------------------------------------------------------------
    def status(self) -> dict[str, dict[str, Any]]:
        return {
            t.alias: {
                "version": t.version,
                "transport": "redis-stream",
                "stream": t.stream,
                "state": "running",
                "sample_rate": t.sample_rate,
                "mirrored": t.mirrored,
                "shed": t.shed,
                "lag": t.lag,
                "pending": t.pending,
                "dead_letters": t.dead_letters,
                "buffered": len(self._buffer),
                "send_errors": self.send_errors,
                "workers": {k: v for k, v in self.workers.items() if v["age_s"] < WORKER_STALE_S},
            }
            for t in self._snapshot
        }

    def pids(self) -> dict[str, int]:
        return {}
