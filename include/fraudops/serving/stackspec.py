"""How ``fraudops up`` runs the scoring service (the ServiceSpec the stack starts after MLflow).

The command bootstraps a first champion on an empty registry before serving (see
``bootstrap.py``), so the readiness timeout covers a short backfill + training; ``/health`` is
200 only once a champion is loaded, which is what ``up`` waits for.
"""

from __future__ import annotations

import sys

from fraudops.config import Settings
from fraudops.stack.process import ServiceSpec, http_ok


def scoring_spec(settings: Settings) -> ServiceSpec:
    url = settings.scoring.url
    return ServiceSpec(
        name="scoring",
        command=[sys.executable, "-m", "fraudops.serving", "--ensure-champion", "--log-level", "warning"],
        url=url,
        health=lambda: http_ok(f"{url}/health"),
        log_file=settings.log_dir / "scoring.log",
        pid_file=settings.run_dir / "scoring.pid",
        env={
            "FRAUDOPS_STATE_DIR": str(settings.state_dir),
            "FRAUDOPS_MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
            "MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
            "FRAUDOPS_BQ_ENDPOINT": settings.warehouse.endpoint,
            # The local stack serves the simulator's accelerated event time (``fraudops demo``):
            # event times are bounded against the newest one accepted, not the wall clock.
            "FRAUDOPS_EVENT_CLOCK": "simulated",
            "PYTHONUNBUFFERED": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        },
        cwd=settings.state_dir,
        ready_timeout_s=900.0,
        port=settings.scoring.port,
    )
