"""Model intake against the real warehouse (BigQuery emulator) and MLflow: a real small model of
each framework, trained here, saved the way its users save it, taken through intake; and bad
uploads, each refused by the check that owns it, registering nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from intake_models import BUILDERS, INTAKE_FEATURES, lightgbm_model

from fraudops.intake import IntakeRequest, run_intake

pytestmark = [pytest.mark.byom, pytest.mark.integration]

FEATURES = INTAKE_FEATURES


@pytest.fixture()
def world(intake_world: dict[str, Any]) -> dict[str, Any]:
    return intake_world


def _versions(name: str) -> list[Any]:
    import mlflow

    from fraudops.config import load_settings

    client = mlflow.MlflowClient(tracking_uri=load_settings().mlflow.tracking_uri)
    try:
        return list(client.search_model_versions(f"name = '{name}'"))
    except mlflow.exceptions.MlflowException:
        return []


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_a_model_of_each_framework_goes_through_intake(
    fraudops_env: Path, world: dict[str, Any], tmp_path: Path, kind: str
) -> None:
    from fraudops.registry import download_artifact_dir
    from fraudops.training import verify_artifact
    from fraudops.training.package import read_manifest

    path = BUILDERS[kind](world["X"], world["y"], tmp_path)
    name = f"intake-{kind}"
    req = IntakeRequest(path=path, features=FEATURES, author="dana.scientist", model_name=name, emit=False)
    report = run_intake(req, warehouse=world["wh"])
    print(
        "\n" + "\n".join(f"{c.name:10s} {'ok' if c.passed else 'REFUSED'} {c.detail}" for c in report.checks)
    )
    assert report.ok, report.error
    assert [c.name for c in report.checks] == [
        "format",
        "features",
        "conversion",
        "screen",
        "parity",
        "threshold",
        "package",
        "verify",
        "register",
    ]
    (version,) = _versions(name)
    assert version.tags["author"] == "dana.scientist" and version.tags["source"] == "upload"
    assert version.tags["upload_sha256"] == report.sha256
    # What the registry holds is a bundle like a retrained one, and it verifies as serving loads it.
    bundle = download_artifact_dir(name, version.version, tmp_path / "download")
    manifest = read_manifest(bundle)
    assert manifest["upload_format"] == report.format and manifest["author"] == "dana.scientist"
    assert manifest["threshold_evidence"]["events"] > 1000
    assert manifest["threshold_evidence"]["flagged_share"] <= req.alert_budget  # ties move it up
    assert verify_artifact(bundle).n_features == len(FEATURES)
    spec = json.loads((bundle / "feature_spec.json").read_text())
    assert [f["name"] for f in spec["features"]] == list(FEATURES)


def test_the_same_upload_twice_registers_one_version(
    fraudops_env: Path, world: dict[str, Any], tmp_path: Path
) -> None:
    path = lightgbm_model(world["X"], world["y"], tmp_path)
    req = IntakeRequest(path=path, features=FEATURES, author="dana", model_name="intake-twice", emit=False)
    first = run_intake(req, warehouse=world["wh"])
    again = run_intake(req, warehouse=world["wh"])  # e.g. a retry after a lost answer
    assert first.ok and again.ok and first.version == again.version
    assert "registered before" in again.checks[-1].detail
    assert len(_versions("intake-twice")) == 1


def _raw_scores_onnx(out: Path) -> Path:
    """A linear model exported without its sigmoid: scores, not probabilities."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((len(FEATURES), 1), 0.01, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["score"])],
        "raw",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, len(FEATURES)])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        initializer=[w],
    )
    path = out / "raw.onnx"
    path.write_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )
    return path


def test_bad_uploads_are_refused_by_the_check_that_owns_them_and_register_nothing(
    fraudops_env: Path, world: dict[str, Any], tmp_path: Path
) -> None:
    import pickle

    X, y = world["X"], world["y"]
    name = "intake-refused"
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    regression = tmp_path / "regression"
    regression.mkdir()
    cases: list[tuple[IntakeRequest, str, str]] = [
        (IntakeRequest(pickled, FEATURES, "dana", name, emit=False), "pickle", "skops.io.dump"),
        (
            IntakeRequest(lightgbm_model(X, y, tmp_path), FEATURES[:-1], "dana", name, emit=False),
            "features",
            "reads 8 features, the upload names 7",
        ),
        (
            IntakeRequest(
                lightgbm_model(X, y, tmp_path), (*FEATURES[:-1], "card_shoe_size"), "dana", name, emit=False
            ),
            "features",
            "card_shoe_size: unknown",
        ),
        (
            IntakeRequest(lightgbm_model(X, y, regression, "regression"), FEATURES, "dana", name, emit=False),
            "objective",
            "binary fraud classifiers",
        ),
        (
            IntakeRequest(_raw_scores_onnx(tmp_path), FEATURES, "dana", name, emit=False),
            "parity",
            "not probabilities",
        ),
        (
            IntakeRequest(
                lightgbm_model(X, y, tmp_path), FEATURES, "dana", name, latency_budget_ms=1e-6, emit=False
            ),
            "verify",
            "p99",
        ),
        (
            IntakeRequest(lightgbm_model(X, y, tmp_path), FEATURES, "dana; rm -rf /", name, emit=False),
            "author",
            "not a user",
        ),
    ]
    for req, check, words in cases:
        report = run_intake(req, warehouse=world["wh"])
        failed = report.checks[-1]
        print(f"\n{req.path.name}: refused by {failed.name}: {failed.detail}")
        assert not report.ok and not failed.passed and failed.name == check, report.checks
        assert words in failed.detail, failed.detail
        assert report.version is None
    assert _versions(name) == []


@pytest.mark.slow
def test_an_upload_from_the_cli_starts_fraud_release_once(
    fraudops_env: Path, world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fraudops models upload`` against a real Airflow (API server, scheduler, DAG processor on a
    free port): the candidate Asset event starts a ``fraud_release`` run; the same upload again
    reuses the version and the event, so no second release starts."""
    import os
    import subprocess
    import sys
    import time

    from fraudops.clients.airflow import AirflowClient
    from fraudops.config import load_settings
    from fraudops.stack import process
    from fraudops.stack.process import free_port
    from fraudops.stack.services import airflow_password, airflow_specs

    for key in [k for k in os.environ if k.startswith("AIRFLOW")]:
        monkeypatch.delenv(key)  # the tests' private Airflow settings are not the stack's
    monkeypatch.setenv("FRAUDOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FRAUDOPS_AIRFLOW_PORT", str(free_port()))
    monkeypatch.setenv("FRAUDOPS_BQ_DATASET", world["wh"].cfg.dataset)
    monkeypatch.setenv("FRAUDOPS_MODEL_NAME", "intake-cli")
    settings = load_settings()
    specs = [s for s in airflow_specs(settings) if s.name != "airflow-triggerer"]
    path = lightgbm_model(world["X"], world["y"], tmp_path)
    upload = [
        str(Path(sys.executable).parent / "fraudops"),
        "models",
        "upload",
        str(path),
        "--features",
        ",".join(FEATURES),
        "--author",
        "dana.scientist",
    ]
    try:
        for spec in specs:
            process.start(spec)
        password = airflow_password(settings)
        assert password
        client = AirflowClient(settings.airflow.url, "admin", password)

        def candidate_asset() -> list[Any]:
            doc = client.request("GET", "/assets", params={"name_pattern": "fraudops_candidate"})
            return [a for a in doc.get("assets", []) if a["name"] == "fraudops_candidate"]

        deadline = time.monotonic() + 180
        while not candidate_asset() and time.monotonic() < deadline:
            time.sleep(2)
        (asset,) = candidate_asset()
        client.unpause("fraud_release")

        first = subprocess.run(upload, capture_output=True, text=True, timeout=300, check=False)
        print(first.stdout + first.stderr[-2000:])
        assert first.returncode == 0 and "✔ emit" in first.stdout

        runs: list[dict[str, Any]] = []
        deadline = time.monotonic() + 120
        while not runs and time.monotonic() < deadline:
            runs = [r for r in client.runs("fraud_release") if r.get("run_type") == "asset_triggered"]
            time.sleep(2)
        assert len(runs) == 1, runs

        again = subprocess.run(upload, capture_output=True, text=True, timeout=300, check=False)
        assert again.returncode == 0 and "registered before" in again.stdout, again.stdout + again.stderr
        events = client.request("GET", "/assets/events", params={"asset_id": asset["id"]})["asset_events"]
        ours = [e for e in events if (e.get("extra") or {}).get("model_name") == "intake-cli"]
        assert len(ours) == 1 and ours[0]["extra"]["author"] == "dana.scientist", ours
        time.sleep(5)
        assert len([r for r in client.runs("fraud_release") if r.get("run_type") == "asset_triggered"]) == 1
    finally:
        for spec in reversed(specs):
            process.stop(spec)
