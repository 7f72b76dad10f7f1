"""Recording gate decisions: one ``gate_decisions`` row per decision, idempotent per DAG run."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fraudops.release.gates import GateDecision
    from fraudops.warehouse import Warehouse


def decision_row(
    decision: GateDecision,
    *,
    model_name: str,
    challenger_version: str | None,
    champion_version: str | None,
    dag_run_id: str | None = None,
) -> dict[str, Any]:
    """A ``gate_decisions`` row. The id is derived from the run when given, so a retried task
    records the same decision once (upsert by key); the evidence column is the JSON decision."""
    if dag_run_id:
        basis = f"{decision.stage}|{model_name}|{challenger_version}|{champion_version}|{dag_run_id}"
        decision_id = hashlib.sha256(basis.encode()).hexdigest()[:32]
    else:
        decision_id = uuid.uuid4().hex
    doc = decision.to_dict()
    evidence = {
        "checks": doc["checks"],
        "deciding_check": decision.deciding_check,
        "policy_fingerprint": decision.policy_fingerprint,
        "evidence": doc["evidence"],
    }
    return {
        "decision_id": decision_id,
        "model_name": model_name,
        "challenger_version": challenger_version,
        "champion_version": champion_version,
        "stage": decision.stage,
        "policy_version": decision.policy_version,
        "status": decision.status,
        "reason": decision.reason,
        "evidence": json.dumps(evidence, sort_keys=True, default=str, allow_nan=False),
        "dag_run_id": dag_run_id,
        "decided_at": dt.datetime.fromisoformat(decision.decided_at),
    }


def record_decision(
    warehouse: Warehouse,
    decision: GateDecision,
    *,
    model_name: str,
    challenger_version: str | None,
    champion_version: str | None,
    dag_run_id: str | None = None,
) -> dict[str, Any]:
    """Store the decision (idempotent per run); returns the row written."""
    row = decision_row(
        decision,
        model_name=model_name,
        challenger_version=challenger_version,
        champion_version=champion_version,
        dag_run_id=dag_run_id,
    )
    warehouse.upsert("gate_decisions", [row])
    return row
