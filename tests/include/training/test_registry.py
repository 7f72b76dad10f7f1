"""Registry round trip against a real MLflow server and audit rows in the real BigQuery emulator."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from training_data import Trained

from fraudops.exceptions import PermanentError
from fraudops.registry import (
    audited_version,
    delete_alias,
    download_artifact_dir,
    get_alias_version,
    move_alias,
    register_artifact,
    set_alias,
)
from fraudops.training.package import load_scorer

pytestmark = pytest.mark.integration


def _name() -> str:
    return f"fraud-test-{uuid.uuid4().hex[:8]}"


def test_register_alias_load_and_download(
    mlflow_server: str, artifact_dir: Path, trained: Trained, tmp_path: Path
) -> None:
    import mlflow.onnx

    from fraudops.training.package import new_session

    name = _name()
    reg = register_artifact(
        artifact_dir,
        tracking_uri=mlflow_server,
        model_name=name,
        metrics=None,  # from metrics.json in the bundle
        params={"n_estimators": 150},
        tags={"trained_by": "pytest"},
        experiment="fraudops-tests",
    )
    assert reg.version == "1" and reg.model_uri == f"models:/{name}/1"

    from mlflow.tracking import MlflowClient

    mv = MlflowClient(tracking_uri=mlflow_server).get_model_version(name, reg.version)
    assert mv.tags["feature_set"] == "fs-test"
    assert mv.tags["auc"] == "0.900000" and mv.tags["ap"] == "0.200000"
    assert mv.tags["git_revision"] and mv.tags["trained_by"] == "pytest"
    assert "data_window" in mv.tags

    assert get_alias_version(name, "champion", tracking_uri=mlflow_server) is None
    assert set_alias(name, "champion", reg.version, tracking_uri=mlflow_server) is True
    assert set_alias(name, "champion", reg.version, tracking_uri=mlflow_server) is False  # idempotent
    assert get_alias_version(name, "champion", tracking_uri=mlflow_server) == "1"

    # Load by alias through MLflow and score: same numbers as the bundle's scorer.
    X = trained.data.X.iloc[trained.split.holdout_idx[:100]].to_numpy(np.float32)
    mlflow.set_tracking_uri(mlflow_server)
    onx = mlflow.onnx.load_model(f"models:/{name}@champion")
    via_mlflow = new_session(onx.SerializeToString()).run(["probabilities"], {"features": X})[0][:, 1]

    bundle = download_artifact_dir(name, "champion", tmp_path / "dl", tracking_uri=mlflow_server)
    assert json.loads((bundle / "manifest.json").read_text())["feature_spec_id"] == "fs-test"
    scorer = load_scorer(bundle)
    assert np.max(np.abs(scorer.score_batch(X) - via_mlflow)) < 1e-6

    assert delete_alias(name, "champion", tracking_uri=mlflow_server) is True
    assert delete_alias(name, "champion", tracking_uri=mlflow_server) is False
    with pytest.raises(PermanentError, match="no alias"):
        download_artifact_dir(name, "champion", tmp_path / "dl2", tracking_uri=mlflow_server)
    with pytest.raises(PermanentError, match="no version 7"):
        set_alias(name, "champion", 7, tracking_uri=mlflow_server)


def test_move_alias_audits_once_and_is_idempotent(
    mlflow_server: str, artifact_dir: Path, warehouse: object
) -> None:
    name = _name()
    v1 = register_artifact(
        artifact_dir, tracking_uri=mlflow_server, model_name=name, experiment="fraudops-tests"
    )
    v2 = register_artifact(
        artifact_dir, tracking_uri=mlflow_server, model_name=name, experiment="fraudops-tests"
    )

    first = move_alias(
        warehouse,  # type: ignore[arg-type]
        model_name=name,
        alias="champion",
        version=v1.version,
        action="bootstrap",
        actor="pytest",
        reason="first champion",
        tracking_uri=mlflow_server,
    )
    assert first.moved and first.previous_version is None and first.deployment_id
    again = move_alias(
        warehouse,  # type: ignore[arg-type]
        model_name=name,
        alias="champion",
        version=v1.version,
        action="bootstrap",
        actor="pytest",
        reason="retry",
        tracking_uri=mlflow_server,
    )
    assert not again.moved and again.deployment_id is None
    rows = warehouse.query(  # type: ignore[attr-defined]
        "SELECT * FROM deployments WHERE model_name = @m", {"m": name}
    )
    assert len(rows) == 1
    row = rows[0]
    assert (row["alias"], row["model_version"], row["previous_version"], row["action"]) == (
        "champion",
        "1",
        None,
        "bootstrap",
    )
    assert row["deployment_id"] == first.deployment_id and row["actor"] == "pytest"

    promote = move_alias(
        warehouse,  # type: ignore[arg-type]
        model_name=name,
        alias="champion",
        version=v2.version,
        action="promote",
        actor="pytest",
        reason="better AP",
        tracking_uri=mlflow_server,
    )
    assert promote.moved and promote.previous_version == "1"
    assert get_alias_version(name, "champion", tracking_uri=mlflow_server) == "2"
    assert warehouse.count("deployments") == 2  # type: ignore[attr-defined]
    assert audited_version(warehouse, name, "champion") == (True, "2")  # type: ignore[arg-type]

    # Moved behind the platform's back (MLflow API, no intent): the audit trail does not follow,
    # so the scoring service keeps refusing it...
    set_alias(name, "champion", v1.version, tracking_uri=mlflow_server)
    assert audited_version(warehouse, name, "champion") == (True, "2")  # type: ignore[arg-type]
    assert audited_version(warehouse, name, "challenger-x") == (False, None)  # type: ignore[arg-type]
    # ... until a platform move to that version adopts it with a row of its own.
    adopt = move_alias(
        warehouse,  # type: ignore[arg-type]
        model_name=name,
        alias="champion",
        version=v1.version,
        action="rollback",
        actor="pytest",
        reason="operator",
        tracking_uri=mlflow_server,
    )
    assert not adopt.moved and adopt.deployment_id
    assert audited_version(warehouse, name, "champion") == (True, "1")  # type: ignore[arg-type]
