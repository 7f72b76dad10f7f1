"""
### fraud_drift_monitor — is live traffic still the world the champion was trained on?

Hourly: compares the feature vectors and scores the champion saw in production over the last
window with the reference profile in its bundle (Evidently, the release policy's fixed methods).
Values go to `drift_metrics`, HTML reports to MLflow (experiment `fraudops-monitoring`). When drift
passes the policy, `emit_drift` publishes the `fraudops_drift` Asset, which starts `fraud_retrain`
(and, through its candidate Asset, the release): no human in the loop. One signal per champion
version and `cooldown_hours`: the same drift seen again while its retrain and release run is
recorded, not signalled again; nor is any drift signalled while a `fraud_release` run is running
(a shadow test or a probation), so two releases never race for the champion.

The work is `fraudops.pipeline.monitor.check_live_drift`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Param, dag, task
from fraudops_airflow.assets import DRIFT
from fraudops_airflow.tasks import run_key, run_step

DAG_ID = "fraud_drift_monitor"
RELEASE_DAG_ID = "fraud_release"


@dag(
    dag_id=DAG_ID,
    schedule="@hourly",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["fraudops", "monitoring"],
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=1), "owner": "fraud-ml"},
    params={
        "window_hours": Param(6.0, type="number", exclusiveMinimum=0, description="Live window (hours)."),
        "min_events": Param(500, type="integer", minimum=1, description="Fewer predictions: no verdict."),
        "end": Param("", type="string", description="Window end (ISO 8601); empty = now."),
        "cooldown_hours": Param(
            24.0,
            type="number",
            minimum=0,
            description="Hours without a second drift signal for the same champion version.",
        ),
    },
)
def fraud_drift_monitor() -> None:
    @task
    def check_live_drift(
        params: dict[str, Any] | None = None, run_id: str | None = None, ti: Any = None
    ) -> dict[str, Any]:
        from fraudops.pipeline import monitor

        # Release runs under way (shadow test or probation): drift seen meanwhile is held back.
        running = ti.get_dr_count(dag_id=RELEASE_DAG_ID, states=["running"]) if ti is not None else 0
        return run_step(
            monitor.check_live_drift,
            monitor.MonitorParams.from_dict(dict(params or {})),
            run_key(run_id, DAG_ID),
            releases_in_flight=[f"{RELEASE_DAG_ID}: {running} running"] if running else [],
        )

    @task.short_circuit
    def drift_detected(result: dict[str, Any]) -> bool:
        return bool(result.get("signal"))

    @task(outlets=[DRIFT])
    def emit_drift(result: dict[str, Any], outlet_events: object = None) -> dict[str, Any]:
        if outlet_events is not None:
            outlet_events[DRIFT].extra = {  # type: ignore[index]
                k: result.get(k)
                for k in ("model_name", "model_version", "feature_drift_share", "score_drifted", "window_end")
            }
        return result

    # Task calls return XComArgs that Airflow resolves to the upstream task's dict at run time
    # (the tasks are annotated with what they receive then): the wiring holds them as Any.
    result: Any = check_live_drift()
    drift_detected(result) >> emit_drift(result)


fraud_drift_monitor()
