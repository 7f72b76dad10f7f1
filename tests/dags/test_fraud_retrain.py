"""fraud_retrain end to end with dag.test(): real BigQuery emulator, real MLflow, simulated data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN_CONF = {
    "window_days": 8,
    "label_maturity_days": 3,
    "history_days": 5,
    "n_estimators": 80,
    "min_rows": 1000,
}


@pytest.fixture()
def retrain_dag(airflow_db: Path) -> object:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "fraud_retrain.py"))
    assert bag.import_errors == {}
    return bag.dags["fraud_retrain"]


def _backfill(world: object, seed: int = 11) -> None:
    from fraudops.simulate import backfill
    from fraudops.warehouse import Warehouse

    backfill(Warehouse(), "2026-05-01", 17, seed, world)  # type: ignore[arg-type]


def _task_states(run: object) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}  # type: ignore[attr-defined]


def test_retrain_registers_a_servable_onnx_version(
    retrain_dag: object, fraudops_env: Path, small_world: object, warehouse: object
) -> None:
    """Also: a feed whose device field carries one value for everything (a broken join upstream)
    trains without the features read from it, and says so by name in the run and in the bundle."""
    import json

    import mlflow

    from fraudops.features import FeatureSpec
    from fraudops.registry import download_artifact_dir
    from fraudops.training import load_scorer, verify_artifact

    os.environ["FRAUDOPS_BQ_DATASET"] = warehouse.cfg.dataset  # type: ignore[attr-defined]
    os.environ["FRAUDOPS_MODEL_NAME"] = "retrain-dag-test"
    try:
        _backfill(small_world)
        warehouse.execute("UPDATE transactions SET device_id = 'unknown' WHERE TRUE")  # type: ignore[attr-defined]
        run = retrain_dag.test(run_conf=RUN_CONF)  # type: ignore[attr-defined]
        states = _task_states(run)
        assert str(run.state) == "success", states
        feats = run.get_task_instance("build_features").xcom_pull(task_ids="build_features")
        device_features = ["card_new_device_30d", "device_tx_count_1h", "device_tx_count_1d"]
        dropped = feats["dropped_features"]
        assert dropped[:3] == device_features, feats
        assert (
            "source column missing or single-valued: card_new_device_30d, device_tx_count_1h, "
            "device_tx_count_1d" in feats["feature_health"]
        )
        # The delayed risk features of the delay read off the labels (#23); in this short world the
        # longest shifts leave some of them all-zero, and they are dropped as constant, by name.
        delay = feats["risk_delay"]
        assert delay["curve_delay"] in {"1d", "3d", "7d", "14d"}
        assert delay["source"] in {"folds", "fallback"}, delay
        if delay["source"] == "folds":  # chosen among none and the delays whose windows hold labels
            assert str(delay["delay"]).replace("None", "none") in delay["fold_ap"], delay
        assert all(f"_lag{delay['delay']}_" in name for name in dropped[3:]), dropped
        offered = FeatureSpec.default(delay=delay["delay"])
        assert feats["n_features"] == len(offered) - len(dropped)
        ti = run.get_task_instance("register")
        reg = ti.xcom_pull(task_ids="register")
        # A retry of `register` after the version exists hands back that version, registers nothing.
        from fraudops_airflow.tasks import run_key

        from fraudops.pipeline import retrain

        ctx = retrain.RunContext(run_key(run.run_id, "fraud_retrain"))
        again = retrain.register(
            ctx,
            retrain.RetrainParams.from_dict(RUN_CONF),
            *(ti.xcom_pull(task_ids=t) for t in ("package", "evaluate", "extract", "train")),
        )
        assert again["version"] == reg["version"]
    finally:
        os.environ.pop("FRAUDOPS_MODEL_NAME", None)
    assert reg["model_name"] == "retrain-dag-test" and reg["version"] == "1"
    # Far better than chance (AP of a random ranking = the fraud rate, ~0.5%). Whether LightGBM beats
    # the baseline is measured on full-size data (README), not on this tiny world.
    assert reg["average_precision"] > 0.05

    client = mlflow.MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    assert len(client.search_model_versions("name='retrain-dag-test'")) == 1
    mv = client.get_model_version("retrain-dag-test", "1")
    for tag in ("data_window", "feature_set", "git_revision", "auc", "ap"):
        assert tag in mv.tags, mv.tags
    bundle = download_artifact_dir(
        "retrain-dag-test", "1", fraudops_env / "dl", tracking_uri=os.environ["MLFLOW_TRACKING_URI"]
    )
    report = verify_artifact(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["feature_health"]["dropped"] == dropped
    assert (
        manifest["feature_health"]["leakage_rows_checked"] > 0 and manifest["feature_health"]["leaks"] == []
    )
    spec = json.loads((bundle / "feature_spec.json").read_text())
    assert not {f["name"] for f in spec["features"]} & set(dropped)
    assert report.n_features == feats["n_features"]
    scorer = load_scorer(bundle)
    score = scorer.score_one([0.0] * report.n_features)
    assert 0.0 <= score <= 1.0


def test_planted_defect_fails_validation_and_registers_nothing(
    retrain_dag: object, fraudops_env: Path, small_world: object, warehouse: object
) -> None:
    import mlflow

    os.environ["FRAUDOPS_BQ_DATASET"] = warehouse.cfg.dataset  # type: ignore[attr-defined]
    os.environ["FRAUDOPS_MODEL_NAME"] = "retrain-defect-test"
    try:
        _backfill(small_world, seed=12)
        # A broken upstream feed: 30% of amounts arrive negated (a sign/unit bug).
        warehouse.execute(  # type: ignore[attr-defined]
            "UPDATE transactions SET amount = -amount - 1 "
            "WHERE MOD(ABS(FARM_FINGERPRINT(transaction_id)), 10) < 3"
        )
        run = retrain_dag.test(run_conf=RUN_CONF)  # type: ignore[attr-defined]
    finally:
        os.environ.pop("FRAUDOPS_MODEL_NAME", None)
    states = _task_states(run)
    assert str(run.state) == "failed"
    assert states["validate"] == "failed"
    assert states["register"] in ("upstream_failed", "None"), states
    client = mlflow.MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    assert client.search_model_versions("name='retrain-defect-test'") == []
    # The validation result is kept as evidence.
    results = list((fraudops_env / "artifacts" / "retrain").glob("*/validation/validation_result.json"))
    assert any("expect_column_values_to_be_between" in p.read_text() for p in results)
