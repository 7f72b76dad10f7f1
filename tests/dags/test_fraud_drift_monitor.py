"""fraud_drift_monitor with dag.test(): a real champion (trained on simulated data, in the real
MLflow), live production predictions in the real emulator; drift fires the Asset, no drift doesn't."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture()
def monitor_dag(airflow_db: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "fraud_drift_monitor.py"))
    assert bag.import_errors == {}
    return bag.dags["fraud_drift_monitor"]


def _live_rows(
    reference: Any, names: list[str], version: str, end: dt.datetime, shift: bool, tag: str = ""
) -> list[dict[str, Any]]:
    """Production prediction rows replaying reference vectors (optionally from a shifted world)."""
    import numpy as np

    rng = np.random.default_rng(5)
    sample = reference.sample(n=1500, replace=True, random_state=7).reset_index(drop=True)
    if shift:  # an attack wave: bigger amounts, busier cards, many new devices
        for col in ("tx_amount", "card_amount_sum_1d", "card_amount_sum_7d", "card_tx_count_1d"):
            sample[col] = sample[col] * 6 + 50
        sample["card_new_device_30d"] = 1.0
        sample["score"] = np.clip(sample["score"] * 8 + 0.2, 0, 1)
    return [
        {
            "transaction_id": f"live-{'s' if shift else 'n'}{tag}-{i}",
            "model_name": "monitor-test",
            "model_version": version,
            "mode": "production",
            "score": float(row["score"]),
            "decision": "approve",
            "features": json.dumps([float(row[n]) for n in names]),
            "served_at": end - dt.timedelta(seconds=int(rng.integers(1, 3 * 3600))),
        }
        for i, row in sample.iterrows()
    ]


def test_drift_fires_the_asset_and_no_drift_does_not(
    monitor_dag: Any,
    fraudops_env: Path,
    warehouse: Any,
    monkeypatch: pytest.MonkeyPatch,
    small_bootstrap_plan: Any,
) -> None:
    import pandas as pd

    from fraudops.config import load_settings
    from fraudops.registry import download_artifact_dir
    from fraudops.stack.bootstrap import ensure_champion

    monkeypatch.setenv("FRAUDOPS_BQ_DATASET", warehouse.cfg.dataset)
    monkeypatch.setenv("FRAUDOPS_MODEL_NAME", "monitor-test")
    settings = load_settings()
    version = ensure_champion(settings, small_bootstrap_plan)["version"]
    bundle = download_artifact_dir(
        "monitor-test", version, fraudops_env / "ref", tracking_uri=settings.mlflow.tracking_uri
    )
    names = [f["name"] for f in json.loads((bundle / "feature_spec.json").read_text())["features"]]
    reference = pd.read_parquet(bundle / "reference_profile.parquet")

    end = dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)
    conf = {"window_hours": 6.0, "min_events": 500, "end": end.isoformat()}

    warehouse.upsert("predictions", _live_rows(reference, names, version, end, shift=False))
    calm = monitor_dag.test(run_conf=conf)
    states = {ti.task_id: str(ti.state) for ti in calm.get_task_instances()}
    assert str(calm.state) == "success", states
    assert states["emit_drift"] == "skipped"
    result = calm.get_task_instance("check_live_drift").xcom_pull(task_ids="check_live_drift")
    assert result["status"] == "ok" and result["n_current"] == 1500

    shifted_end = end + dt.timedelta(days=1)
    warehouse.upsert("predictions", _live_rows(reference, names, version, shifted_end, shift=True))
    storm = monitor_dag.test(run_conf={**conf, "end": shifted_end.isoformat()})
    states = {ti.task_id: str(ti.state) for ti in storm.get_task_instances()}
    assert str(storm.state) == "success" and states["emit_drift"] == "success", states
    result = storm.get_task_instance("check_live_drift").xcom_pull(task_ids="check_live_drift")
    assert result["drifted"] is True and "tx_amount" in result["drifted_features"]

    # Two hours on, the same drift is still there: recorded, but not signalled a second time (its
    # retrain is on the way); a new champion version or the end of the cooldown signals again.
    later = shifted_end + dt.timedelta(hours=2)
    again = monitor_dag.test(run_conf={**conf, "end": later.isoformat()})
    states = {ti.task_id: str(ti.state) for ti in again.get_task_instances()}
    assert str(again.state) == "success" and states["emit_drift"] == "skipped", states
    result = again.get_task_instance("check_live_drift").xcom_pull(task_ids="check_live_drift")
    assert result["drifted"] is True and result["signal"] is False
    assert result["status"] == "drift_already_signalled"
    assert dt.datetime.fromisoformat(result["signalled_before"]) == shifted_end

    # Past the cooldown, with a fraud_release run running (a shadow test or a probation): recorded,
    # not signalled, so no second retrain races that release for the champion. Once the run has
    # ended (here: failed), the next look signals.
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    run_id = f"manual__in_flight_{warehouse.cfg.dataset}"
    with create_session() as session:
        session.add(
            DagRun(
                dag_id="fraud_release",
                run_id=run_id,
                run_type="manual",
                state=DagRunState.RUNNING,
                run_after=dt.datetime.now(dt.UTC),
            )
        )
    past = shifted_end + dt.timedelta(hours=30)
    warehouse.upsert("predictions", _live_rows(reference, names, version, past, shift=True, tag="later"))
    try:
        held = monitor_dag.test(run_conf={**conf, "end": past.isoformat()})
    finally:
        with create_session() as session:
            for run in session.query(DagRun).filter(DagRun.run_id == run_id):
                run.state = DagRunState.FAILED
    states = {ti.task_id: str(ti.state) for ti in held.get_task_instances()}
    assert str(held.state) == "success" and states["emit_drift"] == "skipped", states
    result = held.get_task_instance("check_live_drift").xcom_pull(task_ids="check_live_drift")
    assert result["drifted"] is True and result["signal"] is False, result
    assert result["status"] == "drift_release_in_flight"
    assert result["release_in_flight"] == ["fraud_release: 1 running"]
    freed = monitor_dag.test(run_conf={**conf, "end": (past + dt.timedelta(minutes=5)).isoformat()})
    states = {ti.task_id: str(ti.state) for ti in freed.get_task_instances()}
    assert str(freed.state) == "success" and states["emit_drift"] == "success", states

    rows = warehouse.query(
        "SELECT `check`, COUNT(*) AS n FROM drift_metrics WHERE column_name = '__dataset__' GROUP BY `check` "
        "ORDER BY `check`"
    )
    assert rows == [
        {"check": "live_drift_signal", "n": 2},
        {"check": "live_feature_drift", "n": 5},
        {"check": "live_score_drift", "n": 5},
    ]
