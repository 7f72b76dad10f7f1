"""ONNX bundle: parity with the native model, and verify_artifact's rejections."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from training_data import Trained

from fraudops.exceptions import ArtifactError
from fraudops.training.package import (
    MANIFEST_FILE,
    build_artifact,
    load_scorer,
    onnx_parity,
    sha256_file,
    to_onnx,
    verify_artifact,
)


@pytest.mark.parametrize("family", ["lightgbm", "logreg"])
def test_onnx_parity_below_1e4(trained: Trained, family: str) -> None:
    result = trained.lgbm if family == "lightgbm" else trained.logreg
    X = trained.data.X.iloc[trained.split.holdout_idx]
    diff = onnx_parity(result.model, to_onnx(result.model, family, X.shape[1]), X)
    print(f"{family} ONNX parity max abs diff: {diff:.3g}")
    assert diff < 1e-4


def test_bundle_contents_and_verification(artifact_dir: Path, trained: Trained) -> None:
    names = {p.name for p in artifact_dir.iterdir()}
    assert {
        "model.onnx",
        "feature_spec.json",
        "input_schema.json",
        "reference_profile.parquet",
        "metrics.json",
        "manifest.json",
    } <= names
    manifest = json.loads((artifact_dir / MANIFEST_FILE).read_text())
    assert manifest["feature_spec_id"] == "fs-test"
    assert manifest["model_family"] == "lightgbm"
    assert manifest["decision_threshold"] == 0.8
    assert set(manifest["files"]) == names - {MANIFEST_FILE}
    schema = json.loads((artifact_dir / "input_schema.json").read_text())
    assert schema["input"] == {"name": "features", "dtype": "float32", "shape": [None, 8]}
    report = verify_artifact(artifact_dir)
    print(f"single-row latency p50={report.latency_p50_ms:.4f} ms p99={report.latency_p99_ms:.4f} ms")
    assert report.reference_rows == 5_000
    assert 0.0 <= report.score_min <= report.score_max <= 1.0

    scorer = load_scorer(artifact_dir)
    X = trained.data.X.iloc[trained.split.holdout_idx[:200]]
    native = trained.lgbm.predict_proba(X.to_numpy(np.float32))
    assert np.max(np.abs(scorer.score_batch(X.to_numpy()) - native)) < 1e-4
    assert scorer.score_one(X.iloc[0].tolist()) == pytest.approx(native[0], abs=1e-4)
    assert scorer.feature_spec_id == "fs-test" and scorer.decision_threshold == 0.8
    with pytest.raises(ValueError, match="expected 8 features"):
        scorer.score_one([0.0] * 7)


def _copy(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / "bundle"))


def test_rejects_corrupt_model(artifact_dir: Path, tmp_path: Path) -> None:
    bundle = _copy(artifact_dir, tmp_path)
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model\.onnx is corrupt"):
        verify_artifact(bundle)


def test_rejects_mismatched_feature_spec(artifact_dir: Path, tmp_path: Path) -> None:
    bundle = _copy(artifact_dir, tmp_path)
    spec = json.loads((bundle / "feature_spec.json").read_text())
    spec["features"].append({"name": "f8", "version": 1})
    (bundle / "feature_spec.json").write_text(json.dumps(spec))
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    manifest["files"]["feature_spec.json"] = sha256_file(bundle / "feature_spec.json")
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))
    # Spec and schema disagree.
    with pytest.raises(ArtifactError, match="feature order differs from the feature spec"):
        verify_artifact(bundle)
    # Spec and schema agree with each other (re-hashed, so no hash check fires) but not with
    # the model's input width.
    schema = json.loads((bundle / "input_schema.json").read_text())
    schema["feature_names"].append("f8")
    (bundle / "input_schema.json").write_text(json.dumps(schema))
    manifest["files"]["input_schema.json"] = sha256_file(bundle / "input_schema.json")
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="model expects 8 features, feature spec lists 9"):
        verify_artifact(bundle)


def test_rejects_too_slow(artifact_dir: Path) -> None:
    with pytest.raises(ArtifactError, match=r"p99 latency .* exceeds the budget"):
        verify_artifact(artifact_dir, latency_budget_ms=0.000001, n_latency_calls=200)


def test_latency_rounds_keep_the_best_round_and_tell_it(artifact_dir: Path) -> None:
    from fraudops.exceptions import LatencyBudgetError

    with pytest.raises(LatencyBudgetError, match=r"\(best of 3 rounds\)") as err:
        verify_artifact(artifact_dir, latency_budget_ms=0.000001, n_latency_calls=200, latency_rounds=3)
    assert err.value.rounds == 3 and err.value.budget_ms == 0.000001 and err.value.p99_ms > 0
    # Within the budget at the first round: one round, and the report says what it measured.
    report = verify_artifact(artifact_dir, latency_budget_ms=1000.0, n_latency_calls=200, latency_rounds=3)
    assert 0 < report.latency_p99_ms <= 1000.0


def test_rejects_missing_manifest(artifact_dir: Path, tmp_path: Path) -> None:
    bundle = _copy(artifact_dir, tmp_path)
    (bundle / MANIFEST_FILE).unlink()
    with pytest.raises(ArtifactError, match=r"no manifest\.json"):
        verify_artifact(bundle)


def test_rejects_nan_output(trained: Trained, tmp_path: Path) -> None:
    # Trees route NaN inputs to a branch, so poison the graph itself: scores become NaN.
    import onnx
    from onnx import helper

    d, s = trained.data, trained.split
    info = build_artifact(
        trained.logreg.model,
        family="logreg",
        out_dir=tmp_path / "bundle",
        feature_spec=d.feature_spec,
        X_reference=d.X.iloc[s.train_idx[:500]],
        X_holdout=d.X.iloc[s.holdout_idx[:500]],
    )
    model_path = info.path / "model.onnx"
    onx = onnx.load(str(model_path))
    graph = onx.graph
    for node in graph.node:
        node.output[:] = ["probabilities_raw" if n == "probabilities" else n for n in node.output]
    graph.initializer.append(helper.make_tensor("nan_scale", onnx.TensorProto.FLOAT, [], [float("nan")]))
    graph.node.append(helper.make_node("Mul", ["probabilities_raw", "nan_scale"], ["probabilities"]))
    onnx.save(onx, str(model_path))
    manifest = json.loads((info.path / MANIFEST_FILE).read_text())
    manifest["files"]["model.onnx"] = sha256_file(model_path)
    (info.path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="NaN"):
        verify_artifact(info.path)
