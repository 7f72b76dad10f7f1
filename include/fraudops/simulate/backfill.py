"""Backfill: simulated history written straight into the warehouse, one day at a time.

Day chunks keep memory bounded (one day of Arrow columns at a time) and make a crash cheap: every
write is an idempotent ``Warehouse.upsert`` (staging load + MERGE on the natural key), and every
day is a pure function of (seed, date, config), so re-running any window never duplicates rows
and fills in whatever a previous attempt did not finish.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fraudops.simulate.config import SimulationConfig

if TYPE_CHECKING:
    import pyarrow as pa

    from fraudops.warehouse import Warehouse

log = logging.getLogger(__name__)


@dataclass
class BackfillReport:
    """What a backfill generated and wrote, with timings (seconds) for the benchmark."""

    start: dt.date
    days: float
    seed: int
    generated: dict[str, int] = field(
        default_factory=lambda: {"transactions": 0, "labels": 0, "ground_truth": 0}
    )
    inserted: dict[str, int] = field(
        default_factory=lambda: {"transactions": 0, "labels": 0, "ground_truth": 0}
    )
    seconds: dict[str, float] = field(
        default_factory=lambda: {"generate": 0.0, "transactions": 0.0, "labels": 0.0, "ground_truth": 0.0}
    )

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    def summary(self) -> str:
        g, i = self.generated, self.inserted
        return (
            f"backfill {self.start} +{self.days:g}d seed={self.seed}: "
            f"transactions {i['transactions']}/{g['transactions']} new, "
            f"labels {i['labels']}/{g['labels']} new, "
            f"ground truth {i['ground_truth']}/{g['ground_truth']} new in {self.total_seconds:.1f}s"
        )


_TABLE_OF = {"transactions": "transactions", "labels": "labels", "ground_truth": "sim_ground_truth"}


def backfill(
    warehouse: Warehouse,
    start: dt.date | str,
    days: float,
    seed: int,
    config: SimulationConfig | None = None,
    *,
    chunk_days: int = 3,
    ensure_schema: bool = True,
    progress: Callable[[dt.date, BackfillReport], None] | None = None,
) -> BackfillReport:
    """Write ``days`` simulated days from ``start`` into the warehouse; safe to re-run.

    ``chunk_days`` days are written per MERGE: fewer, larger loads are much faster on BigQuery and
    the emulator, while memory stays bounded by the chunk. Labels are written with their real
    ``label_time`` even when it lies after the window (a chargeback "from the future" of the window
    is still a fact about its transactions; label-delay-aware consumers filter on ``label_time``).
    """

    from fraudops.simulate.generator import iter_days, to_date

    config = config or SimulationConfig()
    if chunk_days < 1:
        raise ValueError("chunk_days must be >= 1")
    if ensure_schema:
        warehouse.ensure_schema()
    report = BackfillReport(start=to_date(start), days=days, seed=seed)
    ingested_at = dt.datetime.now(dt.UTC)
    pending: dict[str, list[pa.Table]] = {k: [] for k in _TABLE_OF}
    t0 = time.perf_counter()
    last_day: dt.date | None = None
    n_pending = 0
    for day, tables in iter_days(start, days, seed, config, ingested_at=ingested_at):
        pending["transactions"].append(tables.transactions)
        pending["labels"].append(tables.labels)
        pending["ground_truth"].append(tables.ground_truth)
        report.seconds["generate"] += time.perf_counter() - t0
        last_day, n_pending = day, n_pending + 1
        if n_pending >= chunk_days:
            _flush(warehouse, pending, report)
            n_pending = 0
            if progress:
                progress(day, report)
        t0 = time.perf_counter()
    if n_pending:
        _flush(warehouse, pending, report)
        if progress and last_day:
            progress(last_day, report)
    log.info("%s", report.summary())
    return report


def _flush(warehouse: Warehouse, pending: dict[str, list[pa.Table]], report: BackfillReport) -> None:
    import pyarrow as pa

    # Transactions first: a label or ground-truth row never points at a transaction not yet written.
    for key in ("transactions", "labels", "ground_truth"):
        batch = pa.concat_tables(pending[key]) if pending[key] else None
        pending[key] = []
        if batch is None or batch.num_rows == 0:
            continue
        t0 = time.perf_counter()
        report.inserted[key] += warehouse.upsert(_TABLE_OF[key], batch)
        report.generated[key] += batch.num_rows
        report.seconds[key] += time.perf_counter() - t0
