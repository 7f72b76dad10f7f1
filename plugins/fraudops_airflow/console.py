"""The model console inside Airflow (issue #19): upload a model and follow intake's checks, see the
uploaded versions and what the console did, under Airflow's own login.

Identity and roles come from Airflow's auth manager, so the console needs no accounts of its own:
the user is the one of the Airflow session (the ``_token`` cookie the UI sets) or of an
``Authorization: Bearer`` token (``POST /auth/token``), and the role is derived from what the auth
manager lets that user do:

* **release manager**: may edit pools (the shadow pool is the release capacity; Airflow's ``OP``
  and ``ADMIN`` roles under the simple auth manager);
* **data scientist**: may trigger runs of ``fraud_release`` (``USER``);
* **viewer**: may read ``fraud_release`` (``VIEWER``).

Every action is enforced here, on the server, and writes a ``console_actions`` row naming its
actor (refusals and forbidden attempts too). An upload runs model intake (``fraudops.intake``) with
the user as author; the candidate Asset event (its extra names the author) is posted with the
platform's Airflow account (``FRAUDOPS_AIRFLOW_USERNAME``/``_PASSWORD``, locally the stack's admin):
creating Asset events needs Airflow's ``OP`` role, which a data scientist does not have.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import get_user
from fastapi import APIRouter, Depends, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse

from fraudops.vocabulary import ConsoleRole

router = APIRouter()
RELEASE_DAG = "fraud_release"
#: Upload size limit (bytes), the same default as intake's.
MAX_UPLOAD_BYTES = int(os.environ.get("FRAUDOPS_MAX_UPLOAD_MB", "256")) * 2**20

User = Annotated[BaseUser, Depends(get_user)]


def role_of(user: BaseUser) -> ConsoleRole | None:
    """The console role Airflow's auth manager gives ``user`` (None: not even a viewer)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    am = get_auth_manager()
    if am.is_authorized_pool(method="PUT", user=user):
        return ConsoleRole.RELEASE_MANAGER
    release = DagDetails(id=RELEASE_DAG)
    if am.is_authorized_dag(method="POST", access_entity=DagAccessEntity.RUN, details=release, user=user):
        return ConsoleRole.DATA_SCIENTIST
    if am.is_authorized_dag(method="GET", details=release, user=user):
        return ConsoleRole.VIEWER
    return None


def _warehouse() -> Any:
    from fraudops_airflow.hooks import WarehouseHook

    return WarehouseHook(warehouse_conn_id="fraudops_warehouse").get_warehouse()


def _audit(
    user: BaseUser, role: ConsoleRole | None, action: str, target: str | None, outcome: str, detail: Any
) -> None:
    from fraudops.intake.audit import record_action

    record_action(
        _warehouse(),
        actor=user.get_name(),
        role=str(role) if role else None,
        action=action,
        target=target,
        outcome=outcome,
        detail=detail,
    )


async def _allow(user: BaseUser, needed: ConsoleRole, action: str, target: str | None) -> ConsoleRole:
    role = role_of(user)
    if role is None or not role.may(needed):
        reason = f"{user.get_name()} is {role or 'no console user'}; {action} needs {needed}"
        await asyncio.to_thread(_audit, user, role, action, target, "forbidden", {"reason": reason})
        raise HTTPException(status_code=403, detail=reason)
    return role


def _platform_airflow() -> Any:
    """Airflow's REST client with the platform's account (``fraudops models upload`` uses the same)."""
    from fraudops.config import load_settings
    from fraudops.exceptions import ServiceError
    from fraudops.stack.services import platform_airflow_client

    try:
        return platform_airflow_client(load_settings())
    except ServiceError as err:
        raise HTTPException(status_code=503, detail=f"cannot start releases: {err}") from err


@router.get("/api/me")
async def me(user: User) -> JSONResponse:
    role = role_of(user)
    return JSONResponse({"user": user.get_name(), "role": str(role) if role else None})


@router.get("/api/features")
async def features(user: User) -> JSONResponse:
    from fraudops.features.definitions import REGISTRY

    await _allow(user, ConsoleRole.VIEWER, "list_features", None)
    return JSONResponse(
        [{"name": d.name, "version": d.version, "description": d.description} for d in REGISTRY.active()]
    )


@router.get("/api/uploads")
async def uploads(user: User) -> JSONResponse:
    from fraudops.config import load_settings
    from fraudops.intake.audit import list_uploads

    await _allow(user, ConsoleRole.VIEWER, "list_uploads", None)
    settings = load_settings()
    rows = await asyncio.to_thread(list_uploads, settings.mlflow.tracking_uri, settings.mlflow.model_name)
    return JSONResponse(rows)


async def _save(file: UploadFile, dest: Path) -> int:
    size = 0
    with dest.open("wb") as out:
        while chunk := await file.read(1 << 20):
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise HTTPException(
                    status_code=413, detail=f"the file is larger than {MAX_UPLOAD_BYTES:,} bytes"
                )
            out.write(chunk)
    return size


@router.post("/api/models")
async def upload_model(
    user: User,
    file: UploadFile,
    features: Annotated[str, Form()],
    description: Annotated[str, Form()] = "",
) -> JSONResponse:
    """Model intake for the uploaded file, the user as author; 200 with the report when it is
    registered, 422 with the report (the failed check and its reason) when intake refused it, 503
    when a service it needs failed (try again)."""
    from fraudops.config import load_settings
    from fraudops.intake import IntakeRequest, run_intake
    from fraudops.release.policy import DEFAULT_POLICY

    name = Path(file.filename or "model").name[:200]
    role = await _allow(user, ConsoleRole.DATA_SCIENTIST, "upload", name)
    names = tuple(n.strip() for n in features.replace("\n", ",").split(",") if n.strip())
    with tempfile.TemporaryDirectory(prefix="fraudops-upload-") as tmp:
        path = Path(tmp) / name
        try:
            await _save(file, path)
        except HTTPException as err:
            await asyncio.to_thread(_audit, user, role, "upload", name, "refused", {"reason": err.detail})
            raise
        req = IntakeRequest(
            path=path,
            features=names,
            author=user.get_name(),
            description=description[:2000],
            alert_budget=DEFAULT_POLICY.alert_budget,
        )
        airflow = _platform_airflow()
        settings = load_settings()
        report = await asyncio.to_thread(run_intake, req, settings, warehouse=_warehouse(), airflow=airflow)
    doc = report.to_dict()
    outcome = "ok" if report.ok else "error" if report.retryable else "refused"
    await asyncio.to_thread(
        _audit,
        user,
        role,
        "upload",
        f"{name} → v{report.version}" if report.version else name,
        outcome,
        {"features": list(names), "checks": doc["checks"], "error": report.error},
    )
    return JSONResponse(doc, status_code=200 if report.ok else 503 if report.retryable else 422)


@router.get("/api/actions")
async def actions(user: User) -> JSONResponse:
    from fraudops.intake.audit import recent_actions

    await _allow(user, ConsoleRole.VIEWER, "list_actions", None)
    rows = await asyncio.to_thread(recent_actions, _warehouse())
    return JSONResponse(json.loads(json.dumps(rows, default=str)))


@router.get("/console", response_class=HTMLResponse)
async def console(request: Request) -> HTMLResponse:
    try:
        user = await get_user(request, None, None)
    except HTTPException:
        return HTMLResponse(
            '<p>Sign in to Airflow first: <a href="/auth/login/?next=/fraudops/console">log in</a>.</p>',
            status_code=401,
        )
    role = role_of(user)
    return HTMLResponse(
        _PAGE.replace("{{user}}", html.escape(user.get_name())).replace("{{role}}", str(role))
    )


#: The page (static HTML + a little JavaScript calling the API above); ``{{user}}``/``{{role}}`` filled in.
_PAGE = (Path(__file__).with_name("console.html")).read_text(encoding="utf-8")
