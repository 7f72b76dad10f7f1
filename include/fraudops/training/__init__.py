"""Training domain functions for ``fraud_retrain``: validate → train → evaluate → package.

Plain typed functions on frames and paths, no Airflow: the DAG wraps them and passes only URIs,
versions and metric dicts between tasks. Heavy libraries (pandas, LightGBM, Great Expectations,
ONNX) are imported inside the functions, so importing this package at DAG-parse time is cheap.
Registration lives in ``fraudops.registry``.
"""

from __future__ import annotations

from fraudops.training.evaluate import (
    EvaluationResult,
    card_precision_at_k,
    compute_metrics,
    evaluate,
    recall_at_fpr,
    save_plots,
    threshold_at_fpr,
)
from fraudops.training.package import (
    ArtifactInfo,
    OnnxScorer,
    VerificationReport,
    build_artifact,
    load_scorer,
    onnx_parity,
    read_manifest,
    to_onnx,
    verify_artifact,
)
from fraudops.training.train import (
    LightGBMParams,
    LogRegParams,
    SplitConfig,
    TimeSplit,
    TrainResult,
    predict_proba,
    time_split,
    train_model,
)
from fraudops.training.validation import (
    ExpectationOutcome,
    ValidationConfig,
    ValidationResult,
    validate_extract,
    validate_or_raise,
)

__all__ = [
    "ArtifactInfo",
    "EvaluationResult",
    "ExpectationOutcome",
    "LightGBMParams",
    "LogRegParams",
    "OnnxScorer",
    "SplitConfig",
    "TimeSplit",
    "TrainResult",
    "ValidationConfig",
    "ValidationResult",
    "VerificationReport",
    "build_artifact",
    "card_precision_at_k",
    "compute_metrics",
    "evaluate",
    "load_scorer",
    "onnx_parity",
    "predict_proba",
    "read_manifest",
    "recall_at_fpr",
    "save_plots",
    "threshold_at_fpr",
    "time_split",
    "to_onnx",
    "train_model",
    "validate_extract",
    "validate_or_raise",
    "verify_artifact",
]
