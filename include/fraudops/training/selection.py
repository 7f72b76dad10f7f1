"""Time-aware model selection: forward-chaining folds separated by the label delay, and an Optuna
search over LightGBM's hyper-parameters inside a wall-clock budget.

A random split lets a model learn this week's fraud from rows that sit between the rows it is
validated on, so its validation score says little about the week after training. Forward chaining
trains on the past and validates on a later block only, with a gap between them: when a model is
trained, the labels of the last days are not known yet, so the rows it can learn from end a label
delay before the traffic it will score. Every fold here has that gap.

The search (Optuna's TPE sampler, seeded) starts from the configured parameters (trial 0), so it
can only pick something that scored better on the same folds; its objective is the mean average
precision over the folds. Class imbalance is one of the searched choices (weighting positives by
the class ratio, or not), so the folds decide it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from fraudops.training.train import LightGBMParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fold:
    """Rows to train on (before ``train_end``) and to validate on ([valid_start, valid_end])."""

    train_idx: np.ndarray = field(repr=False)
    valid_idx: np.ndarray = field(repr=False)
    train_end: str
    valid_start: str
    valid_end: str

    def summary(self) -> dict[str, Any]:
        return {
            "train_rows": len(self.train_idx),
            "valid_rows": len(self.valid_idx),
            "train_end": self.train_end,
            "valid_start": self.valid_start,
            "valid_end": self.valid_end,
        }


def forward_folds(
    event_time: pd.Series | np.ndarray,
    y: np.ndarray,
    *,
    n_folds: int = 3,
    gap_days: float = 7.0,
    valid_frac: float = 0.15,
) -> list[Fold]:
    """``n_folds`` consecutive validation blocks at the end of the span (each ``valid_frac`` of it),
    each trained on every row more than ``gap_days`` before its block starts. A fold without a
    fraud in its training rows or its block is left out; none left raises ``ValueError``."""
    import numpy as np
    import pandas as pd

    if n_folds < 1 or not 0 < valid_frac < 1 or gap_days < 0:
        raise ValueError("n_folds >= 1, 0 < valid_frac < 1 and gap_days >= 0 are required")
    t = pd.Series(pd.to_datetime(pd.Series(event_time).reset_index(drop=True), utc=True))
    yv = np.asarray(y).astype(bool)
    start, end = t.min(), t.max()
    block = (end - start) * valid_frac
    gap = pd.Timedelta(days=gap_days)
    folds = []
    for i in range(n_folds):
        valid_end = end - block * (n_folds - 1 - i)
        valid_start = valid_end - block
        train_end = valid_start - gap
        last = i == n_folds - 1
        train = (t < train_end).to_numpy()
        valid = ((t >= valid_start) & ((t <= valid_end) if last else (t < valid_end))).to_numpy()
        if yv[train].sum() == 0 or yv[valid].sum() == 0:
            continue
        folds.append(
            Fold(
                np.flatnonzero(train),
                np.flatnonzero(valid),
                train_end.isoformat(),
                valid_start.isoformat(),
                valid_end.isoformat(),
            )
        )
    if not folds:
        raise ValueError(
            f"no forward fold has frauds on both sides (span {end - start}, gap {gap_days:g} days, "
            f"{n_folds} blocks of {valid_frac:.0%}): widen the window or shorten the gap"
        )
    return folds


@dataclass(frozen=True)
class SearchResult:
    """What the search found: the parameters to train with and the evidence for them."""

    params: LightGBMParams
    #: Mean average precision over the folds of the chosen parameters, and of the configured ones.
    best_score: float
    default_score: float
    #: Average precision of the chosen parameters on each fold, in time order.
    fold_scores: tuple[float, ...]
    n_trials: int
    seconds: float
    gap_days: float
    folds: tuple[dict[str, Any], ...]
    #: The searched values of the chosen trial.
    chosen: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["params"] = asdict(self.params)
        return out

    def flat(self) -> dict[str, float | int | str]:
        """MLflow-loggable parameters of the search."""
        return {
            "search_best_ap": round(self.best_score, 6),
            "search_default_ap": round(self.default_score, 6),
            "search_fold_ap": ",".join(f"{s:.4f}" for s in self.fold_scores),
            "search_trials": self.n_trials,
            "search_seconds": round(self.seconds, 1),
            "search_gap_days": self.gap_days,
            **{f"search_{k}": v for k, v in self.chosen.items()},
        }


def _fold_scores(X: np.ndarray, y: np.ndarray, folds: list[Fold], params: LightGBMParams) -> list[float]:
    import numpy as np
    from sklearn.metrics import average_precision_score

    from fraudops.training.train import fit_lightgbm

    scores = []
    for fold in folds:
        model = fit_lightgbm(
            X[fold.train_idx], y[fold.train_idx], X[fold.valid_idx], y[fold.valid_idx], params
        )
        s = model.predict_proba(X[fold.valid_idx])[:, 1]
        scores.append(float(average_precision_score(y[fold.valid_idx], s)))
    return [float(v) for v in np.asarray(scores)]


def search_lightgbm(
    X: pd.DataFrame | np.ndarray,
    y: np.ndarray,
    event_time: pd.Series | np.ndarray,
    base: LightGBMParams,
    *,
    budget_s: float,
    gap_days: float = 7.0,
    n_folds: int = 3,
    max_trials: int = 200,
    seed: int = 42,
) -> SearchResult:
    """Search LightGBM's parameters on forward folds for at most ``budget_s`` seconds (a trial that
    started in time finishes; at least the configured parameters are scored)."""
    import numpy as np
    import optuna

    if budget_s <= 0:
        raise ValueError(f"budget_s must be > 0, got {budget_s}")
    Xm = np.asarray(X, dtype=np.float64)
    yv = np.asarray(y).astype(np.int64)
    folds = forward_folds(event_time, yv, n_folds=n_folds, gap_days=gap_days)
    t0 = time.monotonic()
    per_trial: dict[int, list[float]] = {}

    def candidate(trial: optuna.Trial | optuna.trial.FixedTrial) -> LightGBMParams:
        weighted = trial.suggest_categorical("imbalance", ["scale_pos_weight", "none"]) != "none"
        return replace(
            base,
            imbalance="scale_pos_weight" if weighted else "none",
            num_leaves=trial.suggest_int("num_leaves", 4, 128, log=True),
            learning_rate=trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            min_child_samples=trial.suggest_int("min_child_samples", 5, 500, log=True),
            colsample_bytree=trial.suggest_float("colsample_bytree", 0.4, 1.0),
            reg_lambda=trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
        )

    def objective(trial: optuna.Trial) -> float:
        scores = _fold_scores(Xm, yv, folds, candidate(trial))
        per_trial[trial.number] = scores
        return float(np.mean(scores))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    configured = {
        "num_leaves": min(max(base.num_leaves, 4), 128),
        "learning_rate": min(max(base.learning_rate, 0.01), 0.3),
        "min_child_samples": min(max(base.min_child_samples, 5), 500),
        "colsample_bytree": min(max(base.colsample_bytree, 0.4), 1.0),
        "reg_lambda": min(max(base.reg_lambda, 1e-3), 10.0),
        "imbalance": base.imbalance if base.imbalance in ("scale_pos_weight", "none") else "scale_pos_weight",
    }
    study.enqueue_trial(configured)
    study.optimize(objective, n_trials=max_trials, timeout=budget_s, gc_after_trial=True)
    best = study.best_trial
    chosen = candidate(optuna.trial.FixedTrial(best.params))
    result = SearchResult(
        params=chosen,
        best_score=float(best.value if best.value is not None else float("nan")),
        default_score=float(np.mean(per_trial[0])),
        fold_scores=tuple(per_trial[best.number]),
        n_trials=len(study.trials),
        seconds=time.monotonic() - t0,
        gap_days=gap_days,
        folds=tuple(f.summary() for f in folds),
        chosen=dict(best.params),
    )
    log.info(
        "search: %d trials in %.0f s, fold AP %.4f (configured %.4f) with %s",
        result.n_trials,
        result.seconds,
        result.best_score,
        result.default_score,
        result.chosen,
    )
    return result


@dataclass(frozen=True)
class FeatureSetChoice:
    """Which of several feature sets the folds preferred, and the evidence."""

    chosen: str
    #: Mean average precision over the folds, per feature set.
    mean_ap: dict[str, float]
    #: Average precision per fold (time order), per feature set.
    fold_ap: dict[str, tuple[float, ...]]
    gap_days: float
    folds: tuple[dict[str, Any], ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_feature_sets(
    X: pd.DataFrame,
    y: np.ndarray,
    event_time: pd.Series | np.ndarray,
    sets: dict[str, list[str]],
    base: LightGBMParams,
    *,
    prefer: str,
    gap_days: float = 7.0,
    n_folds: int = 3,
    tolerance: float = 0.0,
) -> FeatureSetChoice:
    """Score LightGBM with ``base`` on the same forward folds for each named set of ``X``'s columns
    and pick the best mean average precision; ``prefer`` wins unless another set beats it by more
    than ``tolerance``. Raises ``ValueError`` when no fold has frauds on both sides."""
    import numpy as np

    if prefer not in sets:
        raise ValueError(f"prefer={prefer!r} is not one of the sets {sorted(sets)}")
    yv = np.asarray(y).astype(np.int64)
    folds = forward_folds(event_time, yv, n_folds=n_folds, gap_days=gap_days)
    t0 = time.monotonic()
    fold_ap: dict[str, tuple[float, ...]] = {}
    for name, columns in sets.items():
        Xm = np.asarray(X[columns], dtype=np.float64)
        fold_ap[name] = tuple(_fold_scores(Xm, yv, folds, base))
    mean_ap = {name: float(np.mean(scores)) for name, scores in fold_ap.items()}
    best = max(mean_ap, key=lambda k: mean_ap[k])
    chosen = best if mean_ap[best] > mean_ap[prefer] + tolerance else prefer
    result = FeatureSetChoice(
        chosen=chosen,
        mean_ap=mean_ap,
        fold_ap=fold_ap,
        gap_days=gap_days,
        folds=tuple(f.summary() for f in folds),
        seconds=time.monotonic() - t0,
    )
    log.info("feature sets on %d forward folds: %s -> %s", len(folds), mean_ap, chosen)
    return result
