"""Prediction-log hot path: the durable spool (write() to a segment file before the answer) vs the
previous in-memory buffer (a list handed to the logger process through a multiprocessing queue
every 64 rows), side by side in one run.

    .venv/bin/python benchmarks/bench_predlog.py [--rows 100000] [--dir /path/on/the/spool/disk]

Each variant gets the same service-shaped rows (17 columns, a 34-feature vector as JSON text) from
one thread, timed call by call. "cpu µs/row" is the whole process's CPU time per row, so it also
counts the old path's feeder thread (pickling) and the new path's supervisor (rotation, fsync).
No warehouse is involved: only what the request path pays is measured; shipping runs elsewhere.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from fraudops.warehouse.journal import SpoolJournal


def rows(n: int) -> list[dict[str, Any]]:
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    vec = orjson.dumps([float(i) * 1.37 for i in range(34)]).decode()
    return [
        {
            "transaction_id": f"tx-{i}",
            "request_id": f"0123456789ab-{i:x}",
            "model_name": "fraud-detector",
            "model_version": "7",
            "mode": "production",
            "alias": "champion",
            "score": (i % 997) / 997,
            "decision": "approve",
            "latency_ms": 0.21,
            "fallback": False,
            "error": None,
            "amount": 42.5,
            "event_time": t0 + dt.timedelta(seconds=i),
            "feature_set": "f@1-abc",
            "features": vec,
            "served_at": dt.datetime.now(dt.UTC),
            "sampled": i % 10 == 0,
        }
        for i in range(n)
    ]


def _drain(q: Any) -> None:  # the old logger process's reading side, minus the warehouse
    while q.get() is not None:
        pass


class InMemoryLog:
    """The previous ``PredictionLog.write`` hot path (commit 0cdbe33), with its logger process
    replaced by a reader that discards: rows batched in a list, ``Queue.put`` every 64, a
    ticker sending partial batches every 0.1 s."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.rows = ctx.Queue()
        self.proc = ctx.Process(target=_drain, args=(self.rows,), daemon=True)
        self.proc.start()
        self._batch: list[dict[str, Any]] = []
        self._batch_lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def write(self, row: dict[str, Any]) -> None:
        with self._batch_lock:
            self._batch.append(row)
            full = len(self._batch) >= 64
        if full:
            self._send()

    def _send(self) -> None:
        with self._batch_lock:
            batch, self._batch = self._batch, []
        if batch:
            self.rows.put(batch)

    def _tick(self) -> None:
        while not self._stop.wait(0.1):
            self._send()

    def close(self) -> None:
        self._stop.set()
        self._send()
        self.rows.put(None)
        self.proc.join(60)


class DurableLog:
    """``PredictionLog.write`` (the journal append) with its supervisor's rotation and group fsync."""

    def __init__(self, folder: Path, fsync_interval_s: float) -> None:
        self.journal = SpoolJournal(folder, max_rows=10_000, max_age_s=3.0)
        self._stop = threading.Event()
        self.fsync_interval_s = fsync_interval_s
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def write(self, row: dict[str, Any]) -> None:
        self.journal.append(row)

    def _watch(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.2):
            self.journal.rotate()
            if time.monotonic() - last >= self.fsync_interval_s:
                self.journal.sync()
                last = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.journal.close()


def measure(
    name: str, write: Callable[[dict[str, Any]], None], data: list[dict[str, Any]], rate: float = 0.0
) -> dict[str, Any]:
    """Time each ``write``; back to back, or paced at ``rate`` rows/s (a service's steady load)."""
    per = np.empty(len(data), dtype=np.int64)
    clock = time.perf_counter_ns
    step = int(1e9 / rate) if rate else 0
    c0, w0 = time.process_time_ns(), clock()
    for i, row in enumerate(data):
        if step:
            wait = w0 + i * step - clock()
            if wait > 0:
                time.sleep(wait / 1e9)
        t = clock()
        write(row)
        per[i] = clock() - t
    wall = (clock() - w0) / 1e9
    cpu = (time.process_time_ns() - c0) / 1e3 / len(data)
    us = per / 1e3
    return {
        "name": name,
        "rows_s": len(data) / wall,
        "mean": float(us.mean()),
        "p50": float(np.percentile(us, 50)),
        "p99": float(np.percentile(us, 99)),
        "p999": float(np.percentile(us, 99.9)),
        "max": float(us.max()),
        "cpu": cpu,
    }


def fs_type(path: Path) -> str:
    try:
        out = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "?"
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dir", type=Path, default=None, help="spool folder's parent (default: a temp folder)")
    ap.add_argument("--fsync-interval", type=float, default=1.0)
    ap.add_argument("--rate", type=float, default=2_000.0, help="rows/s of the paced run")
    ap.add_argument("--paced-seconds", type=float, default=10.0)
    args = ap.parse_args()
    data = rows(args.rows)
    paced = rows(int(args.rate * args.paced_seconds))
    warm = rows(2_000)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        for label, batch, rate in (
            ("back to back", data, 0.0),
            (f"{args.rate:,.0f} rows/s", paced, args.rate),
        ):
            old = InMemoryLog()
            for r in warm:
                old.write(r)
            results.append(measure(f"before: in-memory, {label}", old.write, batch, rate))
            old.close()
            new = DurableLog(folder / f"spool-{len(results)}", args.fsync_interval)
            for r in warm:
                new.write(r)
            results.append(measure(f"now: durable, {label}", new.write, batch, rate))
            new.close()
        spool = folder / "spool-1"
        size = sum(p.stat().st_size for p in spool.iterdir() if p.is_file()) / (len(data) + len(warm))
        fs = fs_type(folder)

    print(
        f"\nprediction-log hot path: {args.rows:,} rows back to back, then {args.paced_seconds:g} s paced at "
        f"{args.rate:,.0f} rows/s; one writer thread; spool on {fs} ({size:.0f} B/row); group fsync every "
        f"{args.fsync_interval:g} s; python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n"
    )
    head = (
        f"{'variant':<36}{'rows/s':>10}{'mean µs':>9}{'p50':>7}{'p99':>7}{'p99.9':>8}{'max':>8}{'cpu µs':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r['name']:<36}{r['rows_s']:>10,.0f}{r['mean']:>9.2f}{r['p50']:>7.2f}{r['p99']:>7.2f}"
            f"{r['p999']:>8.1f}{r['max']:>8.0f}{r['cpu']:>8.2f}"
        )
    print("(µs per write call; cpu µs = process CPU per row, all threads)\n")
    for before, now in ((results[0], results[1]), (results[2], results[3])):
        print(
            f"{now['name']:<36} vs before: {now['mean'] / before['mean']:.2f}x mean, "
            f"{now['p99'] / before['p99']:.2f}x p99, {now['cpu'] / before['cpu']:.2f}x CPU per row, "
            f"{now['rows_s'] / before['rows_s']:.2f}x rows/s"
        )


if __name__ == "__main__":
    main()
