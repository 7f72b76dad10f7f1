"""The prediction log loses nothing it acknowledged and duplicates nothing (issue #18, finding 8).

Real parts only: a real bqemulator (the session one, or a private one this test stops and
restarts), real processes killed with SIGKILL, real files on disk.

* (a) a service SIGKILLed (with its shipper) after acknowledging N rows: a new logger on the same
  spool folder puts all N in the warehouse exactly once.
* (b) the warehouse goes away under writes and the service is killed during the outage: after the
  warehouse returns, 0 rows lost and 0 duplicated.
* (c) the shipper dies (SIGKILL) and a row the schema refuses (a non-warehouse error) sits among
  good ones: the supervisor restarts it with no HTTP or /metrics call, the good rows ship, the
  bad one is quarantined and counted.
* (d) a garbage segment, a torn one, a garbage line, a corrupt Parquet file from the old writer:
  quarantined or recovered, and every readable row behind them is replayed.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from fraudops.config import WarehouseConfig
from fraudops.exceptions import WarehouseUnavailable
from fraudops.serving.predlog import PredictionLog
from fraudops.stack import process
from fraudops.stack.services import bqemulator_spec
from fraudops.warehouse import Warehouse

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def row(i: int, prefix: str = "p") -> dict[str, Any]:
    return {
        "transaction_id": f"{prefix}-{i}",
        "request_id": f"r-{i}",
        "model_name": "fraud-detector",
        "model_version": "1",
        "mode": "production",
        "alias": "champion",
        "score": (i % 1000) / 1000,
        "decision": "approve",
        "latency_ms": 0.2,
        "fallback": False,
        "error": None,
        "amount": 12.5,
        "event_time": T0 + dt.timedelta(seconds=i),
        "feature_set": "fs",
        "features": "[1.0, 2.0]",
        "served_at": T0 + dt.timedelta(seconds=i, milliseconds=5),
        "sampled": False,
    }


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return
        except WarehouseUnavailable:  # a restarted emulator on a busy machine: ask again
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def counts(wh: Warehouse, prefix: str) -> dict[str, int]:
    (r,) = wh.query(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT transaction_id) AS k FROM predictions "
        f"WHERE STARTS_WITH(transaction_id, '{prefix}-')"
    )
    return {"n": int(r["n"]), "k": int(r["k"])}


# A "service": acknowledges rows (``write`` returned), says so on stdout, then waits to be killed.
SERVICE = r"""
import datetime as dt, json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[6])
from fraudops.config import WarehouseConfig
from fraudops.exceptions import WarehouseUnavailable
from fraudops.serving.predlog import PredictionLog
from test_predlog_durability import row
project, dataset, endpoint, spool, spec = sys.argv[1:6]
first, n, flush_at, pause = (int(x) for x in spec.split(","))
log = PredictionLog(WarehouseConfig(project=project, dataset=dataset, endpoint=endpoint, timeout_s=3.0),
                    Path(spool), batch_size=100_000, flush_interval_s=60.0, retry_interval_s=0.5).start()
for i in range(first, first + n):
    log.write(row(i))
    if i - first + 1 == flush_at:
        log.flush()
    if pause:
        time.sleep(pause / 1000)
print("acked", first + n, log.proc.pid, flush=True)
time.sleep(600)
"""


def start_service(
    cfg: WarehouseConfig, spool: Path, first: int, n: int, flush_at: int = 0, pause_ms: int = 0
) -> Any:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVICE,
            cfg.project,
            cfg.dataset,
            cfg.endpoint or "",
            str(spool),
            f"{first},{n},{flush_at},{pause_ms}",
            str(Path(__file__).parent),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: SIGKILL takes the shipper with it
    )


def kill_after_ack(proc: Any, timeout: float = 120) -> None:
    """Wait for the child's "acked" line, then SIGKILL its whole process group."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = proc.stdout.readline()
    assert line.startswith("acked"), (line, proc.stderr.read() if proc.poll() is not None else "")
    assert time.monotonic() < deadline
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    # The shipper was in the same group: nothing of the killed service runs any more.
    shipper = int(line.split()[2])
    wait_for(
        lambda: not Path(f"/proc/{shipper}").exists() or "zombie" in _status(shipper), 30, "shipper gone"
    )


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


def test_a_sigkilled_service_loses_no_acknowledged_row(warehouse: Any, tmp_path: Path) -> None:
    wh: Warehouse = warehouse
    spool = tmp_path / "spool"
    # 150 rows shipped while it lived, 350 acknowledged after the last flush, then kill -9.
    kill_after_ack(start_service(wh.cfg, spool, 0, 500, flush_at=150))
    assert counts(wh, "p")["n"] == 150  # the rest only ever existed in the killed service
    log = PredictionLog(wh.cfg, spool, flush_interval_s=0.2).start()
    try:
        for i in range(450, 520):  # a client retry of some acknowledged rows, and new ones
            log.write(row(i))
        stats = log.flush()
        assert counts(wh, "p") == {"n": 520, "k": 520}
        assert stats.replayed_rows >= 350 and stats.pending_files == 0
    finally:
        log.close()


@pytest.fixture()
def own_emulator(tmp_path: Path) -> Iterator[tuple[process.ServiceSpec, Warehouse]]:
    """A private emulator (persistent data dir) this test may stop and restart."""
    port, grpc = process.free_port(), process.free_port()
    spec = bqemulator_spec(tmp_path / "bq", tmp_path / "logs", tmp_path / "run", "predlog-test", port, grpc)
    process.start(spec)
    wh = Warehouse(
        WarehouseConfig(
            project="predlog-test", dataset="fraud", endpoint=f"http://127.0.0.1:{port}", timeout_s=3.0
        )
    )
    wh.ensure_schema()
    try:
        yield spec, wh
    finally:
        process.stop(spec)


def test_a_warehouse_outage_under_writes_loses_and_duplicates_nothing(
    own_emulator: tuple[process.ServiceSpec, Warehouse], tmp_path: Path
) -> None:
    spec, wh = own_emulator
    spool = tmp_path / "spool"
    log = PredictionLog(wh.cfg, spool, flush_interval_s=0.2, retry_interval_s=0.5).start()
    try:
        for i in range(100):
            log.write(row(i))
        log.flush()
        assert counts(wh, "p")["n"] == 100

        process.stop(spec)  # the warehouse goes away; writing must not notice
        slowest = 0.0
        for i in range(100, 400):
            t0 = time.perf_counter()
            log.write(row(i))
            slowest = max(slowest, time.perf_counter() - t0)
            time.sleep(0.005)
        assert slowest < 0.05, f"a write took {slowest * 1e3:.1f} ms during the outage"
        wait_for(lambda: log.snapshot().failed_writes >= 1, 60, "a failed shipping attempt")
        assert log.snapshot().written == 100
    finally:
        during = log.close(timeout_s=30)  # the warehouse is still down: the rows stay on disk

    # The outage goes on, a new service starts, acknowledges more rows and is SIGKILLed.
    kill_after_ack(start_service(wh.cfg, spool, 400, 200, pause_ms=5))

    process.start(spec)  # ... and the warehouse comes back with its data
    log = PredictionLog(wh.cfg, spool, flush_interval_s=0.2, retry_interval_s=0.5).start()
    try:
        for i in range(550, 650):  # more traffic, some of it re-sent
            log.write(row(i))
        # No flush: the shipper replays on its own once the warehouse answers.
        wait_for(lambda: counts(wh, "p")["n"] >= 650, 120, "the spool replayed")
        after = log.flush()
        assert counts(wh, "p") == {"n": 650, "k": 650}
        assert after.pending_files == 0 and after.quarantined_rows == 0 and after.lost_rows == 0
        assert after.replayed_rows >= 500
    finally:
        log.close()
    # The first service's counts: every row on disk before its write returned, none in memory.
    assert during.spooled_rows == 400 and during.buffered == 0 and during.lost_rows == 0
    assert during.retried >= 1 and during.pending_files >= 1


def test_a_dead_shipper_is_restarted_without_any_request_and_a_bad_row_does_not_sink_its_batch(
    warehouse: Any, tmp_path: Path
) -> None:
    wh: Warehouse = warehouse
    spool = tmp_path / "spool"
    log = PredictionLog(wh.cfg, spool, flush_interval_s=0.3, retry_interval_s=0.5).start()
    try:
        first = log.proc.pid
        os.kill(first, signal.SIGKILL)  # the writer dies: nobody scrapes /metrics or calls flush
        for i in range(200):
            log.write(row(i))
        bad = row(10_000) | {"score": "not-a-number"}  # Arrow refuses it: a non-warehouse error
        log.write(bad)
        for i in range(200, 300):
            log.write(row(i))
        # Only the warehouse is watched here: no snapshot(), flush() or HTTP call on the log.
        wait_for(lambda: counts(wh, "p")["n"] >= 300, 60, "the good rows shipped by a restarted shipper")
        assert log.restarts >= 1 and log.proc.pid != first
        wait_for(lambda: log.snapshot().quarantined_rows == 1, 30, "the bad row counted")
        stats = log.snapshot()
        assert stats.writer_restarts >= 1 and stats.written == 300
        assert counts(wh, "p") == {"n": 300, "k": 300}
        (rejected,) = (spool / "quarantine").glob("*.rejected")
        assert orjson.loads(rejected.read_bytes())["transaction_id"] == "p-10000"
        reason = rejected.with_name(rejected.name + ".reason").read_text()
        assert reason.startswith("column 'score'") and "not-a-number" in reason, reason
    finally:
        log.close()

    from fraudops.serving.metrics import ServingMetrics

    m = ServingMetrics()
    m.set_log_stats(stats)
    text = m.render()[0].decode()
    assert 'fraudops_prediction_log_events_total{event="writer_restarts"}' in text
    assert 'fraudops_prediction_log_events_total{event="quarantined_rows"} 1.0' in text
    assert 'fraudops_prediction_log_events_total{event="shipped"} 300.0' in text


def _segment(spool: Path, k: int) -> Path:
    return spool / f"seg-{1_700_000_000_000_000_000 + k:020d}-999999-{k:06d}.jsonl"


def _lines(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in rows)


def test_corrupt_and_torn_spool_files_are_quarantined_and_the_rest_replayed(
    warehouse: Any, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    from fraudops.warehouse.schema import get_table_spec

    wh: Warehouse = warehouse
    spool = tmp_path / "spool"
    spool.mkdir()
    # Oldest first: a corrupt Parquet file of the old writer, then garbage, a torn segment
    # (a record cut in the middle), a segment with one garbage line, valid files behind them.
    (spool / "00000000000000000001-1-000000.parquet").write_bytes(b"PAR1 this is not parquet at all")
    _segment(spool, 1).write_bytes(os.urandom(4096).replace(b"\n", b"\x00"))
    torn = _lines([row(i) for i in range(0, 50)]) + orjson.dumps(row(50))[:37]
    _segment(spool, 2).write_bytes(torn)
    _segment(spool, 3).write_bytes(
        _lines([row(i) for i in range(50, 80)])
        + b"\xff\xfe{not json\n"
        + _lines([row(i) for i in range(80, 100)])
    )
    _segment(spool, 4).write_bytes(_lines([row(i) for i in range(100, 200)]))
    legacy = wh.to_arrow(get_table_spec("predictions"), [row(i) for i in range(200, 250)])
    pq.write_table(legacy, spool / "00000000000000000009-1-000001.parquet")
    # A segment a killed service left open (its pid does not exist any more).
    (spool / f"seg-{1_700_000_000_000_000_099:020d}-999999-000099.jsonl.open").write_bytes(
        _lines([row(i) for i in range(250, 260)])
    )

    log = PredictionLog(wh.cfg, spool, flush_interval_s=0.2).start()
    try:
        stats = log.flush()
        assert counts(wh, "p") == {"n": 260, "k": 260}
        assert stats.pending_files == 0
        assert stats.quarantined_files == 2  # the garbage segment and the corrupt Parquet file
        assert stats.quarantined_rows == 2  # the torn tail and the garbage line
        assert stats.recovered_rows == 50  # the torn segment, up to its last complete record
    finally:
        log.close()
    q = spool / "quarantine"
    assert (q / _segment(spool, 1).name).exists() and (q / "00000000000000000001-1-000000.parquet").exists()
    assert "truncated" in (q / (_segment(spool, 2).name + ".rejected.reason")).read_text()
    assert "not JSON" in (q / (_segment(spool, 3).name + ".rejected.reason")).read_text()
    assert all(
        p.with_name(p.name + ".reason").exists() for p in q.iterdir() if not p.name.endswith(".reason")
    )


def test_a_segment_that_keeps_killing_the_shipper_is_set_aside(warehouse: Any, tmp_path: Path) -> None:
    """Crash-loop guard: a segment the shipper died on max_crashes times is quarantined whole."""
    wh: Warehouse = warehouse
    spool = tmp_path / "spool"
    spool.mkdir()
    killer = _segment(spool, 1)
    killer.write_bytes(_lines([row(i, "k") for i in range(5)]))
    _segment(spool, 2).write_bytes(_lines([row(i) for i in range(20)]))
    # What a shipper leaves when it dies mid-send, twice already for this segment.
    (spool / ".crashes").write_bytes(orjson.dumps({killer.name: 2}))
    (spool / ".inflight").write_bytes(orjson.dumps([killer.name]))
    log = PredictionLog(wh.cfg, spool, flush_interval_s=0.2).start()
    try:
        stats = log.flush()
    finally:
        log.close()
    assert counts(wh, "p") == {"n": 20, "k": 20} and counts(wh, "k")["n"] == 0
    assert stats.quarantined_files == 1 and (spool / "quarantine" / killer.name).exists()
    assert "died 3 times" in (spool / "quarantine" / (killer.name + ".reason")).read_text()
