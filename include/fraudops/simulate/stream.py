"""Stream mode: simulated payment traffic POSTed to the scoring API in accelerated event time.

The sender is open-loop: transaction *i* is due at ``i / rate`` seconds after the start, whether or
not earlier requests have answered (a closed loop would slow down exactly when the service is
slow and hide its latency). ``speed`` sets how fast event time runs: the simulator's volume is
scaled so that ``rate`` wall-clock transactions a second cover ``speed`` event seconds on average.

Alongside, the payment system's event log is written to the warehouse in micro-batches
(transactions and the simulator's ground truth), and each label is written once the event clock
passes its ``label_time`` - so a chargeback arrives "weeks later" in accelerated time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from fraudops.exceptions import ConfigError
from fraudops.simulate.config import SimulationConfig

if TYPE_CHECKING:
    from fraudops.warehouse import Warehouse

log = logging.getLogger(__name__)

#: Fields of the scoring request body (the scoring service's input contract).
PAYLOAD_FIELDS: tuple[str, ...] = (
    "transaction_id",
    "card_id",
    "customer_id",
    "terminal_id",
    "merchant_id",
    "merchant_category",
    "amount",
    "currency",
    "timestamp",
    "region",
    "device_id",
    "device_type",
    "channel",
)


@dataclass
class StreamReport:
    """Outcome of a stream run: sender statistics and what reached the warehouse."""

    target_rate: float
    speed: float
    sent: int = 0
    ok: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    #: How late (ms) requests left compared with their open-loop schedule (saturation shows here).
    max_send_lag_ms: float = 0.0
    wall_seconds: float = 0.0
    event_start: dt.datetime | None = None
    event_end: dt.datetime | None = None
    transactions_written: int = 0
    labels_written: int = 0
    labels_pending: int = 0
    warehouse_errors: int = 0

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def latency_percentiles(self) -> dict[str, float]:
        import numpy as np

        if not self.latencies_ms:
            return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
        arr = np.asarray(self.latencies_ms)
        p50, p95, p99 = np.percentile(arr, [50, 95, 99])
        return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(arr.max())}

    def summary(self) -> str:
        p = self.latency_percentiles()
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(self.error_kinds.items())) or "none"
        return (
            f"sent {self.sent} in {self.wall_seconds:.1f}s ({self.achieved_rate:.1f}/s, target "
            f"{self.target_rate:g}/s, max send lag {self.max_send_lag_ms:.0f} ms)\n"
            f"ok {self.ok}, errors {self.errors} ({kinds})\n"
            f"latency ms: p50 {p['p50']:.1f}  p95 {p['p95']:.1f}  p99 {p['p99']:.1f}  max {p['max']:.1f}\n"
            f"event time {self.event_start} → {self.event_end} (speed ×{self.speed:g})\n"
            f"warehouse: {self.transactions_written} transactions, {self.labels_written} labels written, "
            f"{self.labels_pending} labels not yet due, {self.warehouse_errors} write errors"
        )


def scaled_config(config: SimulationConfig, rate: float, speed: float) -> SimulationConfig:
    """Scale volume so ``rate`` tx per wall second spans ``speed`` event seconds on average."""
    if rate <= 0 or speed <= 0:
        raise ConfigError(f"rate and speed must be > 0 (got rate={rate}, speed={speed})")
    natural_per_day = config.n_cards * config.tx_per_card_per_day * config.volume_scale
    wanted_per_day = rate * 86_400.0 / speed
    return replace(config, volume_scale=config.volume_scale * wanted_per_day / natural_per_day)


def stream(
    *,
    rate: float,
    speed: float,
    url: str | None = None,
    duration_s: float | None = None,
    seed: int = 42,
    start: dt.date | str | None = None,
    config: SimulationConfig | None = None,
    warehouse: Warehouse | None = None,
    concurrency: int = 16,
    flush_interval_s: float = 2.0,
    request_timeout_s: float = 5.0,
    max_transactions: int | None = None,
    stop_event: threading.Event | None = None,
) -> StreamReport:
    """Send simulated transactions to ``{url}/score`` until ``duration_s``/``max_transactions``/stop.

    ``warehouse=None`` only sends (no event log, no labels). Returns a ``StreamReport``; the
    warehouse tables are written idempotently, so stopping and restarting with the same seed and
    start never duplicates rows.
    """
    from fraudops.config import load_settings
    from fraudops.simulate.generator import to_date

    base_url = (url or load_settings().scoring.url).rstrip("/")
    cfg = scaled_config(config or SimulationConfig(), rate, speed)
    first = to_date(start) if start is not None else dt.datetime.now(dt.UTC).date()
    if concurrency < 1:
        raise ConfigError("concurrency must be >= 1")
    report = StreamReport(target_rate=rate, speed=speed)
    runner = _Streamer(
        base_url=base_url,
        cfg=cfg,
        seed=seed,
        first=first,
        rate=rate,
        warehouse=warehouse,
        concurrency=concurrency,
        flush_interval_s=flush_interval_s,
        request_timeout_s=request_timeout_s,
        duration_s=duration_s,
        max_transactions=max_transactions,
        stop_event=stop_event or threading.Event(),
        report=report,
    )
    try:
        asyncio.run(runner.run())
    except KeyboardInterrupt:  # Ctrl-C: the finally-block in run() already flushed
        log.info("stream interrupted")
    return report


@dataclass
class _Streamer:
    base_url: str
    cfg: SimulationConfig
    seed: int
    first: dt.date
    rate: float
    warehouse: Warehouse | None
    concurrency: int
    flush_interval_s: float
    request_timeout_s: float
    duration_s: float | None
    max_transactions: int | None
    stop_event: threading.Event
    report: StreamReport
    _tx_buffer: list[Any] = field(default_factory=list)
    _gt_buffer: list[Any] = field(default_factory=list)
    _pending_labels: list[Any] = field(default_factory=list)
    _event_clock_us: int = 0

    async def run(self) -> None:
        import httpx

        from fraudops.simulate.generator import iter_days

        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        sem = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        t0 = time.perf_counter()  # reset at the first send: generating day one is not sending time
        started = False
        last_flush = t0
        flush_task: asyncio.Task[None] | None = None
        i = 0
        async with httpx.AsyncClient(timeout=self.request_timeout_s, limits=limits) as client:
            try:
                # Days are generated lazily (a day is a pure function of seed and date), so the
                # stream can run for as long as wanted with one day in memory.
                for _, day in iter_days(self.first, 365_000, self.seed, self.cfg, id_prefix="str"):
                    rows = day.transactions.to_pylist()
                    self._pending_labels.append(day.labels)
                    gt_ids = set(day.ground_truth.column("transaction_id").to_pylist())
                    gt_rows = {r["transaction_id"]: r for r in day.ground_truth.to_pylist()}
                    for row in rows:
                        if not started:
                            t0 = last_flush = time.perf_counter()
                            started = True
                        if self._should_stop(i, t0):
                            return
                        due = t0 + i / self.rate
                        now = time.perf_counter()
                        if due > now:
                            await asyncio.sleep(due - now)
                        else:
                            self.report.max_send_lag_ms = max(self.report.max_send_lag_ms, (now - due) * 1e3)
                        if self.report.event_start is None:
                            self.report.event_start = row["event_time"]
                        self.report.event_end = row["event_time"]
                        self._event_clock_us = _us(row["event_time"])
                        task = asyncio.create_task(self._send(client, sem, row))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                        self._tx_buffer.append(row)
                        if row["transaction_id"] in gt_ids:
                            self._gt_buffer.append(gt_rows[row["transaction_id"]])
                        i += 1
                        if (
                            self.warehouse is not None
                            and time.perf_counter() - last_flush >= self.flush_interval_s
                            and (flush_task is None or flush_task.done())
                        ):
                            flush_task = asyncio.create_task(asyncio.to_thread(self._flush))
                            last_flush = time.perf_counter()
            finally:
                if tasks:
                    await asyncio.gather(*tasks, return_exceptions=True)
                self.report.wall_seconds = time.perf_counter() - t0
                if flush_task is not None:
                    await flush_task
                if self.warehouse is not None:
                    await asyncio.to_thread(self._flush)
                self.report.labels_pending = sum(t.num_rows for t in self._pending_labels)

    def _should_stop(self, i: int, t0: float) -> bool:
        if self.stop_event.is_set():
            return True
        if self.max_transactions is not None and i >= self.max_transactions:
            return True
        return self.duration_s is not None and time.perf_counter() - t0 + 1.0 / self.rate > self.duration_s

    async def _send(self, client: Any, sem: asyncio.Semaphore, row: dict[str, Any]) -> None:
        payload = {k: row[k] for k in PAYLOAD_FIELDS if k != "timestamp"}
        payload["timestamp"] = row["event_time"].isoformat()
        async with sem:
            start = time.perf_counter()
            try:
                resp = await client.post(f"{self.base_url}/score", json=payload)
            except Exception as err:  # network errors are results to count, not crashes
                self._count_error(type(err).__name__)
                return
            finally:
                self.report.sent += 1
            elapsed = (time.perf_counter() - start) * 1e3
            if 200 <= resp.status_code < 300:
                self.report.ok += 1
                self.report.latencies_ms.append(elapsed)
            else:
                self._count_error(f"http_{resp.status_code}")

    def _count_error(self, kind: str) -> None:
        self.report.errors += 1
        self.report.error_kinds[kind] = self.report.error_kinds.get(kind, 0) + 1

    def _flush(self) -> None:
        """Write buffered transactions/ground truth and every label whose time has come."""
        import pyarrow as pa
        import pyarrow.compute as pc

        assert self.warehouse is not None
        # Swap the buffers out first: this runs in a worker thread while the sender keeps appending
        # (a new day's labels arrive at any time); replacing the list at the end would drop them.
        tx, self._tx_buffer = self._tx_buffer, []
        gt, self._gt_buffer = self._gt_buffer, []
        pending, self._pending_labels = self._pending_labels, []
        clock = pa.scalar(self._event_clock_us, type=pa.timestamp("us", tz="UTC"))
        now = dt.datetime.now(dt.UTC)
        due_parts, keep = [], []
        for table in pending:
            is_due = pc.less_equal(table["label_time"], clock)
            due_parts.append(table.filter(is_due))
            rest = table.filter(pc.invert(is_due))
            if rest.num_rows:
                keep.append(rest)
        due = pa.concat_tables(due_parts) if due_parts else None
        try:
            if tx:
                tx_table = pa.Table.from_pylist(tx).set_column(
                    14, "ingested_at", pa.array([now] * len(tx), pa.timestamp("us", tz="UTC"))
                )
                self.report.transactions_written += self.warehouse.upsert("transactions", tx_table)
            if gt:
                self.warehouse.upsert("sim_ground_truth", pa.Table.from_pylist(gt))
            if due is not None and due.num_rows:
                # label_time >= event_time, so a due label's transaction has been sent already.
                self.report.labels_written += self.warehouse.upsert("labels", due)
            self._pending_labels[:0] = keep
        except Exception as err:  # keep streaming; the rows go back into the buffers for the next try
            log.warning("warehouse write failed, will retry: %s", err)
            self.report.warehouse_errors += 1
            self._tx_buffer[:0] = tx
            self._gt_buffer[:0] = gt
            self._pending_labels[:0] = pending  # upserts are idempotent: a partial write is redone


def _us(ts: dt.datetime) -> int:
    return (ts - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
