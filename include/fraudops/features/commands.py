"""``fraudops features``: list and show the registry, mirror it to the warehouse, check parity.

Heavy imports (pandas, numpy, the simulator, the warehouse client) happen inside the commands.
"""

from __future__ import annotations

import json
import sys

import click

from fraudops.features.definitions import REGISTRY


@click.group()
def features() -> None:
    """The feature store: definitions, registry sync and offline/online parity."""


@features.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include retired versions.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(show_all: bool, as_json: bool) -> None:
    """Every registered feature: name, version, entity, window, label delay, aggregation."""
    defs = REGISTRY.list() if show_all else REGISTRY.active()
    if as_json:
        click.echo(json.dumps([d.to_row() for d in defs], default=str, indent=2))
        return
    from fraudops.cli import format_table

    rows = [("NAME", "VERSION", "ENTITY", "WINDOW", "DELAY", "AGGREGATION", "OWNER")]
    rows += [
        (d.name, str(d.version), d.entity, d.window or "-", d.delay or "-", d.aggregation, d.owner)
        for d in defs
    ]
    click.echo(format_table(rows))
    click.echo(f"\n{len(defs)} features")


@features.command("show")
@click.argument("name")
@click.option("--version", type=int, default=None, help="Version (default: the active one).")
def show(name: str, version: int | None) -> None:
    """All metadata of one feature."""
    d = REGISTRY.get(name, version)
    row = d.to_row()
    row.pop("registered_at")
    row["family"] = d.family
    row["dtype"] = d.dtype
    row["active"] = d.active
    row["other_versions"] = [x.version for x in REGISTRY.versions(name) if x.version != d.version]
    width = max(len(k) for k in row)
    for key, value in row.items():
        click.echo(f"{key.ljust(width)}  {value}")


@features.command("sync")
def sync() -> None:
    """Mirror the registry into the warehouse's feature_registry table (idempotent)."""
    from fraudops.features.definitions import sync_registry
    from fraudops.warehouse import Warehouse

    wh = Warehouse()
    wh.ensure_schema()
    inserted = sync_registry(wh)
    click.echo(f"feature_registry: {inserted} new rows ({len(REGISTRY.list())} feature versions registered)")


@features.command("parity")
@click.option("--days", type=float, default=2.0, show_default=True, help="Simulated days.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--start", default="2026-01-01", show_default=True, help="First simulated day (UTC).")
@click.option("--sample", type=int, default=None, help="Compare only K random events (all still flow).")
@click.option(
    "--disorder-seconds",
    type=float,
    default=0.0,
    show_default=True,
    help="Delay 10% of arrivals by up to this many seconds (out-of-order stream).",
)
@click.option("--backend", type=click.Choice(["embedded", "redis"]), default="embedded", show_default=True)
@click.option("--redis-url", default=None, help="Redis URL (default: FRAUDOPS_REDIS_URL).")
def parity(
    days: float,
    seed: int,
    start: str,
    sample: int | None,
    disorder_seconds: float,
    backend: str,
    redis_url: str | None,
) -> None:
    """Run simulated events through the offline and online paths; exit 1 on any mismatch."""
    import time

    import numpy as np

    from fraudops.features import FeatureSpec
    from fraudops.features.offline import build_offline, times_us
    from fraudops.features.online import EmbeddedBackend, RedisBackend
    from fraudops.features.parity import compare, stream_online
    from fraudops.simulate import generate

    t0 = time.perf_counter()
    sim = generate(start, days, seed)
    tx, labels = sim.transactions, sim.labels
    arrival = None
    if disorder_seconds > 0:
        rng = np.random.default_rng(seed)
        late = rng.random(len(tx)) < 0.1
        arrival = times_us(tx["event_time"]) + late * rng.uniform(0, disorder_seconds * 1e6, len(tx))
    click.echo(f"simulated {len(tx)} transactions, {len(labels)} labels in {time.perf_counter() - t0:.1f}s")
    if backend == "redis":
        from fraudops.config import load_settings

        url = redis_url or load_settings().redis_url
        if not url:
            raise click.UsageError("--backend redis needs --redis-url or FRAUDOPS_REDIS_URL")
        store_backend: EmbeddedBackend | RedisBackend = RedisBackend(url, prefix=f"fraudops:parity:{seed}")
        store_backend.clear()
    else:
        store_backend = EmbeddedBackend()
    t1 = time.perf_counter()
    spec = FeatureSpec.every()  # the delayed risk families of every label delay too
    offline = build_offline(tx, labels, spec, arrival_order=arrival)
    t2 = time.perf_counter()
    online = stream_online(tx, labels, spec, backend=store_backend, arrival_order=arrival)
    t3 = time.perf_counter()
    if backend == "redis":
        store_backend.clear()
    if sample is not None and sample < len(offline):
        pick = np.random.default_rng(seed).choice(len(offline), size=sample, replace=False)
        offline = offline.iloc[np.sort(pick)]
    result = compare(offline, online)
    click.echo(
        f"offline {t2 - t1:.2f}s ({len(tx) / max(t2 - t1, 1e-9):,.0f} tx/s), "
        f"online[{backend}] {t3 - t2:.2f}s ({len(tx) / max(t3 - t2, 1e-9):,.0f} tx/s)"
    )
    click.echo(result.describe())
    sys.exit(0 if result.ok else 1)
