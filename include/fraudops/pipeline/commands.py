"""``fraudops train``: the retrain pipeline without Airflow (same steps, same functions)."""

from __future__ import annotations

import datetime as dt
import json

import click

from fraudops.pipeline.knobs import RETRAIN, cli_options


@click.command("train")
@cli_options(RETRAIN)
@click.option("--param", "-p", multiple=True, help="Any other RetrainParams field as NAME=VALUE.")
@click.option("--run-key", default=None, help="Run folder name (default: cli-<timestamp>).")
@click.option("--json", "as_json", is_flag=True, help="Print every step's output as JSON.")
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Train on this CSV/Parquet instead of the warehouse (no warehouse, no MLflow needed).",
)
@click.option(
    "--map",
    "maps",
    multiple=True,
    metavar="FIELD=COLUMN",
    help="With --data: map a field (event_time, card_id, terminal_id, amount, is_fraud, ...) to a column.",
)
@click.option(
    "--label-time-col", default=None, help="With --data: the column with when each label became known."
)
@click.option(
    "--label-delay-days",
    type=float,
    default=7.0,
    show_default=True,
    help="With --data and no --label-time-col: labels become known this long after the transaction.",
)
@click.option(
    "--register", "register_model", is_flag=True, help="With --data: also register the bundle in MLflow."
)
def train(
    as_json: bool,
    run_key: str | None,
    param: tuple[str, ...],
    data: str | None,
    maps: tuple[str, ...],
    label_time_col: str | None,
    label_delay_days: float,
    register_model: bool,
    **options: object,
) -> None:
    """Extract, validate, build features, train, evaluate, package and register a model version.

    With --data, the same feature and training steps on a file: the bundle is written to the run
    folder (printed) and registered only with --register.
    """
    from fraudops.pipeline.retrain import RetrainParams, RunContext, extract_file, run_all
    from fraudops.warehouse.importer import parse_mapping

    raw = {k: v for k, v in options.items() if v not in (None, "")}
    for p in param:
        if "=" not in p:
            raise click.BadParameter(f"expected NAME=VALUE, got {p!r}", param_hint="--param")
        name, value = p.split("=", 1)
        raw[name] = value
    params = RetrainParams.from_dict(raw)
    key = run_key or "cli-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    ctx = RunContext(key)
    if data is None:
        if maps or label_time_col or register_model:
            raise click.UsageError("--map, --label-time-col and --register go with --data")
        steps = run_all(ctx, params)
    else:
        meta = extract_file(
            ctx,
            params,
            data,
            parse_mapping(maps),
            label_time_col=label_time_col,
            label_delay_days=label_delay_days,
        )
        steps = run_all(ctx, params, extract_meta=meta, register_model=register_model)
    if as_json:
        click.echo(json.dumps(steps, indent=2, default=str))
        return
    ev, pk, reg = steps["evaluate"], steps["package"], steps.get("register")
    click.echo(
        f"window: {steps['extract']['window_start']} .. {steps['extract']['window_end']} "
        f"({steps['validate']['rows']} rows, fraud rate {steps['validate']['fraud_rate']:.3%})"
    )
    for role in ("candidate", "baseline"):
        m = ev[role]["metrics"]
        click.echo(
            f"{role:9s} {ev[role]['family']:8s} AUC {m['roc_auc']:.4f}  AP {m['average_precision']:.4f}"
        )
    click.echo(f"features: {steps['features']['feature_health']}")
    search = steps["train"].get("search")
    if search:
        click.echo(
            f"search: {search['n_trials']} trials in {search['seconds']:.0f} s on {len(search['folds'])} "
            f"forward folds (gap {search['gap_days']:g} d): fold AP {search['best_score']:.4f} "
            f"(configured {search['default_score']:.4f}) with {search['chosen']}"
        )
    click.echo(f"ONNX parity {pk['parity_max_abs_diff']:.2e}, single-row p99 {pk['latency_p99_ms']:.3f} ms")
    if reg is None:
        click.echo(f"bundle (not registered): {pk['artifact_dir']}")
    else:
        click.echo(f"registered {reg['model_name']} version {reg['version']}")
