"""The control API behind ``POST /deploy`` and ``fraudops deploy``: alias moves, audited.

Why it reuses ``fraudops.registry.move_alias``: the DAGs move aliases with it too, so a deploy from
the API, the CLI or Airflow is the same pointer move with the same ``deployments`` audit row, and a
move is only ever visible together with its record. The service notices the move through its alias
watcher (woken immediately), exactly as it notices a move made by a DAG.

Modes: ``production`` → ``champion`` (action ``promote``); ``shadow`` → ``challenger-<version>``
unless an ``alias`` starting with ``challenger-`` is given (action ``shadow``); ``rollback`` →
``champion`` back to ``version``, or to the previous champion when no version is given.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fraudops.exceptions import PermanentError
from fraudops.serving.models import CHALLENGER_PREFIX, CHAMPION
from fraudops.serving.schema import RequestError

if TYPE_CHECKING:
    from fraudops.serving.service import ScoringService


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model_id: str = Field(alias="modelId", min_length=1)
    version: str | None = Field(default=None, pattern=r"^[0-9]+$")
    deployment_mode: Literal["shadow", "production", "rollback"] = Field(alias="deploymentMode")
    alias: str | None = Field(default=None, pattern=r"^challenger-[A-Za-z0-9_-]+$")
    reason: str | None = Field(default=None, max_length=500)
    actor: str | None = Field(default=None, max_length=200)


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def check_bearer(header: str | None, token: str) -> None:
    """401 without a bearer token, 403 with a wrong one (constant-time comparison)."""
    if not header or not header.startswith("Bearer ") or not header[7:].strip():
        raise AuthError(401, "missing bearer token")
    if not hmac.compare_digest(header[7:].strip().encode(), token.encode()):
        raise AuthError(403, "invalid token")


def parse_deploy_request(body: bytes | dict[str, Any]) -> DeployRequest:
    try:
        if isinstance(body, dict):
            return DeployRequest.model_validate(body)
        return DeployRequest.model_validate_json(body)
    except ValidationError as err:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "reason": str(e["msg"])}
            for e in err.errors(include_url=False, include_input=False)
        ]
        raise RequestError(422, errors) from err


def deploy(service: ScoringService, req: DeployRequest, *, actor: str = "control-api") -> dict[str, Any]:
    """Move the alias for ``req`` (audited) and wake the service's alias watcher."""
    from fraudops.registry import get_alias_version, move_alias

    if req.model_id != service.model_name:
        raise RequestError(
            422, [{"field": "modelId", "reason": f"this service serves {service.model_name!r}"}]
        )
    if service.warehouse is None:
        raise PermanentError("the control API needs the warehouse for the deployments audit")
    uri = service.tracking_uri
    mode = req.deployment_mode
    version = req.version
    if mode == "shadow":
        if version is None:
            raise RequestError(422, [{"field": "version", "reason": "required for a shadow deployment"}])
        alias, action = req.alias or f"{CHALLENGER_PREFIX}{version}", "shadow"
    elif mode == "production":
        if version is None:
            raise RequestError(422, [{"field": "version", "reason": "required for a production deployment"}])
        alias, action = CHAMPION, "promote"
    else:
        alias, action = CHAMPION, "rollback"
        if version is None:
            previous = service.manager.previous
            if previous is None:
                raise RequestError(
                    422, [{"field": "version", "reason": "no previous champion is loaded; name the version"}]
                )
            version = previous.version
    if get_alias_version(service.model_name, alias, tracking_uri=uri) != version:
        from mlflow.tracking import MlflowClient

        try:
            MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version(service.model_name, version)
        except Exception as err:
            raise RequestError(
                404, [{"field": "version", "reason": f"{service.model_name} has no version {version}"}]
            ) from err
    move = move_alias(
        service.warehouse,
        model_name=service.model_name,
        alias=alias,
        version=version,
        action=action,
        actor=req.actor or actor,
        reason=req.reason or f"{mode} via control API",
        tracking_uri=uri,
    )
    service.watcher.wake()
    return {
        "modelId": service.model_name,
        "alias": alias,
        "version": move.version,
        "previousVersion": move.previous_version,
        "deploymentMode": mode,
        "action": action,
        "moved": move.moved,
        "deploymentId": move.deployment_id,
    }
