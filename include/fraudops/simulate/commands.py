"""CLI: ``fraudops simulate backfill|stream|plot`` and ``fraudops import PATH``.

Thin wrappers over plain functions (``backfill``, ``stream``, ``import_file``); numpy/pandas are
imported inside the commands so ``fraudops --help`` stays fast.
"""

from __future__ import annotations

import sys

import click

from fraudops.exceptions import DataValidationError


@click.group()
def simulate() -> None:
    """Simulated card traffic: history into the warehouse, or a live stream to the scoring API."""


@simulate.command("backfill")
@click.option("--start", required=True, help="First day (YYYY-MM-DD, 00:00 UTC).")
@click.option("--days", type=float, required=True, help="Number of days (fractions allowed).")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--chunk-days", type=int, default=3, show_default=True, help="Days per warehouse write.")
@click.option("--no-waves", is_flag=True, help="Disable random attack waves.")
def backfill_cmd(start: str, days: float, seed: int, chunk_days: int, no_waves: bool) -> None:
    """Write N days of simulated history into the warehouse (idempotent: re-runs add nothing)."""
    from fraudops.simulate.backfill import backfill
    from fraudops.simulate.config import SimulationConfig
    from fraudops.warehouse import Warehouse

    config = SimulationConfig(auto_waves=not no_waves)

    def progress(day: object, rep: object) -> None:
        click.echo(f"  up to {day}: {rep.inserted['transactions']} transactions written", err=True)  # type: ignore[attr-defined]

    report = backfill(Warehouse(), start, days, seed, config, chunk_days=chunk_days, progress=progress)
    click.echo(report.summary())


@simulate.command("stream")
@click.option("--rate", type=float, default=20.0, show_default=True, help="Transactions per wall second.")
@click.option("--speed", type=float, default=60.0, show_default=True, help="Event seconds per wall second.")
@click.option("--url", default=None, help="Scoring service base URL (default: settings).")
@click.option("--duration", type=float, default=None, help="Stop after S wall seconds (default: Ctrl-C).")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--start", default=None, help="First event day (YYYY-MM-DD; default today).")
@click.option("--concurrency", type=int, default=16, show_default=True)
@click.option("--no-warehouse", is_flag=True, help="Only send; write no event log or labels.")
def stream_cmd(
    rate: float,
    speed: float,
    url: str | None,
    duration: float | None,
    seed: int,
    start: str | None,
    concurrency: int,
    no_warehouse: bool,
) -> None:
    """POST transactions to the scoring API at RATE/s in accelerated event time; labels land when due."""
    from fraudops.simulate.stream import stream
    from fraudops.warehouse import Warehouse

    warehouse = None
    if not no_warehouse:
        warehouse = Warehouse()
        warehouse.ensure_schema()
    report = stream(
        rate=rate,
        speed=speed,
        url=url,
        duration_s=duration,
        seed=seed,
        start=start,
        warehouse=warehouse,
        concurrency=concurrency,
    )
    click.echo(report.summary())
    if report.sent and report.ok == 0:
        sys.exit(1)


@simulate.command("plot")
@click.option("--start", default="2026-01-01", show_default=True)
@click.option("--days", type=int, default=60, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--out", default="docs/img/fraud_rate_by_scenario_region.png", show_default=True)
def plot_cmd(start: str, days: int, seed: int, out: str) -> None:
    """Plot daily fraud rate by scenario and by region (in memory; writes a PNG)."""
    from fraudops.simulate.plot import plot_fraud_rates

    path = plot_fraud_rates(start, days, seed, out)
    click.echo(f"wrote {path}")


@click.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "--map",
    "maps",
    multiple=True,
    metavar="FIELD=COLUMN",
    help="Map a field (event_time, card_id, terminal_id, amount, is_fraud, ...) to a column.",
)
@click.option("--label-time-col", default=None, help="Column with the time each label became known.")
@click.option("--source", default="import", show_default=True, help="Value of transactions.source.")
@click.option(
    "--reject-file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write bad rows with a reason column here (CSV).",
)
@click.option("--dry-run", is_flag=True, help="Validate only.")
def import_cmd(
    path: str,
    maps: tuple[str, ...],
    label_time_col: str | None,
    source: str,
    reject_file: str | None,
    dry_run: bool,
) -> None:
    """Load historical transactions (CSV/Parquet) into the warehouse; all rows valid or nothing written."""
    from fraudops.warehouse.importer import import_file, parse_mapping

    result = import_file(
        path,
        parse_mapping(maps),
        label_time_col=label_time_col,
        source=source,
        reject_file=reject_file,
        dry_run=dry_run,
    )
    click.echo(result.report(), err=not result.ok)
    if not result.ok:
        hint = f"; bad rows written to {reject_file}" if reject_file else ""
        raise DataValidationError(f"import rejected: {len(result.bad_rows)} invalid rows{hint}")
