"""Fixtures for the scoring service: tiny real models (LightGBM → ONNX bundles) built once per
session, plus hand-made broken ONNX graphs, registered in the session's real MLflow server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from bundles import tiny_bundle
from serving_helpers import NAN_ABOVE, LiveServer, sigmoid_model, swap_model


@pytest.fixture()
def live() -> Iterator[list[LiveServer]]:
    """Servers a test starts (append them); closed when it ends, whatever happened."""
    servers: list[LiveServer] = []
    yield servers
    for s in servers:
        s.close()


def _tiny_bundle(out: Path, n_estimators: int, seed: int) -> Path:
    bundle: Path = tiny_bundle(
        out,
        n_estimators=n_estimators,
        seed=seed,
        world=(1500, 1300, 100, 300),
        days=6,
        n_reference=1500,
        n_holdout=400,
    )
    return bundle


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
