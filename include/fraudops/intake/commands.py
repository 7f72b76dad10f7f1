"""``fraudops models upload``: bring a model to the platform (model intake, issue #19)."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path

import click


@click.group("models")
def models() -> None:
    """Bring your own model: upload it through intake to a release."""


@models.command("upload")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--features",
    "features",
    default="",
    help="Registered features the model reads, in input order, comma-separated (name or name@vN).",
)
@click.option(
    "--features-file", type=click.Path(exists=True, path_type=Path), help="The same, one name per line."
)
@click.option("--author", default=None, help="Who uploads it (default: FRAUDOPS_USER or the login name).")
@click.option("--model-name", default=None, help="Registered model (default: the platform's).")
@click.option("--description", default="", help="Free text kept with the version.")
@click.option("--sample-days", default=2.0, show_default=True, help="Days of recent events to check it on.")
@click.option("--latency-budget-ms", default=2.0, show_default=True, help="Single-row p99 SLA.")
@click.option(
    "--alert-budget", default=None, type=float, help="Share of events the threshold flags (policy)."
)
@click.option("--no-emit", is_flag=True, help="Register only; do not start a release.")
@click.option("--json", "as_json", is_flag=True, help="Print the intake report as JSON.")
def upload(
    path: Path,
    features: str,
    features_file: Path | None,
    author: str | None,
    model_name: str | None,
    description: str,
    sample_days: float,
    latency_budget_ms: float,
    alert_budget: float | None,
    no_emit: bool,
    as_json: bool,
) -> None:
    """Check, convert, package and register the model at PATH, then start its release.

    Accepted: ONNX; LightGBM text; XGBoost JSON/UBJ; scikit-learn saved with skops. Pickle and
    joblib files are refused. PyTorch and TensorFlow: export to ONNX first (README)."""
    from fraudops.config import load_settings
    from fraudops.intake import IntakeRequest, run_intake
    from fraudops.release.policy import DEFAULT_POLICY

    names = [n.strip() for n in features.split(",") if n.strip()]
    if features_file is not None:
        names += [
            n.strip() for n in features_file.read_text().splitlines() if n.strip() and not n.startswith("#")
        ]
    settings = load_settings()
    req = IntakeRequest(
        path=path,
        features=tuple(names),
        author=author or os.environ.get("FRAUDOPS_USER") or getpass.getuser(),
        model_name=model_name,
        description=description,
        sample_days=sample_days,
        latency_budget_ms=latency_budget_ms,
        alert_budget=alert_budget if alert_budget is not None else DEFAULT_POLICY.alert_budget,
        emit=not no_emit,
    )
    from fraudops.stack.services import platform_airflow_client

    report = run_intake(req, settings, airflow=None if no_emit else platform_airflow_client(settings))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        for check in report.checks:
            click.echo(f"{'✔' if check.passed else '✘'} {check.name:10s} {check.detail}")
        if report.ok:
            click.echo(f"registered {report.model_name} version {report.version} by {report.author}")
    if not report.ok:
        raise SystemExit(1)
