"""``fraudops serve`` (run the scoring service) and ``fraudops deploy`` (call the control API)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import click


@click.command("serve")
@click.option("--host", default=None, help="Bind address (default FRAUDOPS_SCORING_HOST).")
@click.option("--port", type=int, default=None, help="Port (default FRAUDOPS_SCORING_PORT).")
@click.option(
    "--ensure-champion", is_flag=True, help="Bootstrap a first champion on an empty registry first."
)
@click.option("--log-level", default="info", show_default=True)
def serve(host: str | None, port: int | None, ensure_champion: bool, log_level: str) -> None:
    """Run the scoring service (uvicorn, one worker) until interrupted."""
    import uvicorn

    from fraudops.config import load_settings
    from fraudops.serving.app import create_app
    from fraudops.serving.fastpath import server_options
    from fraudops.serving.options import ServingOptions, deploy_token
    from fraudops.serving.service import ScoringService
    from fraudops.warehouse import Warehouse

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The service retries the registry on its own schedule (a backoff per waiting version, the
    # alias poll, a 503 from /deploy): one MLflow client call must fail within seconds, not after
    # the client's default 7 retries with backoff (~4 minutes per call with MLflow down).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    settings = load_settings()
    if ensure_champion:
        # In a child process: training imports (pandas, LightGBM, GX) must not stay resident here.
        subprocess.run([sys.executable, "-m", "fraudops.stack.bootstrap"], check=True, env=dict(os.environ))
    # Background threads (prediction writer, shadow collector, alias watcher) must hand the GIL
    # back to the event loop quickly: the default 5 ms switch interval shows up in the p99.
    sys.setswitchinterval(0.0005)
    service = ScoringService(ServingOptions.from_env(settings), warehouse=Warehouse(settings.warehouse))
    app = create_app(
        service, deploy_token=deploy_token(settings), deploy_tokens=settings.scoring.deploy_tokens
    )
    uvicorn.run(
        app,
        **server_options(
            app,
            host=host or settings.scoring.host,
            port=port or settings.scoring.port,
            log_level=log_level,
            fast_path=service.options.fast_path,
        ),
    )


@click.command("deploy")
@click.argument("version", required=False)
@click.option(
    "--mode",
    "mode",
    type=click.Choice(["shadow", "production", "rollback", "sample_rate"]),
    required=True,
    help="shadow → challenger alias; production → champion; rollback → champion back; "
    "sample_rate → a challenger's share of live traffic (--sample-rate).",
)
@click.option("--model", "model_id", default=None, help="Registered model (default FRAUDOPS_MODEL_NAME).")
@click.option(
    "--alias", default=None, help="Challenger alias for shadow mode (default challenger-<version>)."
)
@click.option(
    "--sample-rate",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=None,
    help="sample_rate mode: the challenger's share of live traffic.",
)
@click.option("--reason", default=None)
@click.option("--url", default=None, help="Scoring service URL (default from settings).")
def deploy(
    version: str | None,
    mode: str,
    model_id: str | None,
    alias: str | None,
    sample_rate: float | None,
    reason: str | None,
    url: str | None,
) -> None:
    """Deploy VERSION through the scoring service's control API (bearer token from the state folder)."""
    import httpx

    from fraudops.config import load_settings
    from fraudops.serving.options import deploy_token

    settings = load_settings()
    body = {
        "modelId": model_id or settings.mlflow.model_name,
        "version": version,
        "deploymentMode": mode,
        "alias": alias,
        "sampleRate": sample_rate,
        "reason": reason,
        "actor": os.environ.get("USER", "cli"),
    }
    resp = httpx.post(
        f"{url or settings.scoring.url}/deploy",
        json={k: v for k, v in body.items() if v is not None},
        headers={"Authorization": f"Bearer {deploy_token(settings)}"},
        timeout=120,
    )
    click.echo(json.dumps(resp.json(), indent=2))
    if resp.status_code != 200:
        sys.exit(1)
