"""Stream mode against a real local HTTP server (recording requests) and the real emulator."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from fraudops.simulate import SimulationConfig, stream
from fraudops.simulate.config import ScenarioRates
from fraudops.simulate.stream import PAYLOAD_FIELDS


class _Recorder(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, object]]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            self.received.append({"path": self.path, **body})
        payload = b'{"score": 0.01, "decision": "approve"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        return


class _Server(ThreadingHTTPServer):
    # The stream keeps up to 16 connections open; the default listen backlog of 5 makes connects
    # time out on a loaded machine.
    request_queue_size = 128
    daemon_threads = True


@pytest.fixture()
def scoring_server() -> Iterator[tuple[str, list[dict[str, object]]]]:
    received: list[dict[str, object]] = []
    handler = type("Handler", (_Recorder,), {"received": received})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_sends_at_target_rate_with_the_payload_contract(
    scoring_server: tuple[str, list[dict[str, object]]],
) -> None:
    url, received = scoring_server
    report = stream(rate=80, speed=600, url=url, duration_s=2.5, seed=3, start="2026-04-01")
    assert report.errors == 0 and report.ok == report.sent == len(received)
    assert 0.85 * 80 * 2.5 <= report.sent <= 1.05 * 80 * 2.5
    assert 70 <= report.achieved_rate <= 90
    first = received[0]
    assert first["path"] == "/score"
    assert set(first) - {"path"} == set(PAYLOAD_FIELDS)
    assert str(first["timestamp"]).startswith("2026-04-01T")
    assert len({r["transaction_id"] for r in received}) == len(received)
    assert report.latency_percentiles()["p50"] > 0
    assert "latency ms: p50" in report.summary()


def test_unreachable_service_counts_errors_instead_of_crashing() -> None:
    from fraudops.stack.process import free_port

    report = stream(
        rate=50,
        speed=60,
        url=f"http://127.0.0.1:{free_port()}",
        max_transactions=20,
        seed=1,
        start="2026-04-01",
    )
    assert report.sent == 20 and report.errors == 20 and report.ok == 0
    assert sum(report.error_kinds.values()) == 20


@pytest.mark.integration
def test_writes_transactions_and_labels_when_they_come_due(
    scoring_server: tuple[str, list[dict[str, object]]], warehouse: Any
) -> None:
    url, received = scoring_server
    # Many frauds in a small world so labels show up within seconds at 2 event days per second.
    rates = replace(ScenarioRates(), account_takeover_per_day=2_000.0, stolen_card_spree_per_day=600.0)
    cfg = SimulationConfig(n_cards=2_000, n_customers=1_800, n_merchants=200, n_terminals=500, rates=rates)
    report = stream(
        rate=150,
        speed=172_800,
        url=url,
        duration_s=5.0,
        seed=8,
        start="2026-04-01",
        config=cfg,
        warehouse=warehouse,
        flush_interval_s=1.0,
    )
    assert report.warehouse_errors == 0
    assert report.transactions_written == report.sent == len(received)
    assert warehouse.count("transactions") == report.sent
    assert report.labels_written > 0 and report.labels_pending > 0
    # Every written label was due: its label_time is not after the last event sent.
    late = warehouse.query(
        "SELECT COUNT(*) AS n FROM labels WHERE label_time > @clock", {"clock": report.event_end}
    )
    assert late == [{"n": 0}]
    assert warehouse.count("labels") == report.labels_written
    assert warehouse.count("sim_ground_truth") > 0


def test_labels_of_a_day_that_arrives_during_a_flush_are_kept() -> None:
    """The flush runs in a worker thread while the sender appends the next day's labels; those
    must stay pending (a regression: whole days of labels were dropped in long streams)."""
    import datetime as dt

    import pyarrow as pa

    from fraudops.simulate.stream import StreamReport, _Streamer

    def labels(day: int, hour: int) -> pa.Table:
        t = dt.datetime(2026, 10, day, hour, tzinfo=dt.UTC)
        return pa.table(
            {
                "transaction_id": [f"d{day}"],
                "event_time": pa.array([t], pa.timestamp("us", tz="UTC")),
                "label_time": pa.array([t], pa.timestamp("us", tz="UTC")),
                "is_fraud": [True],
            }
        )

    written: list[str] = []

    class Warehouse:
        def upsert(self, table: str, rows: pa.Table) -> int:
            written.extend(rows.column("transaction_id").to_pylist())
            streamer._pending_labels.append(labels(3, 5))  # the sender starts a new day meanwhile
            return int(rows.num_rows)

    streamer = _Streamer(
        base_url="http://unused",
        cfg=SimulationConfig(),
        seed=1,
        first=dt.date(2026, 10, 1),
        rate=1.0,
        warehouse=Warehouse(),  # type: ignore[arg-type]
        concurrency=1,
        flush_interval_s=1.0,
        request_timeout_s=1.0,
        duration_s=None,
        max_transactions=None,
        stop_event=threading.Event(),
        report=StreamReport(target_rate=1.0, speed=1.0),
    )
    streamer._pending_labels = [labels(1, 1), labels(2, 23)]
    streamer._event_clock_us = int(dt.datetime(2026, 10, 2, 0, tzinfo=dt.UTC).timestamp() * 1e6)
    streamer._flush()
    assert written == ["d1"]  # due by the event clock
    pending = [t.column("transaction_id")[0].as_py() for t in streamer._pending_labels]
    assert pending == ["d2", "d3"]  # not yet due, and the day that arrived during the write
