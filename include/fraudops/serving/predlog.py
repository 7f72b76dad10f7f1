"""Durable prediction logging: spool before acknowledging, ship from a supervised process.

Hot path: ``PredictionLog.write(row)`` appends one JSON line to the open segment of the spool
folder (``SpoolJournal``: one ``write`` syscall under a lock) and returns; the service calls it
before the response goes out, so a row the client saw acknowledged is in the OS and survives a
SIGKILL of the service. Nothing is held only in memory (except, on a failed disk write, a
counted backlog that is retried on the next write).

Off the hot path, a supervisor thread in the service seals the open segment every
``flush_interval_s`` (or at ``batch_size`` rows), fsyncs on ``fsync_interval_s`` (a power loss
can take what was appended in the last interval; a process kill takes nothing), collects the
shipper's counts and restarts the shipper process whenever it is dead: no ``/metrics`` scrape
or HTTP call is needed for that. The shipper (``SpoolShipper`` in its own process: Arrow,
Parquet and the BigQuery client hold the GIL long enough to move the event loop's p99, measured)
sends sealed segments oldest first with a keyed MERGE and deletes them only after the warehouse
accepted them; any failure leaves them in place for the next try, corrupt ones are quarantined.

A service killed with SIGKILL leaves an open segment; its orphaned shipper notices, seals it,
ships everything and exits; the next service on the same folder adopts whatever is left.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fraudops.config import WarehouseConfig
from fraudops.warehouse.journal import OPEN_SUFFIX, SEALED_SUFFIX, SpoolJournal, adopt_orphans
from fraudops.warehouse.spool import SpoolStats

log = logging.getLogger(__name__)

#: Shipper counts (``ShipStats`` fields) -> the ``SpoolStats`` fields they add to.
_SHIP_TO_STATS = {
    "shipped_rows": "written",
    "replayed_rows": "replayed_rows",
    "retried": "retried",
    "recovered_rows": "recovered_rows",
    "quarantined_rows": "quarantined_rows",
    "quarantined_files": "quarantined_files",
    "failed_writes": "failed_writes",
}


def shipper_main(
    cfg: WarehouseConfig,
    spool_dir: str,
    retry_interval_s: float,
    poll_s: float,
    control: Any,
    replies: Any,
) -> None:
    """Entry point of the shipper process: ship, answer flush/stop, leave when the service is gone."""
    from fraudops.warehouse import Warehouse
    from fraudops.warehouse.journal import ShipStats, SpoolShipper

    sent = ShipStats()
    holder: list[SpoolShipper] = []

    def report(kind: str = "stats", token: int | None = None) -> None:
        nonlocal sent
        if not holder:
            return
        now = ShipStats(**asdict(holder[0].stats))
        replies.put((kind, token, asdict(now.minus(sent)), holder[0].last_error))
        sent = now

    shipper = SpoolShipper(
        Warehouse(cfg), "predictions", Path(spool_dir), retry_interval_s=retry_interval_s, on_change=report
    )
    holder.append(shipper)
    report()
    parent = os.getppid()

    def ship(force: bool) -> None:
        try:
            shipper.ship(force=force)
        except Exception as err:  # the segments stay on disk; try again after the back-off
            shipper.stats.retried += 1
            shipper.last_error = f"{type(err).__name__}: {err}"[:500]
            shipper.down_until = time.monotonic() + retry_interval_s
            log.exception("prediction shipper pass failed; its segments stay in the spool")
            report()

    while True:
        try:
            msg = control.get(timeout=poll_s)
        except (queue.Empty, EOFError, OSError):
            msg = None
        if os.getppid() != parent:  # the service was killed: seal its segment, ship all, go
            log.warning("scoring service %d is gone; shipping its spool before exiting", parent)
            adopt_orphans(Path(spool_dir))
            ship(force=True)
            return
        if msg is None:
            ship(force=False)
            continue
        kind, token = msg
        ship(force=True)
        if kind == "stop":
            report("closed", token)
            return
        report("flushed", token)


class PredictionLog:
    """Service-side handle: ``write`` spools durably; a supervisor keeps the shipper alive."""

    def __init__(
        self,
        cfg: WarehouseConfig,
        spool_dir: Path,
        *,
        batch_size: int = 10_000,
        flush_interval_s: float = 1.0,
        retry_interval_s: float = 5.0,
        fsync_interval_s: float = 1.0,
        watch_interval_s: float = 0.2,
    ) -> None:
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.cfg = cfg
        self.spool_dir = Path(spool_dir)
        self.retry_interval_s = retry_interval_s
        self.fsync_interval_s = fsync_interval_s
        self.watch_interval_s = watch_interval_s
        self.journal = SpoolJournal(self.spool_dir, max_rows=batch_size, max_age_s=flush_interval_s)
        self.proc: Any = None
        self.control: Any = None
        self.replies: Any = None
        self.restarts = 0
        self.incarnation = 0
        self._stats = SpoolStats()
        self._answers: dict[int, str] = {}
        self._cond = threading.Condition()
        self._seq = 0
        self._closing = False
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._last_sync = time.monotonic()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> PredictionLog:
        adopt_orphans(self.spool_dir)  # segments a killed predecessor left open
        self._closing = False
        self._spawn()
        if self._watchdog is None or not self._watchdog.is_alive():
            self._stop.clear()
            self._watchdog = threading.Thread(
                target=self._supervise, name="prediction-log-watchdog", daemon=True
            )
            self._watchdog.start()
        return self

    def _spawn(self) -> None:
        # Fresh queues for each process: a process killed while holding a queue's lock would
        # leave a shared queue unusable.
        self.control = self.ctx.Queue()
        self.replies = self.ctx.Queue()
        self.proc = self.ctx.Process(
            target=shipper_main,
            args=(self.cfg, str(self.spool_dir), self.retry_interval_s, self.watch_interval_s),
            kwargs={"control": self.control, "replies": self.replies},
            name="prediction-shipper",
            daemon=True,
        )
        self.proc.start()
        with self._cond:
            self.incarnation += 1
            self._cond.notify_all()

    # -- hot path -------------------------------------------------------------------------------
    def write(self, row: dict[str, Any]) -> None:
        """Append the row to the spool (in the OS when this returns); never raises, never blocks
        on the warehouse."""
        self.journal.append(row)

    # -- supervisor -----------------------------------------------------------------------------
    def _supervise(self) -> None:
        while not self._stop.wait(self.watch_interval_s):
            try:
                self._watch_once()
            except Exception:  # the supervisor itself must outlive anything it watches
                log.exception("prediction log supervisor pass failed")

    def _watch_once(self) -> None:
        self.journal.rotate()
        if time.monotonic() - self._last_sync >= self.fsync_interval_s:
            self.journal.sync()
            self._last_sync = time.monotonic()
        self._collect()
        proc = self.proc
        if not self._closing and proc is not None and not proc.is_alive():
            self._collect()  # what it reported before dying
            self.restarts += 1
            log.error(
                "prediction shipper exited with %s; restarting it (restart %d)", proc.exitcode, self.restarts
            )
            self._spawn()

    def _collect(self) -> None:
        replies = self.replies
        while True:
            try:
                kind, token, delta, last_error = replies.get_nowait()
            except (queue.Empty, OSError, ValueError, EOFError):
                return
            with self._cond:
                for name, target in _SHIP_TO_STATS.items():
                    setattr(self._stats, target, getattr(self._stats, target) + int(delta.get(name, 0)))
                if last_error:
                    self._stats.last_error = last_error
                if token is not None:
                    self._answers[token] = kind
                self._cond.notify_all()

    def _ask(self, kind: str, timeout_s: float) -> bool:
        """Send ``kind`` (flush/stop) to the shipper and wait for its answer; re-sent to a
        restarted shipper."""
        with self._cond:
            self._seq += 1
            token = self._seq
        deadline = time.monotonic() + timeout_s
        sent_to = -1
        while True:
            with self._cond:
                if token in self._answers:
                    del self._answers[token]
                    return True
                if sent_to != self.incarnation:
                    sent_to = self.incarnation
                    self.control.put((kind, token))
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(0.2, left))
            if self._watchdog is None or not self._watchdog.is_alive():
                self._collect()  # no supervisor (closing): read the answers here

    # -- for tests and ops ----------------------------------------------------------------------
    def snapshot(self) -> SpoolStats:
        with self._cond:
            s = SpoolStats(**asdict(self._stats))
        j = self.journal
        s.accepted = j.appended + j.errors
        s.spooled_rows = j.appended
        s.spooled_files = j.sealed
        s.spool_errors = j.errors
        s.lost_rows = j.lost
        s.buffered = j.backlog
        s.writer_restarts = self.restarts
        if j.last_error and not s.last_error:
            s.last_error = j.last_error
        s.pending_files = sum(
            1
            for p in self.spool_dir.iterdir()
            if p.name.endswith((OPEN_SUFFIX, SEALED_SUFFIX)) or p.suffix == ".parquet"
        )
        return s

    def flush(self, timeout_s: float = 120.0) -> SpoolStats:
        """Seal the open segment and have the shipper try everything on disk once; wait for it."""
        self.journal.seal()
        if not self._ask("flush", timeout_s):
            raise TimeoutError("prediction shipper did not answer a flush")
        return self.snapshot()

    def close(self, timeout_s: float = 120.0) -> SpoolStats:
        """Seal and fsync the spool, let the shipper make a last pass, stop it and the supervisor."""
        self._closing = True
        self.journal.close()
        if self.proc is not None and self.proc.is_alive() and not self._ask("stop", timeout_s):
            log.warning("prediction shipper did not finish its last pass; the spool keeps the rest")
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join(5)
            self._watchdog = None
        if self.proc is not None:
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(5)
            self._collect()
            self.proc = None
        return self.snapshot()

    def describe(self) -> dict[str, Any]:
        from fraudops.serving.shadow import _rss_mb

        pid = None if self.proc is None else self.proc.pid
        return {"pid": pid, "rss_mb": _rss_mb(pid), "restarts": self.restarts}
