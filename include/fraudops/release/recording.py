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


def withdrawal_id(decision_id: str) -> str:
    """The id of the reject that overrules decision ``decision_id`` after it was recorded (its
    champion stopped serving before the promotion): deterministic, so a retry records it once."""
    return hashlib.sha256(f"withdrawn|{decision_id}".encode()).hexdigest()[:32]


def decision_row(
    decision: GateDecision,
    *,
    model_name: str,
    challenger_version: str | None,
    champion_version: str | None,
    dag_run_id: str | None = None,
    decision_id: str | None = None,
) -> dict[str, Any]:
    """A ``gate_decisions`` row. The id is derived from the run when given, so a retried task
    records the same decision once (upsert by key); the evidence column is the JSON decision.
    ``decision_id`` sets the id instead (e.g. :func:`withdrawal_id`)."""
    if not decision_id and dag_run_id:
        basis = f"{decision.stage}|{model_name}|{challenger_version}|{champion_version}|{dag_run_id}"
        decision_id = hashlib.sha256(basis.encode()).hexdigest()[:32]
    elif not decision_id:
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
    decision_id: str | None = None,
) -> dict[str, Any]:
    """Store the decision (idempotent per run, or per ``decision_id``); returns the row written."""
    row = decision_row(
        decision,
        model_name=model_name,
        challenger_version=challenger_version,
        champion_version=champion_version,
        dag_run_id=dag_run_id,
        decision_id=decision_id,
    )
    warehouse.upsert("gate_decisions", [row])
    return row
