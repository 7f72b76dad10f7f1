"""SpoolingWriter against a real emulator that really goes away and comes back."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fraudops.config import WarehouseConfig
from fraudops.stack import process
from fraudops.stack.services import bqemulator_spec
from fraudops.warehouse import Warehouse
from fraudops.warehouse.spool import SpoolingWriter

pytestmark = pytest.mark.integration


@pytest.fixture()
def own_emulator(tmp_path: Path) -> Iterator[tuple[process.ServiceSpec, Warehouse]]:
    """A private emulator (persistent data dir) this test may stop and restart."""
    port, grpc = process.free_port(), process.free_port()
    spec = bqemulator_spec(tmp_path / "bq", tmp_path / "logs", tmp_path / "run", "spool-test", port, grpc)
    process.start(spec)
    wh = Warehouse(
        WarehouseConfig(
            project="spool-test", dataset="fraud", endpoint=f"http://127.0.0.1:{port}", timeout_s=15.0
        )
    )
    wh.ensure_schema()
    try:
        yield spec, wh
    finally:
        process.stop(spec)


def _pred(i: int, version: str = "1") -> dict[str, object]:
    return {
        "transaction_id": f"tx-{i}",
        "model_name": "fraud-detector",
        "model_version": version,
        "mode": "production",
        "score": i / 1000,
        "decision": "approve",
        "latency_ms": 0.2,
        "served_at": dt.datetime(2026, 3, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i),
        "features": "[1.0, 2.0]",
    }


def test_micro_batches_reach_the_warehouse(own_emulator: tuple[object, Warehouse], tmp_path: Path) -> None:
    _, wh = own_emulator
    with SpoolingWriter(wh, "predictions", tmp_path / "spool", batch_size=100, flush_interval_s=0.2) as w:
        for i in range(450):
            w.write(_pred(i))
    stats = w.snapshot()
    assert stats.written == 450 and stats.spooled_rows == 0 and stats.buffered == 0
    assert wh.count("predictions") == 450


class _LoadSizes(Warehouse):
    """The real warehouse client, remembering the size of each write it was asked for."""

    def __init__(self, wh: Warehouse) -> None:
        super().__init__(wh.cfg)
        self.sizes: list[int] = []

    def upsert(self, table: str, rows: Any) -> int:
        self.sizes.append(len(rows))
        return super().upsert(table, rows)


def test_a_steady_stream_is_written_in_full_batches(
    own_emulator: tuple[object, Warehouse], tmp_path: Path
) -> None:
    """Rows that arrive while a batch is being written wait for the next full batch (or the
    interval): they are not sent as one small load per round trip."""
    _, wh = own_emulator
    rec = _LoadSizes(wh)
    w = SpoolingWriter(rec, "predictions", tmp_path / "spool", batch_size=100, flush_interval_s=60).start()
    for i in range(350):
        w.write(_pred(i))
        time.sleep(0.002)  # a stream, so rows keep arriving during each write
    deadline = time.monotonic() + 30
    while sum(rec.sizes) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rec.sizes == [100, 100, 100]
    assert w.snapshot().buffered == 50  # not a full batch, and the interval has not come
    w.close()
    assert rec.sizes == [100, 100, 100, 50]
    assert wh.count("predictions") == 350


def test_the_interval_writes_a_partial_batch(own_emulator: tuple[object, Warehouse], tmp_path: Path) -> None:
    _, wh = own_emulator
    w = SpoolingWriter(wh, "predictions", tmp_path / "spool", batch_size=1000, flush_interval_s=0.3).start()
    try:
        for i in range(10):
            w.write(_pred(i))
        deadline = time.monotonic() + 30
        while w.snapshot().written < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert w.snapshot().written == 10 and wh.count("predictions") == 10
    finally:
        w.close()


def test_outage_spools_to_disk_and_replays_without_loss_or_duplicates(
    own_emulator: tuple[process.ServiceSpec, Warehouse], tmp_path: Path
) -> None:
    spec, wh = own_emulator
    spool = tmp_path / "spool"
    writer = SpoolingWriter(
        wh, "predictions", spool, batch_size=50, flush_interval_s=0.1, retry_interval_s=0.5
    )
    writer.start()
    try:
        for i in range(200):
            writer.write(_pred(i))
        writer.flush()
        assert wh.count("predictions") == 200

        process.stop(spec)  # the warehouse goes away
        for i in range(200, 700):
            writer.write(_pred(i))
        writer.flush()
        during = writer.snapshot()
        assert during.spooled_rows == 500 and during.pending_files >= 1
        assert during.buffered == 0  # nothing held in memory: it is on disk

        process.start(spec)  # ... and comes back with its data
        # Re-sending rows already stored (a client retry) must not duplicate either.
        for i in range(150, 800):
            writer.write(_pred(i))
        writer.close()
    finally:
        if writer._thread and writer._thread.is_alive():
            writer.close()
    after = writer.snapshot()
    assert after.pending_files == 0 and after.buffered == 0
    assert after.replayed_rows == 500
    rows = wh.query("SELECT COUNT(*) AS n, COUNT(DISTINCT transaction_id) AS k FROM predictions")
    assert rows == [{"n": 800, "k": 800}]


def test_full_buffer_spills_instead_of_dropping(tmp_path: Path) -> None:
    """With the warehouse unreachable and no flush thread, a full buffer goes to disk."""
    dead = Warehouse(WarehouseConfig(endpoint=f"http://127.0.0.1:{process.free_port()}", timeout_s=1.0))
    w = SpoolingWriter(dead, "predictions", tmp_path / "spool", batch_size=10, max_buffer=100)
    for i in range(250):
        w.write(_pred(i))
    s = w.snapshot()
    assert s.spooled_rows == 200 and s.buffered == 50 and s.accepted == 250
    w.flush()  # warehouse still away: the rest is spooled too
    assert w.snapshot().spooled_rows == 250
