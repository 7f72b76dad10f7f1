"""Fixtures for the scoring service: tiny real models (LightGBM → ONNX bundles) built once per
session, plus hand-made broken ONNX graphs, registered in the session's real MLflow server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving_helpers import NAN_ABOVE, LiveServer, sigmoid_model, swap_model


@pytest.fixture()
def live() -> Iterator[list[LiveServer]]:
    """Servers a test starts (append them); closed when it ends, whatever happened."""
    servers: list[LiveServer] = []
    yield servers
    for s in servers:
        s.close()


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
    """p = sigmoid(amount/1000 - 2) + 0*sqrt(NAN_ABOVE - amount): NaN above NAN_ABOVE (or always)."""
    import numpy as np
    from onnx import helper, numpy_helper

    limit = numpy_helper.from_array(np.asarray(-1.0 if always else NAN_ABOVE, np.float32), "limit")
    extra = [
        helper.make_node("Constant", [], ["limit"], value=limit),
        helper.make_node("Mul", ["x0", "zero"] if always else ["x0", "one"], ["xa"]),
        helper.make_node("Sub", ["limit", "xa"], ["d"]),
        helper.make_node("Sqrt", ["d"], ["r"]),
    ]
    model: bytes = sigmoid_model(n, extra, "r")
    return model


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
        "fragile": swap_model(a, root / "fragile", _nan_graph(n, always=False)),
        "broken": swap_model(a, root / "broken", _nan_graph(n, always=True)),
    }
