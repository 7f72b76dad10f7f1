"""What the model console records and lists: one ``console_actions`` row per action (its actor,
role, target and outcome), and the uploaded model versions in the registry."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fraudops.warehouse import Warehouse


def record_action(
    warehouse: Warehouse,
    *,
    actor: str,
    role: str | None,
    action: str,
    target: str | None,
    outcome: str,
    detail: dict[str, Any] | None = None,
    action_id: str | None = None,
) -> str:
    """Write one audit row (keyed: writing the same ``action_id`` again changes nothing)."""
    action_id = action_id or uuid.uuid4().hex
    warehouse.upsert(
        "console_actions",
        [
            {
                "action_id": action_id,
                "actor": actor,
                "role": role,
                "action": action,
                "target": target,
                "outcome": outcome,
                "detail": json.dumps(detail or {}, default=str)[:100_000],
                "acted_at": dt.datetime.now(dt.UTC),
            }
        ],
    )
    return action_id


def recent_actions(warehouse: Warehouse, limit: int = 50) -> list[dict[str, Any]]:
    return warehouse.query(
        f"SELECT action_id, actor, role, action, target, outcome, detail, acted_at "
        f"FROM `{warehouse.table_id('console_actions')}` ORDER BY acted_at DESC LIMIT {int(limit)}"
    )


def list_uploads(tracking_uri: str, model_name: str, limit: int = 50) -> list[dict[str, Any]]:
    """Versions of ``model_name`` that came through intake, newest first, with their aliases."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        versions = client.search_model_versions(f"name = '{model_name}' and tag.source = 'upload'")
    except mlflow.exceptions.MlflowException:
        return []
    out = [
        {
            "version": str(mv.version),
            "author": mv.tags.get("author", ""),
            "format": mv.tags.get("upload_format", ""),
            "feature_set": mv.tags.get("feature_set", ""),
            "ap": mv.tags.get("ap"),
            "aliases": list(mv.aliases or []),
            "created": dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC).isoformat(
                timespec="seconds"
            ),
            "description": mv.tags.get("description", ""),
        }
        for mv in versions
    ]
    out.sort(key=lambda r: int(str(r["version"])), reverse=True)
    return out[:limit]
