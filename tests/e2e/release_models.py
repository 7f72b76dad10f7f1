"""Real model bundles for the release end-to-end tests, trained on the test world's own history.

* ``champion`` — logistic regression (the incumbent a better model should beat);
* ``better`` — LightGBM on the same features;
* ``worse`` — LightGBM that only sees weak features (its strong columns were constant in training,
  so its trees never use them: a feature-pipeline regression);
* ``slow`` — ``better`` plus a heavy dense branch that adds tens of milliseconds per call;
* ``crashing`` — ``better``, but ONNX Runtime raises on large amounts (an out-of-range Gather);
* ``constant`` — always 0.02;
* ``degrading`` — ``better``, but NaN once a region's hourly volume exceeds anything in training:
  fine in shadow on normal traffic, broken in production when a traffic surge arrives.

The variants are graph surgery on ``better``'s ONNX file (re-hashed in the manifest), so they go
through the same verification, registry and serving code as any model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: Features a "weak" model keeps.
WEAK = ("tx_amount", "tx_hour_utc", "device_tx_count_1h", "region_tx_count_1h")


def training_frame(tx: Any, labels: Any, train_days: int) -> tuple[Any, np.ndarray, Any, dict[str, Any]]:
    """Features over the whole history, training rows from the last ``train_days`` only."""
    import pandas as pd

    from fraudops.features import FeatureSpec, build_offline

    spec = FeatureSpec.default()
    times = pd.to_datetime(tx.event_time, utc=True)
    recent = (times >= times.max() - pd.Timedelta(days=train_days)).to_numpy()
    ids = tx.transaction_id.to_numpy()[recent]
    X = build_offline(tx, labels, spec).loc[ids].reset_index(drop=True)
    fraud = set(labels.loc[labels.is_fraud.astype(bool), "transaction_id"])
    y = pd.Series(ids).isin(fraud).astype(int).to_numpy()
    return X, y, times[recent].reset_index(drop=True), spec.to_dict()


def _bundle(result: Any, X: Any, y: np.ndarray, spec: dict[str, Any], out: Path) -> Path:
    from fraudops.training import build_artifact
    from fraudops.training.evaluate import threshold_at_fpr

    valid = result.split.valid_idx
    threshold = float(threshold_at_fpr(y[valid], result.predict_proba(X.iloc[valid]), 0.01))
    build_artifact(
        result.model,
        family=result.family,
        out_dir=out,
        feature_spec=spec,
        X_reference=X.iloc[result.split.train_idx],
        X_holdout=X.iloc[valid],
        decision_threshold=threshold,
        latency_budget_ms=250.0,  # the shared test machine is busy; the gate judges latency
        reference_rows=5000,
    )
    return out


def train_bundles(root: Path, tx: Any, labels: Any, train_days: int = 15) -> dict[str, Path]:
    from fraudops.training import LightGBMParams, train_model

    X, y, t, spec = training_frame(tx, labels, train_days)
    lgbm = LightGBMParams(n_estimators=150, num_leaves=15, num_threads=1, seed=3)
    champion = train_model(X, y, t, family="logreg")
    better = train_model(X, y, t, family="lightgbm", lightgbm_params=lgbm)
    X_weak = X.copy()
    for col in X.columns:
        if col not in WEAK:
            X_weak[col] = 0.0
    worse = train_model(X_weak, y, t, family="lightgbm", lightgbm_params=lgbm)
    out = {
        "champion": _bundle(champion, X, y, spec, root / "champion"),
        "better": _bundle(better, X, y, spec, root / "better"),
        "worse": _bundle(worse, X, y, spec, root / "worse"),
    }
    names = list(X.columns)
    amount_cut = float(np.quantile(X["tx_amount"], 0.96))
    surge_cut = float(X["region_tx_count_1h"].max() * 1.25)
    # Its manifest allows any latency: judging latency on live traffic is the gate's job here.
    out["slow"] = _variant(out["better"], root / "slow", lambda g, n: _slow(g, n), latency_budget_ms=60_000.0)
    # Its bundle's verification rows stop below the amount it crashes on (an unrepresentative
    # reference): it passes verification, and only live traffic in shadow shows the failure.
    out["crashing"] = _variant(
        out["better"],
        root / "crashing",
        lambda g, n: _fail_above(g, names.index("tx_amount"), amount_cut),
        keep_reference=lambda ref: ref[ref["tx_amount"] <= amount_cut],
    )
    surge_col = names.index("region_tx_count_1h")
    out["degrading"] = _variant(
        out["better"], root / "degrading", lambda g, n: _nan_above(g, surge_col, surge_cut)
    )
    out["constant"] = _variant(out["better"], root / "constant", lambda g, n: _constant(g))
    (root / "cuts.json").write_text(json.dumps({"amount_cut": amount_cut, "surge_cut": surge_cut}))
    return out


# -- ONNX surgery -------------------------------------------------------------------------------
def _const(name: str, value: Any, dtype: Any = np.float32) -> Any:
    from onnx import helper, numpy_helper

    tensor = numpy_helper.from_array(np.asarray(value, dtype), name)
    return helper.make_node("Constant", [], [name], value=tensor)


def _column(graph: Any, index: int, out: str) -> list[Any]:
    from onnx import helper

    return [
        _const(f"{out}_s", [index], np.int64),
        _const(f"{out}_e", [index + 1], np.int64),
        _const(f"{out}_a", [1], np.int64),
        helper.make_node("Slice", ["features", f"{out}_s", f"{out}_e", f"{out}_a"], [out]),
    ]


def _rewire(graph: Any) -> str:
    """Rename the model's probabilities output to ``probabilities_base``; returns the new name."""
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == "probabilities":
                node.output[i] = "probabilities_base"
    return "probabilities_base"


def _add_zeroed(graph: Any, base: str, term: str) -> list[Any]:
    """probabilities = base + 0 * term (term: anything broadcastable; NaN/errors propagate)."""
    from onnx import helper

    return [
        _const("zero_k", 0.0),
        helper.make_node("Mul", [term, "zero_k"], ["zeroed"]),
        helper.make_node("Add", [base, "zeroed"], ["probabilities"]),
    ]


def _slow(graph: Any, n: int, hidden: int = 768, repeats: int = 900) -> list[Any]:
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    graph.initializer.extend(
        [
            numpy_helper.from_array((rng.standard_normal((n, hidden)) * 0.01).astype(np.float32), "w1"),
            numpy_helper.from_array((rng.standard_normal((hidden, hidden)) * 0.01).astype(np.float32), "w2"),
        ]
    )
    base = _rewire(graph)
    return [
        helper.make_node("MatMul", ["features", "w1"], ["h0"]),
        _const("axis0", [0], np.int64),
        helper.make_node("ReduceSum", ["h0", "axis0"], ["h1"], keepdims=1),  # [1, hidden]: per call
        _const("reps", [repeats, 1], np.int64),
        helper.make_node("Tile", ["h1", "reps"], ["h1t"]),
        helper.make_node("MatMul", ["h1t", "w2"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["h3"]),
        helper.make_node("ReduceSum", ["h3"], ["heavy"], keepdims=0),
        *_add_zeroed(graph, base, "heavy"),
    ]


def _fail_above(graph: Any, index: int, cut: float) -> list[Any]:
    """ONNX Runtime raises (Gather index out of range) for rows with column ``index`` > ``cut``."""
    from onnx import helper

    base = _rewire(graph)
    return [
        *_column(graph, index, "amt"),
        _const("cut", cut),
        helper.make_node("Greater", ["amt", "cut"], ["big"]),
        helper.make_node("Cast", ["big"], ["big_i"], to=7),  # int64
        _const("seven", 7, np.int64),
        helper.make_node("Mul", ["big_i", "seven"], ["idx"]),
        _const("pool", [0.0, 0.0]),
        helper.make_node("Gather", ["pool", "idx"], ["picked"], axis=0),
        *_add_zeroed(graph, base, "picked"),
    ]


def _nan_above(graph: Any, index: int, cut: float) -> list[Any]:
    from onnx import helper

    base = _rewire(graph)
    return [
        *_column(graph, index, "vol"),
        _const("cut", cut),
        helper.make_node("Sub", ["cut", "vol"], ["room"]),
        helper.make_node("Sqrt", ["room"], ["root"]),  # NaN once vol > cut
        *_add_zeroed(graph, base, "root"),
    ]


def _constant(graph: Any) -> list[Any]:
    from onnx import helper

    base = _rewire(graph)
    return [
        _const("zero_c", 0.0),
        _const("p_const", [[0.98, 0.02]]),
        helper.make_node("Mul", [base, "zero_c"], ["nothing"]),
        helper.make_node("Add", ["nothing", "p_const"], ["probabilities"]),
    ]


def _variant(
    src: Path,
    dest: Path,
    build: Callable[[Any, int], list[Any]],
    keep_reference: Callable[[Any], Any] | None = None,
    latency_budget_ms: float | None = None,
) -> Path:
    import shutil

    import onnx
    import pandas as pd

    from fraudops.training.package import sha256_file

    shutil.copytree(src, dest)
    model = onnx.load(str(dest / "model.onnx"))
    for opset in model.opset_import:  # the added nodes use opset-15 signatures
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, 15)
    graph = model.graph
    n = graph.input[0].type.tensor_type.shape.dim[1].dim_value
    graph.node.extend(build(graph, n))
    kept = [o for o in graph.output if o.name == "probabilities"]
    del graph.output[:]
    graph.output.extend(kept)
    onnx.checker.check_model(model)
    (dest / "model.onnx").write_bytes(model.SerializeToString())
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["files"]["model.onnx"] = sha256_file(dest / "model.onnx")
    if keep_reference is not None:
        ref = dest / "reference_profile.parquet"
        keep_reference(pd.read_parquet(ref)).to_parquet(ref)
        manifest["files"][ref.name] = sha256_file(ref)
    manifest["variant"] = dest.name
    if latency_budget_ms is not None:
        manifest["latency_budget_ms"] = latency_budget_ms
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest
