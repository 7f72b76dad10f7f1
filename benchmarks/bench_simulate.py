"""Benchmark: generate and backfill 30 simulated days (~1M transactions) into a private emulator.

Starts its own bqemulator on free ports in a temp folder (never touches a running stack), prints
rows/s for generation and for each warehouse load, and stops the emulator at the end.

    .venv/bin/python benchmarks/bench_simulate.py [--days 30] [--seed 42]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--start", default="2026-01-01")
    parser.add_argument("--chunk-days", type=int, default=3)
    args = parser.parse_args()

    from fraudops.cli import format_table
    from fraudops.config import WarehouseConfig
    from fraudops.simulate import backfill
    from fraudops.simulate.generator import iter_days
    from fraudops.stack import process
    from fraudops.stack.services import bqemulator_spec
    from fraudops.warehouse import Warehouse

    # Generation alone (in-memory Arrow), as the feature store and training use it.
    t0 = time.perf_counter()
    n_gen = sum(t.transactions.num_rows for _, t in iter_days(args.start, args.days, args.seed))
    gen_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="fraudops-bench-") as tmp:
        root = Path(tmp)
        port, grpc = process.free_port(), process.free_port()
        spec = bqemulator_spec(root / "bq", root / "logs", root / "run", "fraudops-bench", port, grpc)
        process.start(spec)
        try:
            wh = Warehouse(
                WarehouseConfig(
                    project="fraudops-bench",
                    dataset="fraud",
                    endpoint=f"http://127.0.0.1:{port}",
                    emulator_grpc_port=grpc,
                    timeout_s=600.0,
                )
            )
            wh.ensure_schema()
            t0 = time.perf_counter()
            opts = {"chunk_days": args.chunk_days, "ensure_schema": False}
            rep = backfill(wh, args.start, args.days, args.seed, **opts)
            total_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            again = backfill(wh, args.start, args.days, args.seed, **opts)
            rerun_s = time.perf_counter() - t0
            counts = {t: wh.count(t) for t in ("transactions", "labels", "sim_ground_truth")}
        finally:
            process.stop(spec)

    def row(phase: str, rows: int, secs: float) -> tuple[str, str, str, str]:
        return (phase, f"{rows:,}", f"{secs:.1f}", f"{rows / secs:,.0f}" if secs else "-")

    g, s = rep.generated, rep.seconds
    table = [
        ("phase", "rows", "seconds", "rows/s"),
        row("generate (in memory, Arrow)", n_gen, gen_s),
        row("backfill: generate", g["transactions"], s["generate"]),
        row("backfill: load transactions", g["transactions"], s["transactions"]),
        row("backfill: load labels", g["labels"], s["labels"]),
        row("backfill: load sim_ground_truth", g["ground_truth"], s["ground_truth"]),
        row("backfill: total (end to end)", g["transactions"], total_s),
        row("re-run same window (0 new rows)", again.generated["transactions"], rerun_s),
    ]
    print(format_table(table))
    print(f"\nwarehouse rows after re-run: {counts} (inserted on re-run: {again.inserted})")
    print(f"{args.days:g} days in {total_s:.1f}s: {'PASS' if total_s < 120 else 'FAIL'} (< 120 s)")


if __name__ == "__main__":
    main()
