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
def train(as_json: bool, run_key: str | None, param: tuple[str, ...], **options: object) -> None:
    """Extract, validate, build features, train, evaluate, package and register a model version."""
    from fraudops.pipeline.retrain import RetrainParams, RunContext, run_all

    raw = {k: v for k, v in options.items() if v not in (None, "")}
    for p in param:
        if "=" not in p:
            raise click.BadParameter(f"expected NAME=VALUE, got {p!r}", param_hint="--param")
        name, value = p.split("=", 1)
        raw[name] = value
    params = RetrainParams.from_dict(raw)
    key = run_key or "cli-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    steps = run_all(RunContext(key), params)
    if as_json:
        click.echo(json.dumps(steps, indent=2, default=str))
        return
    ev, pk, reg = steps["evaluate"], steps["package"], steps["register"]
    click.echo(
        f"window: {steps['extract']['window_start']} .. {steps['extract']['window_end']} "
        f"({steps['validate']['rows']} rows, fraud rate {steps['validate']['fraud_rate']:.3%})"
    )
    for role in ("candidate", "baseline"):
        m = ev[role]["metrics"]
        click.echo(
            f"{role:9s} {ev[role]['family']:8s} AUC {m['roc_auc']:.4f}  AP {m['average_precision']:.4f}"
        )
    click.echo(f"ONNX parity {pk['parity_max_abs_diff']:.2e}, single-row p99 {pk['latency_p99_ms']:.3f} ms")
    click.echo(f"registered {reg['model_name']} version {reg['version']}")
