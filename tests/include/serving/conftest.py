"""Fixtures for the scoring service: tiny real models (LightGBM → ONNX bundles) built once per
session, plus hand-made broken ONNX graphs, registered in the session's real MLflow server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from serving_helpers import NAN_ABOVE


def _tiny_bundle(out: Path, n_estimators: int, seed: int) -> Path:
    from fraudops.features import FeatureSpec, build_offline
    from fraudops.simulate import SimulationConfig, generate
    from fraudops.training import LightGBMParams, build_artifact, train_model

    cfg = SimulationConfig(n_cards=1500, n_customers=1300, n_merchants=100, n_terminals=300)
    sim = generate("2026-05-01", 6, seed, cfg)
    tx, labels = sim.transactions, sim.labels
    spec = FeatureSpec.default()
    X = build_offline(tx, labels, spec).loc[tx.transaction_id.to_numpy()].reset_index(drop=True)
    fraud = set(labels.loc[labels.is_fraud.astype(bool), "transaction_id"])
    y = tx.transaction_id.isin(fraud).astype(int).to_numpy()
    res = train_model(
        X,
        y,
        tx.event_time.reset_index(drop=True),
        family="lightgbm",
        lightgbm_params=LightGBMParams(n_estimators=n_estimators, num_threads=1, seed=seed),
    )
    build_artifact(
        res.model,
        family="lightgbm",
        out_dir=out,
        feature_spec=spec.to_dict(),
        X_reference=X.iloc[:1500],
        X_holdout=X.iloc[-400:],
        decision_threshold=0.5,
        latency_budget_ms=50.0,  # generous: the test machine is shared and busy
    )
    return out


def _nan_graph(n: int, always: bool) -> bytes:
    """probabilities = [1-p, p], p = sigmoid(amount/1000 - 2) + 0*sqrt(NAN_ABOVE - amount) (NaN above)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def const(name: str, value: Any) -> onnx.NodeProto:
        return helper.make_node(
            "Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, np.float32), name)
        )

    nodes = [
        helper.make_node("Constant", [], ["starts"], value=numpy_helper.from_array(np.array([0], np.int64))),
        helper.make_node("Constant", [], ["ends"], value=numpy_helper.from_array(np.array([1], np.int64))),
        helper.make_node("Constant", [], ["axes"], value=numpy_helper.from_array(np.array([1], np.int64))),
        helper.make_node("Slice", ["features", "starts", "ends", "axes"], ["x0"]),
        const("limit", -1.0 if always else NAN_ABOVE),
        const("zero", 0.0),
        const("one", 1.0),
        const("scale", 0.001),
        const("two", 2.0),
        helper.make_node("Mul", ["x0", "zero"] if always else ["x0", "one"], ["xa"]),
        helper.make_node("Sub", ["limit", "xa"], ["d"]),
        helper.make_node("Sqrt", ["d"], ["r"]),
        helper.make_node("Mul", ["r", "zero"], ["z"]),
        helper.make_node("Mul", ["x0", "scale"], ["s"]),
        helper.make_node("Sub", ["s", "two"], ["s2"]),
        helper.make_node("Sigmoid", ["s2"], ["p0"]),
        helper.make_node("Add", ["p0", "z"], ["p"]),
        helper.make_node("Sub", ["one", "p"], ["q"]),
        helper.make_node("Concat", ["q", "p"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "fragile",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, n])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _swap_model(src: Path, dest: Path, onnx_bytes: bytes) -> Path:
    from fraudops.training.package import sha256_file

    shutil.copytree(src, dest)
    (dest / "model.onnx").write_bytes(onnx_bytes)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["files"]["model.onnx"] = sha256_file(dest / "model.onnx")
    manifest["model_family"] = "handmade"
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


@pytest.fixture(scope="session")
def bundles(session_tmp: Path) -> dict[str, Path]:
    """``a`` and ``b`` (real LightGBM), ``fragile`` (NaN above an amount), ``broken`` (NaN always)."""
    root = session_tmp / "serving-bundles"
    a = _tiny_bundle(root / "a", 20, 3)
    b = _tiny_bundle(root / "b", 30, 4)
    n = json.loads((a / "manifest.json").read_text())["n_features"]
    return {
        "a": a,
        "b": b,
        "fragile": _swap_model(a, root / "fragile", _nan_graph(n, always=False)),
        "broken": _swap_model(a, root / "broken", _nan_graph(n, always=True)),
    }
