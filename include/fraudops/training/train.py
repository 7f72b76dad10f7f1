"""Training: a time-ordered split, a LightGBM challenger and a logistic-regression baseline.

Why time-ordered: fraud patterns drift and attack waves come and go, so a shuffled split lets the
model see the future of the very wave it is evaluated on and overstates quality. Here every row of
the training set is strictly earlier than every row of the validation set, which is strictly
earlier than the holdout; rows sharing a boundary timestamp all go to the later set.

Inputs are plain frames so this module does not depend on how features are built: ``X`` holds the
float feature columns in feature-spec order, ``y`` the 0/1 labels and ``event_time`` UTC timestamps
(one per row). Nothing here shuffles rows across time.

The baseline (standardised features + ``LogisticRegression(class_weight="balanced")``) exists so a
LightGBM candidate must beat something simple before anyone trusts its numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

ModelFamily = Literal["lightgbm", "logreg"]
MODEL_FAMILIES: tuple[str, ...] = ("lightgbm", "logreg")


@dataclass(frozen=True)
class SplitConfig:
    """Where the time-ordered split cuts: both explicit cut-offs, or else the two fractions."""

    #: Share of rows (by time) in the validation set, used when ``valid_start`` is None.
    valid_frac: float = 0.2
    #: Share of rows (by time) in the later holdout, used when ``holdout_start`` is None.
    holdout_frac: float = 0.2
    #: First timestamp of the validation set (UTC); rows before it train.
    valid_start: pd.Timestamp | None = None
    #: First timestamp of the holdout (UTC); rows from it on are never trained or early-stopped on.
    holdout_start: pd.Timestamp | None = None

    def __post_init__(self) -> None:
        if self.valid_start is None or self.holdout_start is None:
            if not (0.0 < self.valid_frac < 1.0 and 0.0 <= self.holdout_frac < 1.0):
                raise ValueError("valid_frac must be in (0, 1) and holdout_frac in [0, 1)")
            if self.valid_frac + self.holdout_frac >= 1.0:
                raise ValueError("valid_frac + holdout_frac must leave rows to train on")


@dataclass(frozen=True)
class TimeSplit:
    """Row positions (into the original arrays) of each set, and the cut-off timestamps."""

    train_idx: np.ndarray
    valid_idx: np.ndarray
    holdout_idx: np.ndarray
    valid_start: pd.Timestamp
    holdout_start: pd.Timestamp

    def summary(self) -> dict[str, Any]:
        return {
            "train_rows": len(self.train_idx),
            "valid_rows": len(self.valid_idx),
            "holdout_rows": len(self.holdout_idx),
            "valid_start": self.valid_start.isoformat(),
            "holdout_start": self.holdout_start.isoformat(),
        }


@dataclass(frozen=True)
class LightGBMParams:
    """LightGBM hyper-parameters (sklearn API names)."""

    n_estimators: int = 500
    learning_rate: float = 0.05
    num_leaves: int = 31
    max_depth: int = -1
    min_child_samples: int = 50
    subsample: float = 0.8
    subsample_freq: int = 1
    colsample_bytree: float = 0.8
    reg_alpha: float = 0.0
    reg_lambda: float = 1.0
    #: Stop when validation average precision has not improved for this many rounds (0 = never).
    early_stopping_rounds: int = 50
    #: How the ~1% positive class is weighted: "scale_pos_weight" (negatives/positives, or the
    #: explicit ``scale_pos_weight``), "is_unbalance" (LightGBM's own), or "none".
    imbalance: Literal["scale_pos_weight", "is_unbalance", "none"] = "scale_pos_weight"
    scale_pos_weight: float | None = None
    num_threads: int = 2
    seed: int = 42

    def __post_init__(self) -> None:
        if self.n_estimators < 1 or self.learning_rate <= 0 or self.num_leaves < 2:
            raise ValueError("n_estimators >= 1, learning_rate > 0 and num_leaves >= 2 are required")


@dataclass(frozen=True)
class LogRegParams:
    """Baseline hyper-parameters."""

    C: float = 1.0
    max_iter: int = 1000
    seed: int = 42


@dataclass(frozen=True)
class TrainResult:
    """A fitted model plus everything needed to evaluate, package and document it."""

    model: Any = field(repr=False)
    family: str
    feature_names: tuple[str, ...]
    split: TimeSplit = field(repr=False)
    #: Flat, MLflow-loggable parameters (hyper-parameters, split, effective class weighting).
    params: dict[str, Any] = field(default_factory=dict)
    best_iteration: int | None = None

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        return predict_proba(self.model, X)


def _as_utc(event_time: Any) -> pd.Series:
    import pandas as pd

    ts = pd.to_datetime(pd.Series(event_time).reset_index(drop=True), utc=True)
    if ts.isna().any():
        raise ValueError("event_time has nulls; every row needs a timestamp for a time-ordered split")
    return ts


def time_split(event_time: pd.Series | np.ndarray, config: SplitConfig | None = None) -> TimeSplit:
    """Split rows by time into train < validation < holdout (positions into the input order)."""
    import numpy as np
    import pandas as pd

    cfg = config or SplitConfig()
    ts = _as_utc(event_time)
    n = len(ts)
    if n < 3:
        raise ValueError(f"need at least 3 rows to split, got {n}")
    ordered = ts.sort_values(kind="stable")
    if cfg.valid_start is not None and cfg.holdout_start is not None:
        valid_start = pd.Timestamp(cfg.valid_start)
        holdout_start = pd.Timestamp(cfg.holdout_start)
        valid_start = valid_start.tz_localize("UTC") if valid_start.tzinfo is None else valid_start
        holdout_start = holdout_start.tz_localize("UTC") if holdout_start.tzinfo is None else holdout_start
    else:
        # Cut-offs are the timestamps at the requested row quantiles; ties move to the later set.
        n_train = round(n * (1.0 - cfg.valid_frac - cfg.holdout_frac))
        n_valid = round(n * cfg.valid_frac)
        valid_start = ordered.iloc[min(max(n_train, 1), n - 1)]
        holdout_pos = min(n_train + n_valid, n)
        holdout_start = (
            ordered.iloc[holdout_pos] if holdout_pos < n else ordered.iloc[-1] + pd.Timedelta(microseconds=1)
        )
    if holdout_start < valid_start:
        raise ValueError(f"holdout_start {holdout_start} is before valid_start {valid_start}")
    # Compare as naive UTC datetime64 (tz-aware Series turn into object arrays in numpy).
    values = ts.dt.tz_convert(None).to_numpy()
    vs = valid_start.tz_convert("UTC").tz_localize(None).to_datetime64()
    hs = holdout_start.tz_convert("UTC").tz_localize(None).to_datetime64()
    train_idx = np.flatnonzero(values < vs)
    valid_idx = np.flatnonzero((values >= vs) & (values < hs))
    holdout_idx = np.flatnonzero(values >= hs)
    if len(train_idx) == 0 or len(valid_idx) == 0:
        raise ValueError(
            f"time split left an empty set: train={len(train_idx)} valid={len(valid_idx)} "
            f"(valid_start={valid_start}, holdout_start={holdout_start})"
        )
    return TimeSplit(train_idx, valid_idx, holdout_idx, valid_start, holdout_start)


def predict_proba(model: Any, X: pd.DataFrame | np.ndarray) -> np.ndarray:
    """Positive-class probability from a fitted model of either family, as float64."""
    import numpy as np

    return np.asarray(model.predict_proba(_as_matrix(X))[:, 1], dtype=np.float64)


def _as_matrix(X: pd.DataFrame | np.ndarray) -> np.ndarray:
    import numpy as np

    # Plain arrays everywhere (no column names), so native and ONNX models see the same input.
    return np.asarray(X, dtype=np.float64)


def _check_inputs(X: pd.DataFrame, y: Any, event_time: Any) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    Xm = _as_matrix(X)
    yv = np.asarray(y).astype(np.int64).ravel()
    if Xm.ndim != 2 or Xm.shape[0] != len(yv) or len(yv) != len(event_time):
        raise ValueError(
            f"X {Xm.shape}, y ({len(yv)},) and event_time ({len(event_time)},) must have the same rows"
        )
    if not set(np.unique(yv)) <= {0, 1}:
        raise ValueError("y must be 0/1")
    return Xm, yv


def train_model(
    X: pd.DataFrame,
    y: pd.Series | np.ndarray,
    event_time: pd.Series | np.ndarray,
    *,
    family: ModelFamily = "lightgbm",
    split: SplitConfig | TimeSplit | None = None,
    lightgbm_params: LightGBMParams | None = None,
    logreg_params: LogRegParams | None = None,
) -> TrainResult:
    """Fit ``family`` on the train set (early-stopping LightGBM on validation); holdout untouched.

    Pass a ``TimeSplit`` to train several families on exactly the same rows.
    """
    if family not in MODEL_FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {MODEL_FAMILIES}")
    Xm, yv = _check_inputs(X, y, event_time)
    ts = split if isinstance(split, TimeSplit) else time_split(event_time, split)
    names = tuple(str(c) for c in getattr(X, "columns", [f"f{i}" for i in range(Xm.shape[1])]))
    X_tr, y_tr = Xm[ts.train_idx], yv[ts.train_idx]
    X_va, y_va = Xm[ts.valid_idx], yv[ts.valid_idx]
    if y_tr.sum() == 0 or y_va.sum() == 0:
        raise ValueError(
            f"need positives in train and validation sets (got {int(y_tr.sum())}, {int(y_va.sum())})"
        )
    common = {"family": family, "n_features": len(names), **ts.summary()}
    if family == "lightgbm":
        return _train_lightgbm(X_tr, y_tr, X_va, y_va, lightgbm_params or LightGBMParams(), names, ts, common)
    return _train_logreg(X_tr, y_tr, logreg_params or LogRegParams(), names, ts, common)


def _imbalance(p: LightGBMParams, y_tr: np.ndarray) -> dict[str, Any]:
    if p.imbalance == "scale_pos_weight":
        spw = p.scale_pos_weight or float((y_tr == 0).sum()) / max(float(y_tr.sum()), 1.0)
        return {"scale_pos_weight": spw}
    if p.imbalance == "is_unbalance":
        return {"is_unbalance": True}
    return {}


def fit_lightgbm(
    X_tr: np.ndarray, y_tr: np.ndarray, X_va: np.ndarray, y_va: np.ndarray, p: LightGBMParams
) -> Any:
    """A fitted ``LGBMClassifier`` (early stopping on the validation rows' average precision)."""
    import lightgbm as lgb

    model = lgb.LGBMClassifier(
        objective="binary",
        # Early stopping watches validation AP, the metric that matters at ~1% positives.
        metric="average_precision",
        n_estimators=p.n_estimators,
        learning_rate=p.learning_rate,
        num_leaves=p.num_leaves,
        max_depth=p.max_depth,
        min_child_samples=p.min_child_samples,
        subsample=p.subsample,
        subsample_freq=p.subsample_freq,
        colsample_bytree=p.colsample_bytree,
        reg_alpha=p.reg_alpha,
        reg_lambda=p.reg_lambda,
        n_jobs=p.num_threads,
        random_state=p.seed,
        # Same data + seed + threads → same trees (LightGBM is otherwise free to vary).
        deterministic=True,
        force_col_wise=True,
        verbose=-1,
        **_imbalance(p, y_tr),
    )
    callbacks: list[Callable[..., Any]] = []
    if p.early_stopping_rounds > 0:
        callbacks.append(lgb.early_stopping(p.early_stopping_rounds, first_metric_only=True, verbose=False))
    model.fit(X_tr, y_tr, eval_X=(X_va,), eval_y=(y_va,), callbacks=callbacks)
    return model


def _train_lightgbm(
    X_tr: np.ndarray,
    y_tr: np.ndarray,
    X_va: np.ndarray,
    y_va: np.ndarray,
    p: LightGBMParams,
    names: tuple[str, ...],
    ts: TimeSplit,
    common: dict[str, Any],
) -> TrainResult:
    model = fit_lightgbm(X_tr, y_tr, X_va, y_va, p)
    imbalance = _imbalance(p, y_tr)
    best = int(model.best_iteration_) if model.best_iteration_ else p.n_estimators
    params = {**common, **{f"lgbm_{k}": v for k, v in asdict(p).items()}, **imbalance, "best_iteration": best}
    log.info("lightgbm trained: best_iteration=%s of %s", best, p.n_estimators)
    return TrainResult(model, "lightgbm", names, ts, params, best)


def _train_logreg(
    X_tr: np.ndarray,
    y_tr: np.ndarray,
    p: LogRegParams,
    names: tuple[str, ...],
    ts: TimeSplit,
    common: dict[str, Any],
) -> TrainResult:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    model = Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "logreg",
                LogisticRegression(C=p.C, class_weight="balanced", max_iter=p.max_iter, random_state=p.seed),
            ),
        ]
    )
    model.fit(X_tr, y_tr)
    params = {**common, **{f"logreg_{k}": v for k, v in asdict(p).items()}, "class_weight": "balanced"}
    return TrainResult(model, "logreg", names, ts, params, None)
