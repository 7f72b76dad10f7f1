"""The control API behind ``POST /deploy`` and ``fraudops deploy``: alias moves, audited.

Why it reuses ``fraudops.registry.move_alias``: the DAGs move aliases with it too, so a deploy from
the API, the CLI or Airflow is the same pointer move with the same ``deployments`` audit row, and a
move is only ever visible together with its record. The service notices the move through its alias
watcher (woken immediately), exactly as it notices a move made by a DAG.

Modes: ``production`` → ``champion`` (action ``promote``); ``shadow`` → ``challenger-<version>``
unless an ``alias`` starting with ``challenger-`` is given (action ``shadow``); ``rollback`` →
``champion`` back to ``version``, or to the previous champion when no version is given;
``sample_rate`` → the share of live traffic mirrored to a challenger in shadow (``sampleRate``,
within the shadow pool's limits; the alias does not move; action ``sample_rate``, needs the
``shadow`` scope).

Who may do what: bearer tokens with scopes. ``FRAUDOPS_DEPLOY_TOKEN`` (or the one generated
locally) is the operator's token: every mode, and it may name the actor it acts for (the console
passes ``console:<user>`` after checking that user's role itself). ``FRAUDOPS_DEPLOY_TOKENS`` adds
scoped tokens, a JSON object ``{"<actor>": {"token": "...", "scopes": ["shadow", ...]}}`` with
scopes ``shadow``, ``production``, ``rollback``: a data scientist's or a CI job's token that may put
challengers in shadow and nothing else gets 403 on a promotion, and its audit rows name its actor
(``token:<actor>``), whatever the body says.

Why a rollback does not need MLflow: it is the emergency action, and the registry may be what is
down. The service already holds the previous champion (loaded) and older ones (bundle cache), so it
swaps locally, records the intent, and the alias catches up when the registry is back.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fraudops.exceptions import ConfigError, PermanentError
from fraudops.serving.models import CHAMPION
from fraudops.serving.registry_faults import RegistryUnavailable, unavailable_reason
from fraudops.serving.schema import RequestError
from fraudops.vocabulary import Action, DeploymentState, challenger_alias

if TYPE_CHECKING:
    from fraudops.serving.service import ScoringService


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model_id: str = Field(alias="modelId", min_length=1)
    version: str | None = Field(default=None, pattern=r"^[0-9]+$")
    deployment_mode: Literal["shadow", "production", "rollback", "sample_rate"] = Field(
        alias="deploymentMode"
    )
    alias: str | None = Field(default=None, pattern=r"^challenger-[A-Za-z0-9_-]+$")
    #: ``sample_rate`` mode: the challenger's new share of live traffic.
    sample_rate: float | None = Field(default=None, alias="sampleRate", gt=0.0, le=1.0)
    reason: str | None = Field(default=None, max_length=500)
    actor: str | None = Field(default=None, max_length=200)


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


#: What a token may do: the ``deploymentMode`` values it may send.
SCOPES: tuple[str, ...] = ("shadow", "production", "rollback")
#: Modes a scope covers besides its own name: whoever may put challengers in shadow may size
#: their sample.
_SCOPE_OF_MODE: dict[str, str] = {"sample_rate": "shadow"}


@dataclass(frozen=True)
class Grant:
    """One bearer token and what it may do. ``operator``: every scope, and it may name the actor
    it acts for in the request body (the console, ``fraudops deploy``)."""

    actor: str
    scopes: frozenset[str]
    token: str = field(repr=False)
    operator: bool = False

    def who(self, requested: str | None) -> str:
        """The actor the audit row names."""
        if self.operator:
            return requested or "control-api"
        return f"token:{self.actor}"


def parse_grants(operator_token: str | None, scoped: str = "") -> tuple[Grant, ...]:
    """The operator's token (all scopes) and the scoped tokens of ``FRAUDOPS_DEPLOY_TOKENS``;
    a malformed setting raises ``ConfigError`` naming the problem (the service then refuses to
    start instead of running with a control API nobody meant)."""
    grants = [Grant("operator", frozenset(SCOPES), operator_token, operator=True)] if operator_token else []
    if scoped.strip():
        try:
            doc = json.loads(scoped)
        except ValueError as err:
            raise ConfigError(f"FRAUDOPS_DEPLOY_TOKENS is not JSON: {err}") from err
        if not isinstance(doc, dict):
            raise ConfigError('FRAUDOPS_DEPLOY_TOKENS must be {"<actor>": {"token": ..., "scopes": [...]}}')
        for actor, spec in doc.items():
            token = spec.get("token") if isinstance(spec, dict) else None
            scopes = spec.get("scopes") if isinstance(spec, dict) else None
            if not isinstance(token, str) or len(token) < 16:
                raise ConfigError(f"FRAUDOPS_DEPLOY_TOKENS: {actor!r} needs a token of 16 characters or more")
            if not isinstance(scopes, list) or not scopes or not set(scopes) <= set(SCOPES):
                raise ConfigError(
                    f"FRAUDOPS_DEPLOY_TOKENS: {actor!r} needs scopes, a non-empty list of {', '.join(SCOPES)}"
                )
            grants.append(Grant(str(actor), frozenset(scopes), token))
    tokens = [g.token for g in grants]
    if len(set(tokens)) != len(tokens):
        raise ConfigError(
            "FRAUDOPS_DEPLOY_TOKENS: two actors share a token (the audit could not tell them apart)"
        )
    return tuple(grants)


def authenticate(header: str | None, grants: tuple[Grant, ...]) -> Grant:
    """The grant whose token the header carries: 401 without a bearer token, 403 with an unknown
    one. Every token is compared in constant time (no early exit that times which one matched)."""
    # The scheme is case-insensitive (RFC 9110 §11.1).
    if not header or header[:7].lower() != "bearer " or not header[7:].strip():
        raise AuthError(401, "missing bearer token")
    given = header[7:].strip().encode()
    found = None
    for grant in grants:
        if hmac.compare_digest(given, grant.token.encode()):
            found = grant
    if found is None:
        raise AuthError(403, "invalid token")
    return found


def authorize(grant: Grant, mode: str) -> None:
    if _SCOPE_OF_MODE.get(mode, mode) not in grant.scopes:
        allowed = ", ".join(sorted(grant.scopes))
        raise AuthError(
            403, f"the token of {grant.actor!r} may not deploy in {mode} mode (scopes: {allowed})"
        )


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


def deploy(service: ScoringService, req: DeployRequest, *, actor: str) -> dict[str, Any]:
    """Move the alias for ``req`` (audited) and wake the service's alias watcher.

    With the registry unreachable (connection, timeout, 5xx): a rollback to a version the service
    holds (the loaded previous champion, or a bundle in its cache) is applied locally, audited as
    ``pending``, and written to the registry when it answers again; anything else raises
    ``RegistryUnavailable`` (503 with the reason).
    """
    if req.model_id != service.model_name:
        raise RequestError(
            422, [{"field": "modelId", "reason": f"this service serves {service.model_name!r}"}]
        )
    if service.warehouse is None:
        raise PermanentError("the control API needs the warehouse for the deployments audit")
    mode = req.deployment_mode
    version = req.version
    if mode == "sample_rate":
        return _sample_rate(service, req, actor=actor)
    if mode == "shadow":
        if version is None:
            raise RequestError(422, [{"field": "version", "reason": "required for a shadow deployment"}])
        alias, action = req.alias or challenger_alias(version), Action.SHADOW
    elif mode == "production":
        if version is None:
            raise RequestError(422, [{"field": "version", "reason": "required for a production deployment"}])
        alias, action = CHAMPION, Action.PROMOTE
    else:
        alias, action = CHAMPION, Action.ROLLBACK
        if version is None:
            previous = service.manager.previous
            if previous is None:
                raise RequestError(
                    422, [{"field": "version", "reason": "no previous champion is loaded; name the version"}]
                )
            version = previous.version
    assert version is not None  # every mode has one by now
    # ``actor`` is what the caller's token may claim (``Grant.who``): the body's actor only from
    # the operator's token, never from a scoped one.
    who, why = actor, req.reason or f"{mode} via control API"
    try:
        if service.pending_rollbacks:  # a rollback made while MLflow was down is written first
            service.reconcile_pending()
        result = _move(service, alias=alias, version=version, action=action, actor=who, reason=why)
    except Exception as err:
        reason = _registry_down(service, err)
        if mode != "rollback":
            raise RegistryUnavailable(
                reason,
                f"the model registry is unreachable ({reason}): cannot {action} {service.model_name} "
                f"v{version} ({alias}); only a rollback to a version this service holds works without it",
            ) from err
        pending = service.rollback_offline(version, actor=who, reason=why, why=reason)
        current = service.manager.current
        return {
            "modelId": service.model_name,
            "alias": alias,
            "version": version,
            "previousVersion": pending.previous_version if pending else version,
            "deploymentMode": mode,
            "action": action,
            "moved": pending is not None,
            "deploymentId": pending.deployment_id if pending else None,
            "serving": None if current is None else current.version,
            # The alias move waits for the registry; the service serves the rollback meanwhile.
            "registry": DeploymentState.PENDING,
        }
    return {**result, "deploymentMode": mode, "registry": "updated"}


def _registry_down(service: ScoringService, err: Exception) -> str:
    """Why the registry could not be reached (counted in ``fraudops_registry_unavailable``); any
    other error is raised again from the caller's ``except``."""
    reason = unavailable_reason(err)
    if reason is None:
        raise err
    service.metrics.registry_unavailable.labels("deploy", reason).inc()
    return reason


def _sample_rate(service: ScoringService, req: DeployRequest, *, actor: str) -> dict[str, Any]:
    """Set a challenger's sample rate (registry tag, audited) and wake the watcher, which applies it."""
    from fraudops.registry import set_sample_rate

    rate = req.sample_rate
    if rate is None:
        raise RequestError(422, [{"field": "sampleRate", "reason": "required in sample_rate mode"}])
    if req.alias is None and req.version is None:
        raise RequestError(422, [{"field": "alias", "reason": "name the challenger: alias or version"}])
    alias = req.alias or challenger_alias(req.version or "")
    refusal = service.options.settings.scoring.sample_rate_refusal(rate)
    if refusal is not None:
        raise RequestError(422, [{"field": "sampleRate", "reason": refusal}])
    try:
        change = set_sample_rate(
            service.warehouse,  # type: ignore[arg-type]  # checked by deploy
            model_name=service.model_name,
            alias=alias,
            rate=rate,
            actor=actor,
            reason=req.reason,
            tracking_uri=service.tracking_uri,
        )
    except PermanentError as err:  # not a challenger in shadow
        raise RequestError(404, [{"field": "alias", "reason": str(err)}]) from err
    except Exception as err:
        reason = _registry_down(service, err)
        raise RegistryUnavailable(
            reason, f"the model registry is unreachable ({reason}): cannot change {alias}'s sample rate"
        ) from err
    service.watcher.wake()
    return {
        "modelId": service.model_name,
        "alias": alias,
        "version": change.version,
        "deploymentMode": "sample_rate",
        "action": Action.SAMPLE_RATE,
        "sampleRate": change.after,
        "previousSampleRate": change.before,
        "moved": change.changed,
        "deploymentId": change.deployment_id,
        "registry": "updated",
    }


def _move(
    service: ScoringService, *, alias: str, version: str, action: str, actor: str, reason: str
) -> dict[str, Any]:
    """The registry path: check the version exists, move the alias (audited), wake the watcher."""
    from mlflow.tracking import MlflowClient

    from fraudops.registry import get_alias_version, move_alias

    uri = service.tracking_uri
    if get_alias_version(service.model_name, alias, tracking_uri=uri) != version:
        try:
            MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version(service.model_name, version)
        except Exception as err:
            if unavailable_reason(err) is not None:
                raise
            raise RequestError(
                404, [{"field": "version", "reason": f"{service.model_name} has no version {version}"}]
            ) from err
    move = move_alias(
        service.warehouse,  # type: ignore[arg-type]  # checked by deploy
        model_name=service.model_name,
        alias=alias,
        version=version,
        action=action,
        actor=actor,
        reason=reason,
        tracking_uri=uri,
    )
    service.watcher.wake()
    return {
        "modelId": service.model_name,
        "alias": alias,
        "version": move.version,
        "previousVersion": move.previous_version,
        "action": action,
        "moved": move.moved,
        "deploymentId": move.deployment_id,
    }
