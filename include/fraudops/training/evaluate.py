"""Holdout evaluation in the terms fraud teams decide on, plus the two plots reviewers look at.

ROC AUC alone says little at ~1% positives; the numbers here are the ones a promotion gate and a
fraud analyst use:

* average precision (area under the PR curve);
* recall at fixed false-positive rates (0.1%, 0.5%, 1%): how much fraud is caught when only that
  share of genuine customers may be bothered;
* card precision@k per day: analysts review about ``k`` cards a day, so of the ``k`` cards with the
  highest score each day, which share were really compromised (averaged over days);
* at the decision threshold: fraud capture rate, false-positive rate, money caught and money
  falsely declined (the business trade-off);
* at the alert budget (the share of events analysts and customers can absorb, the same operating
  point the release gate compares models at): capture, precision and money caught when the top
  ``alert_budget`` of events are flagged, and card precision@k per day with ``k`` = the budget's
  share of the day's cards, cards already known compromised (a fraud on an earlier day) removed;
* calibration: the Brier score, and a reliability plot;
* feature importance (``feature_importance``): LightGBM's gain, or the baseline's standardised
  coefficients.

Metric keys are stable strings (``recall_at_fpr_0.001`` ...) and every value is a float, so the
dict goes to XCom, MLflow and ``metrics.json`` unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_FPR_TARGETS: tuple[float, ...] = (0.001, 0.005, 0.01)
#: The release gate's default alert budget (``GatePolicy.alert_budget``): 1 % of events flagged.
DEFAULT_ALERT_BUDGET = 0.01


@dataclass(frozen=True)
class EvaluationResult:
    metrics: dict[str, float]
    #: Plot name → PNG path (empty when no plot directory was given).
    plots: dict[str, Path] = field(default_factory=dict)


def recall_at_fpr(y_true: np.ndarray, scores: np.ndarray, max_fpr: float) -> float:
    """Highest recall reachable while the false-positive rate stays <= ``max_fpr``."""
    import numpy as np
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y_true, scores)
    ok = fpr <= max_fpr
    return float(np.max(tpr[ok])) if ok.any() else 0.0


def threshold_at_fpr(y_true: np.ndarray, scores: np.ndarray, max_fpr: float) -> float:
    """Lowest score threshold whose false-positive rate is <= ``max_fpr`` (pick it on validation)."""
    import numpy as np
    from sklearn.metrics import roc_curve

    fpr, _, thresholds = roc_curve(y_true, scores)
    ok = np.flatnonzero(fpr <= max_fpr)
    # roc_curve's first threshold is +inf (nothing flagged); clip to a usable probability.
    return float(min(thresholds[ok[-1]], 1.0))


def card_precision_at_k(
    y_true: np.ndarray,
    scores: np.ndarray,
    card_id: np.ndarray | pd.Series,
    event_time: pd.Series | np.ndarray,
    k: int = 100,
    *,
    exclude_known: bool = False,
) -> float:
    """Mean over UTC days of: share of the day's top-k cards (by max score) that had a fraud that day.

    A day with fewer than ``k`` cards is scored on the cards it has, so a quiet day is not
    penalised for cards that did not exist. ``exclude_known`` removes from each day the cards that
    had a fraud on an earlier day (already known compromised, blocked: flagging them again costs an
    analyst nothing and catches nothing new).
    """
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(
        {
            "day": pd.to_datetime(pd.Series(event_time).reset_index(drop=True), utc=True).dt.floor("D"),
            "card": np.asarray(card_id),
            "score": np.asarray(scores, dtype=np.float64),
            "fraud": np.asarray(y_true).astype(bool),
        }
    )
    per_card = frame.groupby(["day", "card"], sort=False).agg(score=("score", "max"), fraud=("fraud", "max"))
    precisions = []
    known: set[object] = set()
    for _, day in per_card.groupby(level="day", sort=True):
        if exclude_known and known:
            day = day.loc[~day.index.get_level_values("card").isin(known)]
        if len(day):
            top = day.nlargest(min(k, len(day)), "score")
            precisions.append(float(top["fraud"].mean()))
        known.update(day.index.get_level_values("card")[day["fraud"].to_numpy()])
    return float(np.mean(precisions)) if precisions else 0.0


def budget_metrics(
    y: np.ndarray,
    s: np.ndarray,
    amt: np.ndarray,
    card_id: np.ndarray | pd.Series,
    event_time: Any,
    budget: float,
) -> dict[str, float]:
    """The operating point at an alert budget: the top ``budget`` share of events flagged (ties at
    the boundary flagged too, so ``alert_rate_at_budget`` may exceed the budget)."""
    import numpy as np
    import pandas as pd

    if not 0.0 < budget < 1.0:
        raise ValueError(f"alert_budget must be in (0, 1), got {budget}")
    n_alert = max(1, int(np.ceil(budget * len(s))))
    threshold = float(np.sort(s)[::-1][n_alert - 1])
    flagged = s >= threshold
    fraud = y == 1
    money = float(amt[fraud].sum())
    days = pd.to_datetime(pd.Series(event_time).reset_index(drop=True), utc=True).dt.floor("D")
    cards_per_day = pd.DataFrame({"day": days, "card": np.asarray(card_id)}).groupby("day")["card"].nunique()
    k = max(1, round(budget * float(cards_per_day.mean())))
    return {
        "alert_budget": float(budget),
        "alert_rate_at_budget": float(flagged.mean()),
        "capture_at_budget": float(flagged[fraud].mean()),
        "precision_at_budget": float(fraud[flagged].mean()),
        "money_capture_at_budget": float(amt[fraud & flagged].sum() / money) if money > 0 else 0.0,
        "card_k_at_budget": float(k),
        "card_precision_at_budget": card_precision_at_k(y, s, card_id, event_time, k, exclude_known=True),
    }


def compute_metrics(
    y_true: np.ndarray | pd.Series,
    scores: np.ndarray,
    *,
    amount: np.ndarray | pd.Series,
    card_id: np.ndarray | pd.Series,
    event_time: pd.Series | np.ndarray,
    threshold: float = 0.5,
    k: int = 100,
    fpr_targets: tuple[float, ...] = DEFAULT_FPR_TARGETS,
    alert_budget: float = DEFAULT_ALERT_BUDGET,
) -> dict[str, float]:
    """All holdout metrics as ``{name: float}``."""
    import numpy as np
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    y = np.asarray(y_true).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    amt = np.asarray(amount, dtype=np.float64).ravel()
    if not len(y) == len(s) == len(amt) == len(card_id) == len(event_time):
        raise ValueError("y_true, scores, amount, card_id and event_time must have the same length")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"holdout needs both classes (positives={n_pos}, negatives={n_neg})")

    flagged = s >= threshold
    fraud, genuine = y == 1, y == 0
    money_fraud = float(amt[fraud].sum())
    metrics: dict[str, float] = {
        "roc_auc": float(roc_auc_score(y, s)),
        "average_precision": float(average_precision_score(y, s)),
        "brier_score": float(brier_score_loss(y, np.clip(s, 0.0, 1.0))),
    }
    for target in fpr_targets:
        metrics[f"recall_at_fpr_{target:g}"] = recall_at_fpr(y, s, target)
    metrics[f"card_precision_at_{k}"] = card_precision_at_k(y, s, card_id, event_time, k)
    metrics.update(
        {
            "threshold": float(threshold),
            "fraud_capture_rate": float(flagged[fraud].mean()),
            "false_positive_rate": float(flagged[genuine].mean()),
            "money_caught": float(amt[fraud & flagged].sum()),
            "money_falsely_declined": float(amt[genuine & flagged].sum()),
            "money_fraud_total": money_fraud,
            "money_capture_rate": float(amt[fraud & flagged].sum() / money_fraud) if money_fraud > 0 else 0.0,
            "n_rows": float(len(y)),
            "n_positives": float(n_pos),
            "fraud_rate": float(n_pos / len(y)),
        }
    )
    metrics.update(budget_metrics(y, s, amt, card_id, event_time, alert_budget))
    return metrics


def save_plots(
    y_true: np.ndarray | pd.Series,
    scores: np.ndarray,
    out_dir: str | Path,
    *,
    title: str = "",
) -> dict[str, Path]:
    """PR curve and score distribution (fraud vs genuine) as PNG files in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers; set before pyplot is imported
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.metrics import average_precision_score, precision_recall_curve

    y = np.asarray(y_true).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    precision, recall, _ = precision_recall_curve(y, s)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(recall, precision, lw=1.5, label=f"AP = {average_precision_score(y, s):.3f}")
    ax.axhline(y.mean(), color="grey", ls="--", lw=1, label=f"base rate = {y.mean():.4f}")
    ax.set(
        xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=f"PR curve {title}".strip()
    )
    ax.legend(loc="upper right")
    fig.tight_layout()
    paths["pr_curve"] = out / "pr_curve.png"
    fig.savefig(paths["pr_curve"], dpi=100)
    plt.close(fig)

    from sklearn.calibration import calibration_curve

    observed, predicted = calibration_curve(y, np.clip(s, 0.0, 1.0), n_bins=10, strategy="quantile")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfectly calibrated")
    ax.plot(predicted, observed, marker="o", lw=1.5, label="model (score deciles)")
    ax.set(xlabel="mean score", ylabel="observed fraud rate", title=f"Reliability {title}".strip())
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    paths["reliability"] = out / "reliability.png"
    fig.savefig(paths["reliability"], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    bins = [i / 50 for i in range(51)]
    ax.hist(s[y == 0], bins=bins, alpha=0.6, density=True, label="genuine")
    ax.hist(s[y == 1], bins=bins, alpha=0.6, density=True, label="fraud")
    ax.set_yscale("log")
    ax.set(xlabel="score", ylabel="density (log)", title=f"Score distribution {title}".strip())
    ax.legend(loc="upper center")
    fig.tight_layout()
    paths["score_distribution"] = out / "score_distribution.png"
    fig.savefig(paths["score_distribution"], dpi=100)
    plt.close(fig)
    return paths


def evaluate(
    y_true: np.ndarray | pd.Series,
    scores: np.ndarray,
    *,
    amount: np.ndarray | pd.Series,
    card_id: np.ndarray | pd.Series,
    event_time: pd.Series | np.ndarray,
    threshold: float = 0.5,
    k: int = 100,
    fpr_targets: tuple[float, ...] = DEFAULT_FPR_TARGETS,
    alert_budget: float = DEFAULT_ALERT_BUDGET,
    plots_dir: str | Path | None = None,
    title: str = "",
) -> EvaluationResult:
    """Metrics on the holdout, and the plots when ``plots_dir`` is given."""
    metrics = compute_metrics(
        y_true,
        scores,
        amount=amount,
        card_id=card_id,
        event_time=event_time,
        threshold=threshold,
        k=k,
        fpr_targets=fpr_targets,
        alert_budget=alert_budget,
    )
    plots = save_plots(y_true, scores, plots_dir, title=title) if plots_dir is not None else {}
    log.info("holdout: auc=%.4f ap=%.4f", metrics["roc_auc"], metrics["average_precision"])
    return EvaluationResult(metrics, plots)


def feature_importance(model: Any, names: list[str]) -> dict[str, float]:
    """Share of importance per feature, largest first: LightGBM's total gain, or for the baseline
    pipeline the absolute coefficients of its standardised features (both normalised to sum 1)."""
    import numpy as np

    booster = getattr(model, "booster_", model)  # the sklearn wrapper, or a (persisted) Booster
    if hasattr(booster, "feature_importance"):
        raw = np.asarray(booster.feature_importance(importance_type="gain"), dtype=np.float64)
    elif hasattr(model, "named_steps"):
        raw = np.abs(np.asarray(model.named_steps["logreg"].coef_, dtype=np.float64).ravel())
    else:
        raise TypeError(f"no feature importance for {type(model).__name__}")
    if len(raw) != len(names):
        raise ValueError(f"{len(raw)} importances for {len(names)} feature names")
    total = float(raw.sum())
    shares = raw / total if total > 0 else raw
    order = np.argsort(-shares, kind="stable")
    return {names[i]: round(float(shares[i]), 6) for i in order}
