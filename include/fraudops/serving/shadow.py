"""The shadow pool: each challenger alias scores a mirrored sample in its own worker process.

Why processes (``multiprocessing`` spawn) and not threads: a challenger is unproven code and
data. In its own process a crash (even a segfault in native code), a hang or a memory blow-up
cannot take the production event loop with it, and the OS enforces the limits: ``RLIMIT_AS``
(address space) per worker, ``nice`` and CPU affinity (the last core) so production wins the CPU.

Each challenger has its own sample rate (a registered-model tag set by its booking, the console
or ``POST /deploy``; the service's ``shadow_sample_rate`` otherwise). The service draws one uniform
number per event and :meth:`ShadowPool.select` offers it to every challenger whose rate is above
it: the samples are nested (a 5 % challenger sees a subset of a 20 % one's events), and the
production row names the versions it was offered to (``sampled_for``), which is what each
challenger's evidence pairs with.

Production never waits for the pool: the request path writes one JSON line per challenger to that
worker's pipe, non-blocking (one ``os.write``: no feeder thread, lock hand-off or pickling in the
server, which measured 25 % of its throughput with ``multiprocessing.Queue``). The pipe's buffer is
the bounded queue (``shadow_queue_size`` KiB, so about that many events). A full pipe, a worker that
is down or a throttled share is *shed*: counted (``fraudops_shadow_shed{alias,reason}``) and logged
as a shadow row with ``error='shed:<reason>'`` and no score. An event a worker took and never
answered (it crashed, hung or was stopped) is logged the same way as ``shed:lost`` when the worker
is gone, after the results it had already sent: every offered event gets exactly one row. A
supervisor thread restarts crashed workers with exponential backoff, kills and restarts workers
whose heartbeat stops (hung), throttles workers whose mean latency exceeds ``shadow_slow_ms``
(halving their share of the sample, restoring it when they recover) and reports each worker's state.
Results come back in batches (every 50 ms or 64 results) on a per-worker queue (recreated with the
process: a killed process can leave a shared queue's lock held) and are logged as ``mode=shadow``
predictions with the exact vector production computed.

``faults`` (alias → "crash" | "hang" | "slow:<ms>") injects failures into a worker; the tests
and the benchmark use it to prove the isolation. It is not reachable from the HTTP API.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from fraudops.serving.features import FeatureRouter
    from fraudops.serving.metrics import ServingMetrics
    from fraudops.serving.models import ModelSlot
    from fraudops.serving.options import ServingOptions

log = logging.getLogger(__name__)

#: Seconds a fresh worker may take to import and load before heartbeats are required.
STARTUP_GRACE_S = 60.0
#: ``error`` of the shadow row logged for a shed event: ``shed:down|throttled|queue_full``.
SHED_PREFIX = "shed:"
MAX_BACKOFF_S = 30.0
#: A worker sends its results when it holds this many, or its oldest is this old.
RESULT_BATCH, RESULT_FLUSH_S = 64, 0.05
#: How long a worker sleeps between looks at an empty pipe (a shadow score may wait this long;
#: the 1 MiB pipe holds seconds of mirrored traffic, and fewer wake-ups on the shared core).
POLL_S = 0.05
#: Bytes of pipe buffer per event of ``shadow_queue_size`` (a mirrored event is ~1 KiB of JSON).
PIPE_BYTES_PER_EVENT = 1024


def apply_rates(
    members: Iterable[Any], rates: dict[str, float], default: float, metrics: ServingMetrics
) -> None:
    """Give each challenger (``alias``, ``version``, ``sample_rate``) its rate from ``rates`` (the
    registry's tags), ``default`` when it has none; logged and exported when it changes."""
    for w in members:
        rate = rates.get(w.alias, default)
        if rate != w.sample_rate:
            log.info("challenger %s v%s: sample rate %g -> %g", w.alias, w.version, w.sample_rate, rate)
            w.sample_rate = rate
            metrics.shadow_sample_rate.labels(w.alias).set(rate)


def shed(
    w: Any,
    reason: str,
    request_id: str,
    tx: dict[str, Any],
    metrics: ServingMetrics,
    on_result: Callable[[dict[str, Any]], None],
) -> None:
    """Count an event challenger ``w`` did not score and log it as its shadow row
    (``error='shed:<reason>'``, no score), so the evidence can tell capacity shedding from a
    challenger that failed. ``w`` has ``alias``, ``version``, ``spec_id``, ``threshold``, ``shed``."""
    w.shed += 1
    metrics.shed.labels(w.alias, reason).inc()
    try:
        on_result(
            {
                "request_id": request_id,
                "transaction_id": tx["transaction_id"],
                "model_version": w.version,
                "alias": w.alias,
                "score": None,
                "latency_ms": None,
                "error": f"{SHED_PREFIX}{reason}",
                "features": None,
                "amount": tx["amount"],
                "event_time": tx["event_time"],
                "feature_set": w.spec_id,
                "threshold": w.threshold,
            }
        )
    except Exception:
        log.exception("shadow shed handler failed")


def _pipe_capacity(events: int) -> int:
    """Pipe buffer for about ``events`` mirrored events, within the kernel's bounds."""
    try:
        ceiling = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    except (OSError, ValueError):
        ceiling = 1 << 20
    return max(4096, min(events * PIPE_BYTES_PER_EVENT, ceiling))


def _read(fd: int, timeout: float) -> bytes | None:
    """What the non-blocking ``fd`` has (after sleeping up to ``timeout`` if empty), None at EOF.

    The worker polls rather than blocking on the pipe: a write that wakes a sleeping reader costs
    the *server* a wake-up (and, on a busy 2-core machine, often its CPU to the woken process);
    a write into a pipe nobody waits on is a plain copy.
    """
    try:
        return os.read(fd, 1 << 18) or None
    except BlockingIOError:
        pass
    time.sleep(min(timeout, POLL_S))
    try:
        return os.read(fd, 1 << 18) or None
    except BlockingIOError:
        return b""


def _apply_limits(address_space_mb: int, nice: int, cpus: set[int] | None) -> None:
    import resource

    if address_space_mb > 0:
        limit = address_space_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if nice:
        os.nice(nice)
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


def _inject(fault: str | None, n: int) -> None:
    if not fault:
        return
    if fault == "crash":
        os._exit(70)
    if fault == "hang":
        while True:  # stuck in "model code": no heartbeat any more
            time.sleep(3600)
    if fault.startswith("slow:"):
        time.sleep(float(fault.split(":", 1)[1]) / 1e3)


def worker_main(
    bundle: str,
    inq: Any,
    outq: Any,
    heartbeat: Any,
    ready: Any,
    address_space_mb: int,
    nice: int,
    cpus: set[int] | None,
    fault: str | None,
) -> None:
    """Entry point of a shadow worker process: load the bundle, score what arrives, report back.

    ``inq`` is the read end of the pipe the server writes JSON lines to (one mirrored event each:
    request id, transaction id, vector, amount, event time, raw transaction); EOF means stop.
    Results go back on ``outq`` in lists of up to ``RESULT_BATCH``, at most ``RESULT_FLUSH_S`` late.
    """
    heartbeat.value = time.monotonic()
    _apply_limits(address_space_mb, nice, cpus)
    from fraudops.training.package import load_scorer

    scorer = load_scorer(bundle, intra_op_num_threads=1)
    ready.value = 1
    fd = inq.fileno()
    os.set_blocking(fd, False)
    n = 0
    buffered = b""
    results: list[tuple[Any, ...]] = []
    first = 0.0
    while True:
        heartbeat.value = time.monotonic()
        wait = POLL_S if not results else max(0.0, first + RESULT_FLUSH_S - time.monotonic())
        chunk = _read(fd, wait)
        if chunk is None:  # the server closed the pipe: stop
            if results:
                outq.put(results)
            return
        if chunk:
            *lines, buffered = (buffered + chunk).split(b"\n")
            for line in lines:
                n += 1
                _inject(fault, n)
                heartbeat.value = time.monotonic()
                rid, txid, vector, amount, event_time = orjson.loads(line)[:5]
                t = time.perf_counter()
                error = None
                score: float | None
                try:
                    score = float(scorer.score_one(vector))
                    if score != score or not 0.0 <= score <= 1.0:
                        error, score = ("nan" if score != score else "out_of_range"), None
                except Exception as err:
                    score, error = None, f"error:{type(err).__name__}"
                latency_ms = (time.perf_counter() - t) * 1e3
                if not results:
                    first = time.monotonic()
                when = dt.datetime.fromisoformat(event_time)
                results.append((rid, txid, score, latency_ms, error, vector, amount, when))
        if results and (len(results) >= RESULT_BATCH or time.monotonic() - first >= RESULT_FLUSH_S):
            outq.put(results)
            results = []


@dataclass
class _Worker:
    alias: str
    version: str
    path: Path
    spec_id: str
    threshold: float
    fault: str | None = None
    #: Share of live traffic offered to this challenger (see :meth:`ShadowPool.select`).
    sample_rate: float = 0.0
    proc: Any = None
    inq: Any = None  # the worker's read end of its pipe
    fd: int | None = None  # the server's write end (non-blocking); None while down
    pending: bytes = b""  # the unwritten rest of a frame longer than PIPE_BUF
    #: Offered and not yet answered: request id -> (transaction id, amount, event time). Popped by
    #: whoever accounts for the event first (its result, or the dead letter when the worker
    #: dies), so every offered event is logged exactly once.
    inflight: dict[str, tuple[Any, Any, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    outq: Any = None
    heartbeat: Any = None
    ready: Any = None
    started: float = 0.0
    next_start: float = 0.0
    backoff: float = 0.5
    state: str = "starting"
    restarts: int = 0
    processed: int = 0
    errors: int = 0
    shed: int = 0
    throttle: float = 1.0
    latency_ewma: float | None = None
    last_throttle_change: float = 0.0
    last_error: str = ""
    history: list[str] = field(default_factory=list)

    @property
    def up(self) -> bool:
        return self.state == "running"


class ShadowPool:
    """One supervised worker process per challenger alias."""

    def __init__(
        self,
        options: ServingOptions,
        metrics: ServingMetrics,
        on_result: Callable[[dict[str, Any]], None],
    ) -> None:
        import multiprocessing as mp

        self.options = options
        self.metrics = metrics
        self.on_result = on_result
        self.ctx = mp.get_context("spawn")
        self.faults: dict[str, str] = {}
        #: Per-alias sample rates (registry tags); an alias without one samples ``default_rate``.
        self.rates: dict[str, float] = {}
        self.default_rate = options.shadow_sample_rate
        self._workers: dict[str, _Worker] = {}
        self._snapshot: tuple[_Worker, ...] = ()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._rand = random.random
        n = os.cpu_count() or 1
        self.cpus = {n - 1} if n > 1 else None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        for target, name in ((self._supervise, "shadow-supervisor"), (self._collect, "shadow-collector")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        self._threads.clear()
        with self._lock:
            for w in list(self._workers.values()):
                self._terminate(w, graceful=True)
            self._workers.clear()
            self._snapshot = ()

    # -- membership (watcher thread) --------------------------------------------------------
    def has(self, alias: str, version: str) -> bool:
        w = self._workers.get(alias)
        return w is not None and w.version == version

    def sync(self, loaded: dict[str, ModelSlot | None], keep: set[str]) -> None:
        """Start workers for new (alias, version) slots; stop workers whose alias is gone."""
        with self._lock:
            for alias in [a for a in self._workers if a not in keep]:
                log.info("challenger %s retired from the shadow pool", alias)
                self._terminate(self._workers.pop(alias), graceful=True)
            for alias, slot in loaded.items():
                if slot is None:
                    continue
                old = self._workers.pop(alias, None)
                if old is not None:
                    self._terminate(old, graceful=True)
                assert slot.path is not None
                w = _Worker(
                    alias,
                    slot.version,
                    slot.path,
                    slot.spec_id,
                    slot.threshold,
                    self.faults.get(alias),
                    sample_rate=self.rates.get(alias, self.default_rate),
                )
                self._workers[alias] = w
                self.metrics.shadow_sample_rate.labels(alias).set(w.sample_rate)
                self._spawn(w)
            self._snapshot = tuple(self._workers.values())

    def set_rates(self, rates: dict[str, float]) -> None:
        """Apply per-alias sample rates (the registry's tags; an alias left out samples the
        default). Takes effect with the next event."""
        with self._lock:
            self.rates = dict(rates)
            apply_rates(self._workers.values(), self.rates, self.default_rate, self.metrics)

    def select(self, u: float) -> tuple[_Worker, ...]:
        """The challengers an event with uniform draw ``u`` in [0, 1) is offered to: those whose
        sample rate is above it (so each gets its rate's share, and lower rates nest in higher)."""
        return tuple(w for w in self._snapshot if u < w.sample_rate)

    def _spawn(self, w: _Worker) -> None:
        import fcntl

        w.inq, writer = self.ctx.Pipe(duplex=False)
        fd = os.dup(writer.fileno())
        writer.close()
        os.set_blocking(fd, False)
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _pipe_capacity(self.options.shadow_queue_size))
        w.outq = self.ctx.Queue()
        w.heartbeat = self.ctx.Value("d", time.monotonic(), lock=False)
        w.ready = self.ctx.Value("i", 0, lock=False)
        w.proc = self.ctx.Process(
            target=worker_main,
            args=(
                str(w.path),
                w.inq,
                w.outq,
                w.heartbeat,
                w.ready,
                self.options.shadow_address_space_mb,
                self.options.shadow_nice,
                self.cpus,
                w.fault,
            ),
            name=f"shadow-{w.alias}",
            daemon=True,
        )
        w.proc.start()
        w.inq.close()  # the child has its own copy of the read end
        with w.lock:
            w.fd, w.pending = fd, b""
        w.started = time.monotonic()
        w.state = "starting"
        log.info("shadow worker %s v%s started (pid %s)", w.alias, w.version, w.proc.pid)

    def _terminate(self, w: _Worker, graceful: bool) -> None:
        proc = w.proc
        if proc is None:
            return
        with w.lock:  # no mirror() writes to this fd (or to a reuse of its number) after this
            fd, w.fd, w.pending = w.fd, None, b""
        if fd is not None:
            os.close(fd)  # EOF: a healthy worker sends what it holds and exits
        if graceful and proc.is_alive():
            proc.join(2)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        if w.outq is not None:
            self._drain(w)
            w.outq.cancel_join_thread()
            w.outq.close()
        self._dead_letter(w)
        w.proc = None
        w.state = "stopped"

    def _drain(self, w: _Worker) -> None:
        """Deliver the results a stopped worker had already sent."""
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                batch = w.outq.get(timeout=0.05)
            except (queue.Empty, OSError, ValueError, EOFError):
                return
            except Exception:  # a batch torn by the kill: what it held is dead-lettered below
                log.warning("shadow worker %s left an unreadable result batch", w.alias)
                return
            self._deliver(w, batch)

    def _dead_letter(self, w: _Worker) -> None:
        """Log every event the stopped worker took and never answered as ``shed:lost`` (counted
        as the challenger's error by the gate), once each."""
        lost = 0
        for rid in list(w.inflight):
            entry = w.inflight.pop(rid, None)
            if entry is None:  # its result won the race
                continue
            txid, amount, event_time = entry
            self._shed(w, "lost", rid, {"transaction_id": txid, "amount": amount, "event_time": event_time})
            lost += 1
        if lost:
            log.warning(
                "shadow worker %s stopped with %d events unanswered: logged as shed:lost", w.alias, lost
            )

    # -- hot path (event loop) --------------------------------------------------------------
    def mirror(
        self,
        request_id: str,
        tx: dict[str, Any],
        union: list[float],
        router: FeatureRouter,
        workers: tuple[_Worker, ...] | None = None,
    ) -> None:
        """Offer one event to ``workers`` (those :meth:`select` chose; default every challenger);
        never blocks, sheds and counts instead."""
        frames: dict[str, bytes] = {}  # challengers on the same feature set get the same line
        for w in self._snapshot if workers is None else workers:
            if not w.up:
                self._shed(w, "down", request_id, tx)
                continue
            if w.throttle < 1.0 and self._rand() >= w.throttle:
                self._shed(w, "throttled", request_id, tx)
                continue
            frame = frames.get(w.spec_id)
            if frame is None:
                frame = frames[w.spec_id] = orjson.dumps(
                    (
                        request_id,
                        tx["transaction_id"],
                        router.slice(union, w.spec_id),
                        tx["amount"],
                        tx["event_time"],
                        tx,
                    ),
                    option=orjson.OPT_APPEND_NEWLINE,
                    default=str,  # never let an odd context value fail the request
                )
            reason = self._offer(w, frame, request_id, (tx["transaction_id"], tx["amount"], tx["event_time"]))
            if reason is not None:
                self._shed(w, reason, request_id, tx)
                continue
            self.metrics.mirrored.labels(w.alias).inc()

    @staticmethod
    def _offer(w: _Worker, frame: bytes, request_id: str, entry: tuple[Any, Any, Any]) -> str | None:
        """Write ``frame`` to ``w``'s pipe without blocking: None, or why it was shed.

        A write of at most PIPE_BUF bytes to a non-blocking pipe is all or nothing; a longer frame
        can be cut short, and its rest is written first on the next offer (a frame is never torn).
        The event is in flight from before the write (its result can arrive at once).
        """
        with w.lock:
            if w.fd is None:
                return "down"
            try:
                if w.pending:
                    w.pending = w.pending[os.write(w.fd, w.pending) :]
                    if w.pending:
                        return "queue_full"
                w.inflight[request_id] = entry
                written = os.write(w.fd, frame)
            except BlockingIOError:
                w.inflight.pop(request_id, None)
                return "queue_full"
            except OSError:  # EPIPE: the worker is gone (the supervisor restarts it)
                w.inflight.pop(request_id, None)
                return "down"
            if written < len(frame):
                w.pending = frame[written:]
            return None

    def _shed(self, w: _Worker, reason: str, request_id: str, tx: dict[str, Any]) -> None:
        """Count the shed event and log it as a shadow row (``error='shed:<reason>'``, no score), so
        the release evidence can tell capacity shedding from a challenger that failed."""
        shed(w, reason, request_id, tx, self.metrics, self.on_result)

    # -- supervisor -------------------------------------------------------------------------
    def _supervise(self) -> None:
        while not self._stop.wait(0.2):
            with self._lock:
                for w in self._workers.values():
                    try:
                        self._check(w)
                    except Exception:
                        log.exception("shadow supervisor failed on %s", w.alias)
                self._snapshot = tuple(self._workers.values())

    def _check(self, w: _Worker) -> None:
        now = time.monotonic()
        if w.proc is None:
            if w.state in ("crashed", "hung") and now >= w.next_start:
                w.history.append(f"restart after {w.state}")
                self._spawn(w)
            return
        if not w.proc.is_alive():
            code = w.proc.exitcode
            self._restart_later(w, "crashed", f"exited with code {code}")
            return
        fresh = now - w.heartbeat.value < self.options.shadow_hang_timeout_s
        if w.ready.value != 1:
            if now - w.started > STARTUP_GRACE_S:
                self._restart_later(w, "hung", "did not finish loading")
            return
        if not fresh:
            self._restart_later(w, "hung", f"no heartbeat for {now - w.heartbeat.value:.1f} s")
            return
        if w.state != "running":
            w.state = "running"
        if now - w.started > 30 and w.backoff > 0.5:
            w.backoff = 0.5  # stable again: forget past crashes
        self.metrics.shadow_up.labels(w.alias).set(1)
        self.metrics.shadow_throttle.labels(w.alias).set(w.throttle)

    def _restart_later(self, w: _Worker, state: str, detail: str) -> None:
        self._terminate(w, graceful=False)
        w.state = state
        w.restarts += 1
        w.last_error = detail
        w.next_start = time.monotonic() + w.backoff
        w.backoff = min(w.backoff * 2, MAX_BACKOFF_S)
        self.metrics.shadow_restarts.labels(w.alias, state).inc()
        self.metrics.shadow_up.labels(w.alias).set(0)
        log.warning(
            "shadow worker %s v%s %s (%s); restart in %.1f s",
            w.alias,
            w.version,
            state,
            detail,
            w.next_start - time.monotonic(),
        )

    # -- results ----------------------------------------------------------------------------
    def _collect(self) -> None:
        while not self._stop.is_set():
            got = 0
            for w in self._snapshot:
                q = w.outq
                if q is None or w.proc is None:
                    continue
                for _ in range(50):
                    try:
                        batch = q.get_nowait()
                    except (queue.Empty, OSError, ValueError, EOFError):
                        break
                    got += 1
                    self._deliver(w, batch)
            if not got:
                self._wait_readable()

    def _deliver(self, w: _Worker, batch: list[Any]) -> None:
        for rid, txid, score, latency_ms, error, vector, amount, event_time in batch:
            if w.inflight.pop(rid, None) is None:
                continue  # already dead-lettered (or not offered by this pool): never log twice
            w.processed += 1
            if error:
                w.errors += 1
            self._track_latency(w, latency_ms)
            try:
                self.on_result(
                    {
                        "request_id": rid,
                        "transaction_id": txid,
                        "model_version": w.version,
                        "alias": w.alias,
                        "score": score,
                        "latency_ms": latency_ms,
                        "error": error,
                        "features": vector,
                        "amount": amount,
                        "event_time": event_time,
                        "feature_set": w.spec_id,
                        "threshold": w.threshold,
                    }
                )
            except Exception:
                log.exception("shadow result handler failed")

    def _wait_readable(self) -> None:
        """Sleep until a result queue has data (no polling wake-ups competing for the GIL)."""
        from multiprocessing.connection import wait

        readers = [w.outq._reader for w in self._snapshot if w.outq is not None and w.proc is not None]
        if not readers:
            time.sleep(0.1)
            return
        try:
            wait(readers, timeout=0.25)
        except (OSError, ValueError):  # a queue closed under us by a restart
            time.sleep(0.05)

    def _track_latency(self, w: _Worker, latency_ms: float) -> None:
        w.latency_ewma = latency_ms if w.latency_ewma is None else 0.9 * w.latency_ewma + 0.1 * latency_ms
        now = time.monotonic()
        if now - w.last_throttle_change < 1.0:
            return
        slow = self.options.shadow_slow_ms
        if w.latency_ewma > slow and w.throttle > 1 / 64:
            w.throttle /= 2
            w.last_throttle_change = now
            log.warning(
                "shadow worker %s is slow (%.1f ms mean): share cut to %.3f",
                w.alias,
                w.latency_ewma,
                w.throttle,
            )
        elif w.latency_ewma < slow / 2 and w.throttle < 1.0:
            w.throttle = min(1.0, w.throttle * 2)
            w.last_throttle_change = now

    # -- reporting --------------------------------------------------------------------------
    def status(self) -> dict[str, dict[str, Any]]:
        out = {}
        for w in self._snapshot:
            pid = None if w.proc is None else w.proc.pid
            out[w.alias] = {
                "version": w.version,
                "pid": pid,
                "state": w.state,
                "restarts": w.restarts,
                "processed": w.processed,
                "errors": w.errors,
                "shed": w.shed,
                "in_flight": len(w.inflight),
                "throttle": w.throttle,
                "sample_rate": w.sample_rate,
                "latency_ms_mean": None if w.latency_ewma is None else round(w.latency_ewma, 4),
                "rss_mb": _rss_mb(pid),
                "last_error": w.last_error,
            }
        return out

    def pids(self) -> dict[str, int]:
        return {w.alias: w.proc.pid for w in self._snapshot if w.proc is not None}


def _rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        import psutil

        return round(float(psutil.Process(pid).memory_info().rss) / 2**20, 1)
    except Exception:
        return None
