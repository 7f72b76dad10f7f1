"""
### fraud_retrain — validated data → point-in-time features → model → ONNX artifact → MLflow registry

Runs weekly, **or** whenever `fraud_drift_monitor` emits the drift Asset, **or** from the trigger
form (window, label maturity, model family, hyper-parameters).

1. **extract** the training window (plus feature history) and the labels known by `as_of`.
2. **validate** it with Great Expectations — a failure stops the run (no retries) and keeps the
   validation result; nothing is registered.
3. **build_features** point-in-time from the feature store's offline builder.
4. **train** the chosen family and the other one as baseline on one time-ordered split.
5. **evaluate** both on a later holdout (AUC, AP, recall at fixed FPR, card precision@k, money).
6. **package** the candidate as an ONNX bundle (parity-checked, verified in a fresh session,
   latency-budgeted) with its feature spec and drift reference profile.
7. **register** a model version in MLflow and emit the `fraudops_candidate` Asset, which starts
   `fraud_release`.

Every step is a function in `fraudops.pipeline.retrain`; `fraudops train` runs the same steps.
XCom carries only paths, versions and metric dicts.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import dag, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable
from fraudops_airflow.assets import CANDIDATE, DRIFT
from fraudops_airflow.params import airflow_params
from fraudops_airflow.tasks import effective_params, run_key, run_step

from fraudops.pipeline.knobs import RETRAIN

DAG_ID = "fraud_retrain"
#: Airflow Variable (JSON) with values for params left empty (see effective_params).
PROFILE = "fraudops_retrain_defaults"


def _ctx(run_id: str | None) -> object:
    from fraudops.pipeline.retrain import RunContext

    return RunContext(run_key(run_id, DAG_ID))


def _params(params: dict[str, Any]) -> object:
    from fraudops.pipeline.retrain import RetrainParams

    return RetrainParams.from_dict(effective_params(params, PROFILE))


@dag(
    dag_id=DAG_ID,
    # No start_date, and run_immediately a zero timedelta: unpausing the DAG waits for the next
    # Monday 03:00 instead of starting a retrain for the week that already passed. (``False`` is
    # not "never" in Airflow 3.1: within a tenth of the interval, 16.8 hours of a week, it starts
    # the past run, which on a Monday put a scheduled retrain and its release in the demo's way.)
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 3 * * 1", timezone="UTC", run_immediately=dt.timedelta(0)),
        assets=DRIFT,  # type: ignore[arg-type]  # typed for serialized assets; an Asset is what it takes
    ),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["fraudops", "training"],
    default_args={"retries": 2, "retry_delay": dt.timedelta(seconds=30), "owner": "fraud-ml"},
    params={
        # Empty (null) = the `fraudops_retrain_defaults` Variable's value, else the code default
        # (fraudops.pipeline.retrain.RetrainParams), so Asset- and schedule-started runs follow the
        # deployment's profile.
        **airflow_params(RETRAIN),
    },
)
def fraud_retrain() -> None:
    @task
    def extract(params: dict[str, Any] | None = None, run_id: str | None = None) -> dict[str, Any]:
        from fraudops.pipeline import retrain

        return run_step(retrain.extract, _ctx(run_id), _params(params or {}))

    @task
    def validate(
        extract_meta: dict[str, Any], params: dict[str, Any] | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        from fraudops.pipeline import retrain

        return run_step(retrain.validate, _ctx(run_id), _params(params or {}), extract_meta)

    @task
    def build_features(
        extract_meta: dict[str, Any], params: dict[str, Any] | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        from fraudops.pipeline import retrain

        return run_step(retrain.build_features, _ctx(run_id), _params(params or {}), extract_meta)

    @task
    def train(
        features_meta: dict[str, Any], params: dict[str, Any] | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        from fraudops.pipeline import retrain

        return run_step(retrain.train, _ctx(run_id), _params(params or {}), features_meta)

    @task
    def evaluate(
        features_meta: dict[str, Any],
        train_meta: dict[str, Any],
        params: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        from fraudops.pipeline import retrain

        return run_step(retrain.evaluate, _ctx(run_id), _params(params or {}), features_meta, train_meta)

    @task
    def package(
        features_meta: dict[str, Any],
        train_meta: dict[str, Any],
        eval_meta: dict[str, Any],
        validate_meta: dict[str, Any],
        extract_meta: dict[str, Any],
        params: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        from fraudops.pipeline import retrain

        return run_step(
            retrain.package,
            _ctx(run_id),
            _params(params or {}),
            features_meta,
            train_meta,
            eval_meta,
            validate_meta,
            extract_meta,
        )

    @task(outlets=[CANDIDATE])
    def register(
        package_meta: dict[str, Any],
        eval_meta: dict[str, Any],
        extract_meta: dict[str, Any],
        train_meta: dict[str, Any],
        params: dict[str, Any] | None = None,
        run_id: str | None = None,
        outlet_events: object = None,
    ) -> dict[str, Any]:
        from fraudops.pipeline import retrain

        result = run_step(
            retrain.register,
            _ctx(run_id),
            _params(params or {}),
            package_meta,
            eval_meta,
            extract_meta,
            train_meta,
            run_name=f"{DAG_ID} {run_id}",
        )
        if outlet_events is not None:
            outlet_events[CANDIDATE].extra = {  # type: ignore[index]
                "model_name": result["model_name"],
                "version": result["version"],
                "feature_set": result["feature_set"],
            }
        return result

    # Task calls return XComArgs that Airflow resolves to the upstream task's dict at run time
    # (the tasks are annotated with what they receive then): the wiring holds them as Any.
    ext: Any = extract()
    val: Any = validate(ext)
    feats: Any = build_features(ext)
    val >> feats  # never build features from data that failed its contract
    trained: Any = train(feats)
    ev: Any = evaluate(feats, trained)
    pkg: Any = package(feats, trained, ev, val, ext)
    register(pkg, ev, ext, trained)


fraud_retrain()
