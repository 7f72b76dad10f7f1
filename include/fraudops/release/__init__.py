"""Release gates: the domain logic behind shadow promotion and post-promotion probation.

Plain functions, no Airflow: the ``fraud_release`` DAG and the CLI call the same code. Kept light
on purpose (DAG files import from here at parse time): names are re-exported lazily, so importing
the package pulls in neither pandas nor scikit-learn nor Evidently.

* :mod:`.policy` — ``GatePolicy``, the one frozen, versioned set of thresholds;
* :mod:`.evidence` — parameterised warehouse reads of paired production/shadow scores and labels;
* :mod:`.checks` — operational checks as data (``CheckResult``): errors, latency, parity, drift;
* :mod:`.gates` — quality checks and decisions (promote/reject/wait, confirm/rollback/wait);
* :mod:`.recording` — ``gate_decisions`` rows, idempotent per DAG run;
* :mod:`.drift` — Evidently feature and score drift, as plain data.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "GatePolicy": "policy",
    "DEFAULT_POLICY": "policy",
    "SampleRequirement": "policy",
    "required_sample": "policy",
    "ShadowEvidence": "evidence",
    "collect_shadow_evidence": "evidence",
    "collect_production_window": "evidence",
    "CheckResult": "checks",
    "GateDecision": "gates",
    "decide_promotion": "gates",
    "decide_probation": "gates",
    "decision_row": "recording",
    "record_decision": "recording",
    "ColumnDrift": "drift",
    "DriftResult": "drift",
    "feature_drift": "drift",
    "score_drift": "drift",
    "shadow_drift": "drift",
    "drift_rows": "drift",
    "record_drift": "drift",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
