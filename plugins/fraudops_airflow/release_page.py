"""The release page inside Airflow: a FastAPI app mounted in the API server at ``/fraudops`` and a
"Releases" entry in Airflow's navigation that shows it embedded (``external_views`` with a
``url_route``). The page is built by ``fraudops.release.report`` from the warehouse and the MLflow
registry; this module only wires it into Airflow.

The endpoints are read-only. Airflow does not put plugin FastAPI apps behind its own auth, so the
page shows only release metadata and aggregates (no transaction rows); deployments that need it
private put the API server behind their SSO proxy, as for the rest of the UI.
"""

from __future__ import annotations

import asyncio
from typing import Any

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse

from fraudops_airflow.console import router as console_router

app = FastAPI(title="fraudops releases", docs_url=None, redoc_url=None)
app.include_router(console_router)


def _overview() -> Any:
    from fraudops.clients.scoring import service_state
    from fraudops.config import load_settings
    from fraudops.exceptions import ServiceError
    from fraudops.release.report import release_overview
    from fraudops_airflow.hooks import WarehouseHook

    settings = load_settings()
    warehouse = WarehouseHook(warehouse_conn_id="fraudops_warehouse").get_warehouse()
    overview = release_overview(warehouse, settings.mlflow.model_name, settings.mlflow.tracking_uri)
    try:  # the challengers in shadow now, with the stream backlog in the scale profile
        overview.shadow = dict(service_state(settings.scoring.url, 5.0).get("challengers") or {})
    except ServiceError:
        overview.shadow = None
    return overview


@app.get("/releases", response_class=HTMLResponse)
async def releases_page() -> HTMLResponse:
    from fraudops.release.report import render_page

    # Warehouse and registry clients are synchronous: keep them off the API server's event loop.
    overview = await asyncio.to_thread(_overview)
    return HTMLResponse(await asyncio.to_thread(render_page, overview))


@app.get("/releases.json")
async def releases_json() -> JSONResponse:
    overview = await asyncio.to_thread(_overview)
    daily = overview.daily.astype(object).where(overview.daily.notna(), None)
    return JSONResponse(
        {
            "model_name": overview.model_name,
            "aliases": overview.aliases,
            "decisions": [
                {k: str(v) if k == "decided_at" else v for k, v in r.items()} for r in overview.decisions
            ],
            "daily": [
                {k: str(v) if k == "day" else v for k, v in r.items()} for r in daily.to_dict("records")
            ],
        }
    )


class FraudopsReleasesPlugin(AirflowPlugin):
    name = "fraudops_releases"
    fastapi_apps = [  # noqa: RUF012
        {"app": app, "url_prefix": "/fraudops", "name": "fraudops releases"}
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "Releases",
            "href": "fraudops/releases",
            "url_route": "fraudops-releases",
            "destination": "nav",
            "category": "browse",
        },
        {
            "name": "Model console",
            "href": "fraudops/console",
            "url_route": "fraudops-console",
            "destination": "nav",
            "category": "browse",
        },
    ]
