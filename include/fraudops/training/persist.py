"""Save and load native models between pipeline steps without pickle.

The retrain DAG runs train, evaluate and package as separate tasks (retry-safe, each with its own
log), so the fitted model crosses a process boundary. LightGBM goes through its own text format;
the logistic-regression baseline through a JSON of its fitted arrays. Loading either never runs
code from the file, and the loaded model converts to ONNX exactly like the fitted one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fraudops.exceptions import ArtifactError

LGBM_FILE = "model.lgbm.txt"
LOGREG_FILE = "model.logreg.json"


def save_native(model: Any, family: str, out_dir: str | Path) -> Path:
    """Write ``model`` to ``out_dir``; returns the file written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if family == "lightgbm":
        path = out / LGBM_FILE
        booster = getattr(model, "booster_", model)
        booster.save_model(str(path))
        return path
    if family == "logreg":
        scale, logreg = model.named_steps["scale"], model.named_steps["logreg"]
        doc = {
            "scale": {
                "mean_": scale.mean_.tolist(),
                "scale_": scale.scale_.tolist(),
                "var_": scale.var_.tolist(),
                "n_features_in_": int(scale.n_features_in_),
                "n_samples_seen_": int(scale.n_samples_seen_),
            },
            "logreg": {
                "coef_": logreg.coef_.tolist(),
                "intercept_": logreg.intercept_.tolist(),
                "classes_": logreg.classes_.tolist(),
                "n_iter_": logreg.n_iter_.tolist(),
                "params": {k: v for k, v in logreg.get_params().items() if isinstance(v, int | float | str)},
            },
        }
        path = out / LOGREG_FILE
        path.write_text(json.dumps(doc))
        return path
    raise ArtifactError(f"cannot save model family {family!r}")


def load_native(path: str | Path) -> tuple[Any, str]:
    """Load a model written by ``save_native``; returns (model with predict_proba, family)."""
    import numpy as np

    p = Path(path)
    if p.is_dir():
        p = p / LGBM_FILE if (p / LGBM_FILE).exists() else p / LOGREG_FILE
    if not p.exists():
        raise ArtifactError(f"no saved model at {path}")
    if p.name == LGBM_FILE:
        import lightgbm as lgb

        class ProbaBooster(lgb.Booster):
            """A Booster that answers predict_proba like the sklearn wrapper (and converts to ONNX)."""

            def predict_proba(self, X: Any) -> np.ndarray:
                pos = np.asarray(self.predict(np.asarray(X, dtype=np.float64)), dtype=np.float64)
                return np.column_stack([1.0 - pos, pos])

        return ProbaBooster(model_file=str(p)), "lightgbm"
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    doc = json.loads(p.read_text())
    scale = StandardScaler()
    for k in ("mean_", "scale_", "var_"):
        setattr(scale, k, np.asarray(doc["scale"][k], dtype=np.float64))
    scale.n_features_in_ = doc["scale"]["n_features_in_"]
    scale.n_samples_seen_ = doc["scale"]["n_samples_seen_"]
    logreg = LogisticRegression(**doc["logreg"]["params"])
    logreg.coef_ = np.asarray(doc["logreg"]["coef_"], dtype=np.float64)
    logreg.intercept_ = np.asarray(doc["logreg"]["intercept_"], dtype=np.float64)
    logreg.classes_ = np.asarray(doc["logreg"]["classes_"])
    logreg.n_iter_ = np.asarray(doc["logreg"]["n_iter_"])
    logreg.n_features_in_ = doc["scale"]["n_features_in_"]
    return Pipeline([("scale", scale), ("logreg", logreg)]), "logreg"
