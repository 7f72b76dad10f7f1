"""Real small models of each framework intake accepts, trained on the ``intake_world`` fixture's
data and saved the way their users save them (shared by the ``byom`` and ``browser`` tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: The features these models read (a mix of every family), in input order.
INTAKE_FEATURES = (
    "tx_amount",
    "tx_hour_utc",
    "card_tx_count_1h",
    "card_tx_count_1d",
    "card_amount_sum_1d",
    "card_amount_ratio_30d",
    "card_seconds_since_last",
    "terminal_fraud_rate_30d",
)


def lightgbm_model(X: np.ndarray, y: np.ndarray, out: Path, objective: str = "binary") -> Path:
    import lightgbm as lgb

    booster = lgb.train(
        {"objective": objective, "num_leaves": 8, "verbose": -1, "seed": 1},
        lgb.Dataset(X, y),
        num_boost_round=30,
    )
    path = out / "model.txt"
    booster.save_model(str(path))
    return path


def _xgboost(X: np.ndarray, y: np.ndarray, out: Path, suffix: str) -> Path:
    import xgboost as xgb

    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "seed": 1}, xgb.DMatrix(X, y), 30)
    path = out / f"model.{suffix}"
    booster.save_model(str(path))
    return path


def skops_pipeline(X: np.ndarray, y: np.ndarray, out: Path) -> Path:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    path = out / "model.skops"
    sio.dump(model, path)
    return path


def _skops_trees(X: np.ndarray, y: np.ndarray, out: Path) -> Path:
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=20, max_depth=5, random_state=1).fit(X, y)
    path = out / "forest.skops"
    sio.dump(model, path)
    return path


def _onnx_from_sklearn(X: np.ndarray, y: np.ndarray, out: Path) -> Path:
    """An ONNX file as a user exports one: their own input name, a ZipMap-free probability output."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=1).fit(X, y)
    onx = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, X.shape[1]]))],
        options={id(model): {"zipmap": False}},
    )
    path = out / "gbm.onnx"
    path.write_bytes(onx.SerializeToString())
    return path


#: The environment data scientists train in (``make frameworks``): PyTorch and TensorFlow live there,
#: never in the platform's environment, which only sees the exported ONNX file.
FRAMEWORKS_PYTHON = Path(__file__).resolve().parents[1] / ".venv-frameworks" / "bin" / "python"


def exported(kind: str, X: np.ndarray, y: np.ndarray, out: Path) -> Path:
    """A ``pytorch`` or ``keras`` model trained in the frameworks environment on ``X``, ``y`` and
    exported to ONNX with the README's commands (``tests/framework_export.py``)."""
    import subprocess

    assert FRAMEWORKS_PYTHON.exists(), f"{FRAMEWORKS_PYTHON} is missing: `make frameworks` creates it"
    data, path = out / f"{kind}-data.npz", out / f"{kind}.onnx"
    np.savez(data, X=X.astype(np.float32), y=y.astype(np.float32))
    done = subprocess.run(
        [
            str(FRAMEWORKS_PYTHON),
            str(Path(__file__).with_name("framework_export.py")),
            kind,
            str(data),
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(out),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "CUDA_VISIBLE_DEVICES": "",
        },
    )
    assert done.returncode == 0, done.stderr[-3000:]
    print(done.stdout.strip().splitlines()[-1])
    return path


BUILDERS = {
    "lightgbm": lambda X, y, out: lightgbm_model(X, y, out),
    "xgboost-json": lambda X, y, out: _xgboost(X, y, out, "json"),
    "xgboost-ubj": lambda X, y, out: _xgboost(X, y, out, "ubj"),
    "sklearn-pipeline-skops": skops_pipeline,
    "sklearn-forest-skops": _skops_trees,
    "onnx": _onnx_from_sklearn,
    "pytorch-onnx": lambda X, y, out: exported("pytorch", X, y, out),
    "keras-onnx": lambda X, y, out: exported("keras", X, y, out),
}
