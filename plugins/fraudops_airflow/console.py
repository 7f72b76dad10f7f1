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
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

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
T = TypeVar("T")
log = logging.getLogger(__name__)


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
    start_release: Annotated[bool, Form()] = True,
) -> JSONResponse:
    """Model intake for the uploaded file, the user as author; 200 with the report when it is
    registered, 422 with the report (the failed check and its reason) when intake refused it, 503
    when a service it needs failed (try again). ``start_release`` (default true) emits the
    candidate Asset, so ``fraud_release`` starts now; false only registers it (book a shadow slot
    for it then)."""
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
            emit=start_release,
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


# -- approvals and rollback (release managers) ---------------------------------------------------
#: The task of ``fraud_release`` that asks for approval (``fraudops_airflow.approval``).
APPROVAL_TASK = "approve_release"


async def _json_object(request: Request) -> dict[str, Any] | None:
    """The request's body when it is a JSON object, else None (not JSON, or another JSON value)."""
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _airflow_as_user(request: Request) -> tuple[str, dict[str, str]]:
    """This API server's base URL and the caller's own Airflow token: calls made with it are
    Airflow's own decisions about this user (its permissions, HITL assignees, ``responded_by``)."""
    from airflow.configuration import conf

    header = request.headers.get("authorization") or ""
    token = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get("_token", "")
    if not token:
        raise HTTPException(status_code=401, detail="no Airflow token")
    # The API server's own address ([api] base_url; behind a proxy the request's host may not be
    # reachable from here), else the host the request came to.
    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    return base or f"{request.url.scheme}://{request.url.netloc}", {"Authorization": f"Bearer {token}"}


def _approval_row(doc: dict[str, Any]) -> dict[str, Any]:
    ti = doc.get("task_instance") or {}
    by = doc.get("responded_by_user") or {}
    return {
        "dag_id": ti.get("dag_id"),
        "run_id": ti.get("dag_run_id"),
        "state": ti.get("state"),
        "subject": doc.get("subject"),
        "body": doc.get("body"),
        "assigned": [u.get("name") or u.get("id") for u in doc.get("assigned_users") or []],
        "created_at": doc.get("created_at"),
        "answered": bool(doc.get("response_received")),
        "choice": (doc.get("chosen_options") or [None])[0],
        "by": by.get("name") or by.get("id"),
        "responded_at": doc.get("responded_at"),
    }


@router.get("/api/approvals")
async def approvals(request: Request, user: User) -> JSONResponse:
    """Releases waiting for (or recently given) a release manager's answer, newest first, as
    Airflow lets this user see them."""
    import httpx

    await _allow(user, ConsoleRole.VIEWER, "list_approvals", None)
    base, headers = _airflow_as_user(request)
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.get(
            f"{base}/api/v2/dags/~/dagRuns/~/hitlDetails",
            params={"task_id": APPROVAL_TASK, "order_by": "-created_at", "limit": 50},
            headers=headers,
        )
    if r.status_code >= 400:
        raise HTTPException(status_code=r.status_code, detail=r.text[:500])
    return JSONResponse([_approval_row(d) for d in r.json().get("hitl_details", [])])


@router.post("/api/approvals/{dag_id}/{run_id}")
async def answer_approval(request: Request, user: User, dag_id: str, run_id: str) -> JSONResponse:
    """Approve or abort a release waiting for approval: ``{"choice": "Approve" | "Abort"}``.

    Release managers only (403 here otherwise); the answer goes to Airflow's HITL API with the
    user's own token, so Airflow checks the request's assignees too and records who answered."""
    import httpx

    from fraudops_airflow.approval import ABORT, APPROVE

    target = f"{dag_id}/{run_id}"
    role = await _allow(user, ConsoleRole.RELEASE_MANAGER, "approve", target)
    body = await _json_object(request)
    choice = body.get("choice") if body is not None else None
    if choice not in (APPROVE, ABORT):
        raise HTTPException(status_code=422, detail=f"choice must be {APPROVE!r} or {ABORT!r}")
    base, headers = _airflow_as_user(request)
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.patch(
            f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{APPROVAL_TASK}/-1/hitlDetails",
            json={"chosen_options": [choice], "params_input": {}},
            headers=headers,
        )
    outcome = "ok" if r.status_code < 300 else "forbidden" if r.status_code == 403 else "refused"
    try:
        detail: Any = r.json()
    except ValueError:
        detail = {"detail": r.text[:500]}
    await asyncio.to_thread(
        _audit,
        user,
        role,
        "approve" if choice == APPROVE else "abort",
        target,
        outcome,
        {"airflow": r.status_code},
    )
    if r.status_code >= 300:
        raise HTTPException(status_code=r.status_code, detail=detail.get("detail", detail))
    by = detail.get("responded_by") or {}
    return JSONResponse(
        {
            "dag_id": dag_id,
            "run_id": run_id,
            "choice": (detail.get("chosen_options") or [None])[0],
            "by": by.get("name") or by.get("id"),
            "responded_at": detail.get("responded_at"),
        }
    )


async def _control_api(settings: Any, body: dict[str, Any]) -> tuple[int, Any, bool]:
    """``POST /deploy`` on the scoring service with the operator's token (the console checked the
    user's role itself): (status, JSON body, reached); 503 with the reason when unreachable."""
    import httpx

    from fraudops.serving.options import deploy_token

    async with httpx.AsyncClient(timeout=60) as client:
        try:
            r = await client.post(
                f"{settings.scoring.url.rstrip('/')}/deploy",
                json={k: v for k, v in body.items() if v is not None},
                headers={"Authorization": f"Bearer {deploy_token(settings)}"},
            )
        except httpx.HTTPError as err:
            return 503, {"detail": f"scoring service unreachable: {err}"}, False
    try:
        doc: Any = r.json()
    except ValueError:
        doc = {"detail": r.text[:500]}
    return r.status_code, doc, True


@router.post("/api/rollback")
async def rollback(request: Request, user: User) -> JSONResponse:
    """Put the previous champion back now (``{"version": optional, "reason": ...}``): the scoring
    service's control API (``POST /deploy``, rollback mode; works with the registry down), audited
    with the user as the actor. Release managers only."""
    from fraudops.config import load_settings

    role = await _allow(user, ConsoleRole.RELEASE_MANAGER, "rollback", None)
    body = await _json_object(request) or {}
    version = str(body.get("version") or "").strip() or None
    reason = str(body.get("reason") or "").strip()[:400] or "rollback from the console"
    settings = load_settings()
    req = {
        "modelId": settings.mlflow.model_name,
        "deploymentMode": "rollback",
        "version": version,
        "reason": reason,
        "actor": f"console:{user.get_name()}",
    }
    status, doc, reached = await _control_api(settings, req)
    if not reached:
        await asyncio.to_thread(_audit, user, role, "rollback", version, "error", {"error": doc["detail"]})
        raise HTTPException(status_code=503, detail=doc["detail"])
    target = f"v{doc.get('version')}" if isinstance(doc, dict) and doc.get("version") else version
    outcome = "ok" if status < 300 else "refused"
    await asyncio.to_thread(
        _audit, user, role, "rollback", target, outcome, {"reason": reason, "service": doc}
    )
    return JSONResponse(doc, status_code=status)


# -- shadow-slot bookings (data scientists) --------------------------------------------------------
def _sample_rate(settings: Any) -> float:
    """The share of live traffic the scoring service mirrors to each challenger now (its
    ``/version``), else the configured one."""
    from fraudops.clients.scoring import service_state
    from fraudops.exceptions import ServiceError

    try:
        rate = service_state(settings.scoring.url, timeout_s=3.0).get("shadow_sample_rate")
    except ServiceError:
        rate = None
    return float(rate) if isinstance(rate, int | float) else float(settings.scoring.shadow_sample_rate)


def _pool_lock(settings: Any) -> Path:
    """The shadow pool's calendar lock (``pipeline.booking.pool_lock``): one per host."""
    return Path(settings.run_dir) / "shadow_pool.lock"


async def _in_pool(
    user: BaseUser, role: ConsoleRole, action: str, target: str, call: Callable[[Any, Path], T]
) -> T:
    """``call(budget, lock path)`` (a placement under the pool lock) off the event loop: a refusal
    is 422 with its reason (audited), a lock that stays taken is 503 (try again)."""
    from fraudops.config import load_settings
    from fraudops.exceptions import ServiceError
    from fraudops.pipeline.booking import BookingRefused, PoolBudget

    try:
        return await asyncio.to_thread(call, PoolBudget.from_env(), _pool_lock(load_settings()))
    except BookingRefused as err:
        await asyncio.to_thread(_audit, user, role, action, target, "refused", {"reason": str(err)})
        raise HTTPException(status_code=422, detail=str(err)) from err
    except ServiceError as err:
        raise HTTPException(status_code=503, detail=str(err)) from err


@router.get("/api/bookings")
async def bookings(user: User, days: float = 7.0) -> JSONResponse:
    """The shadow pool's budget, its bookings and the calendar of its load from now on."""
    import datetime as dt

    from fraudops.config import load_settings
    from fraudops.pipeline.booking import PoolBudget, calendar, load_bookings

    await _allow(user, ConsoleRole.VIEWER, "list_bookings", None)
    settings = load_settings()
    rows = await asyncio.to_thread(load_bookings, _warehouse(), settings.mlflow.model_name)
    budget = PoolBudget.from_env()
    now = dt.datetime.now(dt.UTC)
    days = min(max(days, 0.1), 60.0)
    return JSONResponse(
        {
            "budget": {"cpu_cores": budget.cpu_cores, "memory_mb": budget.memory_mb},
            "bookings": [b.to_json() for b in rows if b.end_at > now - dt.timedelta(days=1)],
            "calendar": calendar(rows, budget, now, now + dt.timedelta(days=days)),
        }
    )


@router.post("/api/bookings")
async def book(request: Request, user: User) -> JSONResponse:
    """Book a shadow slot for a challenger and schedule its release:
    ``{"version": "7", "start_at": ISO 8601 (empty: now), "duration_minutes": 60,
    "sample_rate": 0.1 (empty: the service's default), "requires_approval": false,
    "request_id": "<unique per booking request>"}``.

    The version's cost is measured (its bundle verified on this machine: single-row latency) at the
    booking's sample rate (within the shadow pool's limits) and the traffic of the last hour; the
    release run mirrors that share of live traffic to it; the booking is placed within the
    shadow pool's budget (at its start, or queued to the first instant with room; refused (422) if
    it can never fit) and recorded under the pool's lock (``pipeline.booking.reserve``). Then
    ``fraud_release`` is triggered with the user's own Airflow token, run id ``booking__<id>`` and
    ``run_after`` = the placed start: Airflow starts it then. The same ``request_id`` (or
    ``Idempotency-Key`` header) again returns the same booking (200) and makes sure its run exists:
    a request cut off after the booking was written is safe to retry."""
    import datetime as dt

    import httpx

    from fraudops.config import load_settings
    from fraudops.exceptions import FraudopsError, ServiceError, WarehouseUnavailable
    from fraudops.faults import crash_point
    from fraudops.pipeline.booking import (
        Booking,
        BookingRefused,
        PoolBudget,
        booking_id_for,
        cancel_booking,
        find_booking,
        measure_cost,
        reserve,
        traffic_rate,
    )
    from fraudops.release.progress import as_utc

    role = await _allow(user, ConsoleRole.DATA_SCIENTIST, "book", None)
    body = await _json_object(request)
    if body is None:
        raise HTTPException(status_code=422, detail="a JSON object is required")
    version = str(body.get("version") or "").strip()
    if not version.isdigit():
        raise HTTPException(status_code=422, detail="version must be a registry version number")
    try:
        start = as_utc(body["start_at"]) if body.get("start_at") else dt.datetime.now(dt.UTC)
        minutes = float(body.get("duration_minutes") or 60.0)
    except (TypeError, ValueError) as err:
        raise HTTPException(status_code=422, detail=f"bad start_at or duration_minutes: {err}") from err
    request_id = body.get("request_id") or request.headers.get("Idempotency-Key") or None
    if request_id is not None and (not isinstance(request_id, str) or not 1 <= len(request_id) <= 128):
        raise HTTPException(status_code=422, detail="request_id must be a string of 1 to 128 characters")
    approval = body.get("requires_approval", False)
    if not isinstance(approval, bool):
        raise HTTPException(status_code=422, detail="requires_approval must be true or false")
    settings = load_settings()
    asked_rate = body.get("sample_rate")
    if asked_rate in (None, ""):
        asked_rate = None
    elif isinstance(asked_rate, bool) or not isinstance(asked_rate, int | float):
        raise HTTPException(status_code=422, detail="sample_rate must be a number")
    else:
        refusal = settings.scoring.sample_rate_refusal(float(asked_rate))
        if refusal is not None:
            raise HTTPException(status_code=422, detail=refusal)
    name, target = settings.mlflow.model_name, f"{settings.mlflow.model_name} v{version}"
    wh = _warehouse()
    booking_id = booking_id_for(user.get_name(), request_id)
    booking: Booking | None = await asyncio.to_thread(find_booking, wh, booking_id)
    replayed = booking is not None
    placement = None
    if booking is None:
        now = dt.datetime.now(dt.UTC)
        if start < now - dt.timedelta(minutes=5):
            raise HTTPException(status_code=422, detail="start_at is in the past")
        if not 1.0 <= minutes <= 60 * 24 * 60.0:
            raise HTTPException(status_code=422, detail="duration_minutes must be between 1 and 86400")
        try:
            cost = await asyncio.to_thread(
                measure_cost, name, version, tracking_uri=settings.mlflow.tracking_uri
            )
            rate = (
                float(asked_rate)
                if asked_rate is not None
                else await asyncio.to_thread(_sample_rate, settings)
            )
            events_per_s = await asyncio.to_thread(traffic_rate, wh, name)
            cpu = cost.cpu_cores(events_per_s, rate)
            conf = {
                "model_name": name,
                "version": version,
                "requires_approval": approval,
                # Asked for: the challenger's own rate; not asked: the service's default (costed at
                # its current value), which the release then leaves as it is.
                "shadow_sample_rate": None if asked_rate is None else rate,
            }
            booking, placement = await asyncio.to_thread(
                lambda: reserve(
                    wh,
                    PoolBudget.from_env(),
                    booking_id=booking_id,
                    lock_path=_pool_lock(settings),
                    model_name=name,
                    version=version,
                    booked_by=user.get_name(),
                    start_at=start,
                    duration=dt.timedelta(minutes=minutes),
                    sample_rate=rate,
                    cpu_cores=cpu,
                    memory_mb=cost.memory_mb,
                    release_conf=json.dumps(conf),
                )
            )
        except BookingRefused as err:
            await asyncio.to_thread(_audit, user, role, "book", target, "refused", {"reason": str(err)})
            raise HTTPException(status_code=422, detail=str(err)) from err
        except (ServiceError, WarehouseUnavailable) as err:  # MLflow, the warehouse or the lock: retry
            await asyncio.to_thread(_audit, user, role, "book", target, "error", {"reason": str(err)})
            raise HTTPException(status_code=503, detail=f"{target}: {err}") from err
        except FraudopsError as err:  # no such version, a bundle that fails verification
            await asyncio.to_thread(_audit, user, role, "book", target, "refused", {"reason": str(err)})
            raise HTTPException(status_code=422, detail=f"{target}: {err}") from err
    assert booking is not None
    if booking.state == "cancelled":
        raise HTTPException(status_code=409, detail=f"booking {booking.booking_id} was cancelled")
    base, headers = _airflow_as_user(request)
    reason = placement.reason if placement is not None else "the same request again"
    run = {
        "dag_run_id": booking.dag_run_id,
        "logical_date": None,
        "run_after": booking.start_at.isoformat(),
        "conf": json.loads(booking.release_conf)
        if booking.release_conf
        else {
            "model_name": name,
            "version": booking.version,
            "requires_approval": approval,
        },
        "note": f"booked by {booking.booked_by} (booking {booking.booking_id}): {reason}",
    }
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{base}/api/v2/dags/{RELEASE_DAG}/dagRuns", json=run, headers=headers)
    if r.status_code >= 300 and r.status_code != 409:  # 409: the run exists (a retried request)
        if not replayed:  # free the capacity the booking holds: it will not run
            await asyncio.to_thread(cancel_booking, wh, booking.booking_id)
        await asyncio.to_thread(
            _audit, user, role, "book", target, "error", {"airflow": r.status_code, "detail": r.text[:500]}
        )
        raise HTTPException(
            status_code=r.status_code, detail=f"Airflow refused the release run: {r.text[:500]}"
        )
    crash_point("book:after_trigger")
    detail: dict[str, Any] = {**booking.to_json(), "replayed": replayed, "reason": reason}
    if placement is not None:
        detail.update(
            {
                "events_per_s": round(events_per_s, 3),
                "latency_ms": cost.latency_ms,
                "peak_cpu_cores": round(placement.peak_cpu_cores, 4),
                "peak_memory_mb": round(placement.peak_memory_mb, 1),
            }
        )
    outcome = "ok" if not replayed else "replayed"
    await asyncio.to_thread(_audit, user, role, "book", f"{target} → {booking.dag_run_id}", outcome, detail)
    return JSONResponse(detail, status_code=200 if replayed else 201)


async def _own_booking(user: BaseUser, role: ConsoleRole, action: str, booking_id: str, verb: str) -> Any:
    """The booking ``user`` may ``verb``: their own, or anyone's for a release manager (404 when
    there is none; 403, audited, otherwise)."""
    from fraudops.pipeline.booking import find_booking

    booking = await asyncio.to_thread(find_booking, _warehouse(), booking_id)
    if booking is None:
        raise HTTPException(status_code=404, detail=f"no booking {booking_id}")
    if booking.booked_by != user.get_name() and not role.may(ConsoleRole.RELEASE_MANAGER):
        reason = f"{user.get_name()} is {role}; {verb} {booking.booked_by}'s booking needs release_manager"
        await asyncio.to_thread(_audit, user, role, action, booking_id, "forbidden", {"reason": reason})
        raise HTTPException(status_code=403, detail=reason)
    return booking


async def _queued_run(
    client: Any, request: Request, user: BaseUser, role: ConsoleRole, action: str, booking: Any, too_late: str
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(run URL, the user's Airflow headers, the run or {} when Airflow has none) of the booking's
    release run while it waits for its start; 409 (audited) once it has started."""
    base, headers = _airflow_as_user(request)
    run_url = f"{base}/api/v2/dags/{RELEASE_DAG}/dagRuns/{booking.dag_run_id}"
    r = await client.get(run_url, headers=headers)
    if r.status_code == 200 and r.json().get("state") != "queued":
        state = r.json().get("state")
        await asyncio.to_thread(
            _audit, user, role, action, booking.booking_id, "refused", {"run_state": state}
        )
        raise HTTPException(
            status_code=409, detail=f"its release {booking.dag_run_id} is {state}: {too_late}"
        )
    if r.status_code not in (200, 404):
        raise HTTPException(status_code=r.status_code, detail=f"Airflow: {r.text[:300]}")
    return run_url, headers, (r.json() if r.status_code == 200 else {})


@router.post("/api/bookings/{booking_id}/cancel")
async def cancel(request: Request, user: User, booking_id: str) -> JSONResponse:
    """Cancel a booking whose release has not started: its own booker (a data scientist) or a
    release manager (anyone's). The queued ``fraud_release`` run is deleted in Airflow with the
    user's own token, then the booking is marked cancelled; a release already running is refused
    (409: abort it at its approval, or let the gate decide)."""
    import httpx

    from fraudops.pipeline.booking import cancel_booking

    role = await _allow(user, ConsoleRole.DATA_SCIENTIST, "cancel_booking", booking_id)
    booking = await _own_booking(user, role, "cancel_booking", booking_id, "cancelling")
    if booking.state == "cancelled":
        return JSONResponse(booking.to_json())
    async with httpx.AsyncClient(timeout=30) as client:
        run_url, headers, run = await _queued_run(
            client,
            request,
            user,
            role,
            "cancel_booking",
            booking,
            "abort it at its approval or let the gate decide",
        )
        if run:
            d = await client.delete(run_url, headers=headers)
            if d.status_code >= 300 and d.status_code != 404:
                await asyncio.to_thread(
                    _audit, user, role, "cancel_booking", booking_id, "error", {"airflow": d.status_code}
                )
                raise HTTPException(status_code=d.status_code, detail=f"Airflow: {d.text[:300]}")
    await asyncio.to_thread(cancel_booking, _warehouse(), booking_id)
    await asyncio.to_thread(
        _audit, user, role, "cancel_booking", booking_id, "ok", {"booked_by": booking.booked_by}
    )
    return JSONResponse({**booking.to_json(), "state": "cancelled"})


@router.post("/api/bookings/{booking_id}/move")
async def move_booking(request: Request, user: User, booking_id: str) -> JSONResponse:
    """Move a booking whose release has not started: ``{"start_at": ISO 8601, "duration_minutes":
    optional}``; its own booker or a release manager (anyone's).

    Placed again among the other bookings under the pool's lock (``pipeline.booking.move``: queued
    to the first instant with room when the pool is full then), then its queued ``fraud_release``
    run is re-scheduled with the user's own Airflow token: Airflow cannot change a run's
    ``run_after``, so the run is deleted and created again under the same run id and conf. A
    release already running is refused (409). The same move again (a cut-off request) places the
    booking the same way and makes sure its run exists once, at the new start."""
    import datetime as dt

    import httpx

    from fraudops.pipeline.booking import move
    from fraudops.release.progress import as_utc

    role = await _allow(user, ConsoleRole.DATA_SCIENTIST, "move_booking", booking_id)
    body = await _json_object(request)
    if body is None or not body.get("start_at"):
        raise HTTPException(status_code=422, detail="start_at (ISO 8601) is required")
    try:
        start = as_utc(body["start_at"])
        minutes = float(body["duration_minutes"]) if body.get("duration_minutes") else None
    except (TypeError, ValueError) as err:
        raise HTTPException(status_code=422, detail=f"bad start_at or duration_minutes: {err}") from err
    if minutes is not None and not 1.0 <= minutes <= 60 * 24 * 60.0:
        raise HTTPException(status_code=422, detail="duration_minutes must be between 1 and 86400")
    wh = _warehouse()
    booking = await _own_booking(user, role, "move_booking", booking_id, "moving")
    async with httpx.AsyncClient(timeout=30) as client:
        run_url, headers, run = await _queued_run(
            client, request, user, role, "move_booking", booking, "too late to move"
        )
    moved, placement = await _in_pool(
        user,
        role,
        "move_booking",
        booking_id,
        lambda budget, lock: move(
            wh,
            budget,
            booking_id=booking_id,
            lock_path=lock,
            start_at=start,
            duration=None if minutes is None else dt.timedelta(minutes=minutes),
        ),
    )
    # The booking keeps its run's conf: a move cut off after the delete re-creates it the same.
    conf = json.loads(moved.release_conf) if moved.release_conf else run.get("conf")
    if not conf:
        conf = {"model_name": moved.model_name, "version": moved.version}
    if conf.get("shadow_sample_rate") is not None:  # its own rate, as it is now (may have changed)
        conf = {**conf, "shadow_sample_rate": moved.sample_rate}
    again = {
        "dag_run_id": moved.dag_run_id,
        "logical_date": None,
        "run_after": moved.start_at.isoformat(),
        "conf": conf,
        "note": f"booked by {moved.booked_by} (booking {moved.booking_id}), moved by {user.get_name()}: "
        f"{placement.reason}",
    }
    async with httpx.AsyncClient(timeout=30) as client:
        if run:
            d = await client.delete(run_url, headers=headers)
            if d.status_code >= 300 and d.status_code != 404:
                raise HTTPException(status_code=d.status_code, detail=f"Airflow: {d.text[:300]}")
        c = await client.post(run_url.rsplit("/", 1)[0], json=again, headers=headers)
    if c.status_code >= 300:
        await asyncio.to_thread(
            _audit,
            user,
            role,
            "move_booking",
            booking_id,
            "error",
            {"airflow": c.status_code, "detail": c.text[:300]},
        )
        raise HTTPException(
            status_code=c.status_code,
            detail=f"the booking moved but Airflow refused its release run ({c.text[:300]}): "
            "send the move again",
        )
    detail = {**moved.to_json(), "reason": placement.reason, "moved_from": booking.start_at.isoformat()}
    await asyncio.to_thread(_audit, user, role, "move_booking", booking_id, "ok", detail)
    return JSONResponse(detail)


# -- following releases -----------------------------------------------------------------------------
async def _xcom(client: Any, base: str, headers: dict[str, str], run_id: str, task_id: str) -> Any:
    """A task's return value through Airflow's REST API (the user's token), or None."""
    r = await client.get(
        f"{base}/api/v2/dags/{RELEASE_DAG}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
        headers=headers,
    )
    if r.status_code != 200:
        return None
    value = r.json().get("value")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


@router.get("/api/releases")
async def releases(request: Request, user: User, limit: int = 6) -> JSONResponse:
    """The newest ``fraud_release`` runs (read with the user's own Airflow token) and, for each that
    resolved its candidate, what ``pipeline.release.follow`` reports: events scored and matured
    labeled frauds against what the gate needs, the ETA and the wait's status line, an hourly
    series for the plot, and the latest gate decisions on the version."""
    import httpx

    from fraudops.pipeline.release import follow
    from fraudops.pipeline.release_types import Candidate, ShadowDeployment

    await _allow(user, ConsoleRole.VIEWER, "list_releases", None)
    base, headers = _airflow_as_user(request)
    wh = _warehouse()
    out = []
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.get(
            f"{base}/api/v2/dags/{RELEASE_DAG}/dagRuns",
            params={"limit": min(max(limit, 1), 20), "order_by": "-run_after"},
            headers=headers,
        )
        if r.status_code != 200:
            raise HTTPException(status_code=r.status_code, detail=f"Airflow: {r.text[:300]}")
        for run in r.json().get("dag_runs", []):
            run_id = run["dag_run_id"]
            item: dict[str, Any] = {
                k: run.get(k) for k in ("dag_run_id", "state", "run_after", "start_date", "end_date", "conf")
            }
            cand = await _xcom(client, base, headers, run_id, "resolve")
            if cand is not None:
                deploy = await _xcom(client, base, headers, run_id, "deploy_shadow")
                try:
                    item["follow"] = await asyncio.to_thread(
                        follow,
                        wh,
                        Candidate.from_xcom(cand),
                        None if deploy is None else ShadowDeployment.from_xcom(deploy),
                    )
                except ValueError as err:  # an XCom of an older shape: show the run without it
                    item["follow_error"] = str(err)[:300]
            out.append(item)
    return JSONResponse(out)


# -- challengers in shadow: their sample rates ------------------------------------------------------
def _live_booking(bookings: list[Any], version: str) -> Any:
    """Of ``bookings`` (``load_bookings``), the version's that holds pool capacity now or later
    (the newest), or None."""
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    live = [
        b for b in bookings if b.version == version and b.state in ("booked", "queued") and b.end_at > now
    ]
    return max(live, key=lambda b: b.created_at) if live else None


def _author(tracking_uri: str, model_name: str, version: str) -> str:
    """Who uploaded ``version`` (its ``author`` tag; empty for a retrained model)."""
    from mlflow.tracking import MlflowClient

    try:
        mv = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).get_model_version(
            model_name, version
        )
    except Exception:
        return ""
    return str((mv.tags or {}).get("author", ""))


@router.get("/api/challengers")
async def challengers(user: User) -> JSONResponse:
    """The challengers scoring in shadow now (the scoring service's view): version, state, sample
    rate, events scored, latency, and who booked or uploaded it."""
    from fraudops.clients.scoring import service_state
    from fraudops.config import load_settings
    from fraudops.exceptions import ServiceError
    from fraudops.pipeline.booking import load_bookings

    await _allow(user, ConsoleRole.VIEWER, "list_challengers", None)
    settings = load_settings()
    try:
        doc = await asyncio.to_thread(service_state, settings.scoring.url, 5.0)
    except ServiceError as err:
        raise HTTPException(status_code=503, detail=str(err)) from err
    name, wh = settings.mlflow.model_name, _warehouse()
    booked = await asyncio.to_thread(load_bookings, wh, name)  # once, not per challenger
    out = []
    for alias, w in sorted((doc.get("challengers") or {}).items()):
        version = str(w.get("version"))
        booking = _live_booking(booked, version)
        author = await asyncio.to_thread(_author, settings.mlflow.tracking_uri, name, version)
        out.append(
            {
                "alias": alias,
                "version": version,
                "state": w.get("state"),
                "sample_rate": w.get("sample_rate"),
                "processed": w.get("processed"),
                "errors": w.get("errors"),
                "shed": w.get("shed"),
                "latency_ms_mean": w.get("latency_ms_mean"),
                # The scale profile's stream transport: events not yet delivered to a shadow
                # worker (lag), delivered and not answered (pending), dead-lettered.
                "transport": w.get("transport", "process"),
                "lag": w.get("lag"),
                "pending": w.get("pending"),
                "dead_letters": w.get("dead_letters"),
                "author": author,
                "booked_by": None if booking is None else booking.booked_by,
                "booking_id": None if booking is None else booking.booking_id,
            }
        )
    limits = {
        "default": settings.scoring.shadow_sample_rate,
        "min": settings.scoring.shadow_sample_rate_min,
        "max": settings.scoring.shadow_sample_rate_max,
    }
    return JSONResponse({"sample_rate_limits": limits, "challengers": out})


@router.post("/api/challengers/{alias}/sample_rate")
async def change_sample_rate(request: Request, user: User, alias: str) -> JSONResponse:
    """Change a running challenger's share of live traffic: ``{"sample_rate": 0.2, "reason": ...}``.

    Who: the data scientist who uploaded or booked the version, or a release manager (anyone's).
    Within the shadow pool's limits (FRAUDOPS_SHADOW_SAMPLE_RATE_MIN/_MAX). A booked challenger is
    re-costed at the new rate under the pool's lock first (``pipeline.booking.resize``: refused,
    422, when the pool cannot hold it until the booking ends); then the scoring service's control
    API sets the rate (``POST /deploy``, ``sample_rate`` mode: a registry tag every replica reads,
    audited in ``deployments`` with actor ``console:<user>``). Setting the rate it has is a no-op,
    so a cut-off request is safe to repeat; a refusal by the service puts the booking's rate back."""

    from fraudops.config import load_settings
    from fraudops.exceptions import ServiceError
    from fraudops.pipeline.booking import BookingRefused, PoolBudget, load_bookings, resize
    from fraudops.registry import get_alias_version
    from fraudops.vocabulary import is_challenger_alias

    role = await _allow(user, ConsoleRole.DATA_SCIENTIST, "sample_rate", alias)
    body = await _json_object(request) or {}
    rate = body.get("sample_rate")
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise HTTPException(status_code=422, detail="sample_rate must be a number")
    rate = float(rate)
    reason = str(body.get("reason") or "").strip()[:400] or "changed in the console"
    if not is_challenger_alias(alias):
        raise HTTPException(status_code=422, detail=f"{alias!r} is not a challenger alias")
    settings = load_settings()
    name, wh = settings.mlflow.model_name, _warehouse()
    refusal = settings.scoring.sample_rate_refusal(rate)
    if refusal is not None:
        await asyncio.to_thread(_audit, user, role, "sample_rate", alias, "refused", {"reason": refusal})
        raise HTTPException(status_code=422, detail=refusal)
    try:
        version = await asyncio.to_thread(
            get_alias_version, name, alias, tracking_uri=settings.mlflow.tracking_uri
        )
    except ServiceError as err:
        raise HTTPException(status_code=503, detail=str(err)) from err
    if version is None:
        raise HTTPException(status_code=404, detail=f"{name} has no challenger {alias} in shadow")
    target = f"{name} v{version} ({alias})"
    booking = _live_booking(await asyncio.to_thread(load_bookings, wh, name), version)
    author = await asyncio.to_thread(_author, settings.mlflow.tracking_uri, name, version)
    me = user.get_name()
    if not role.may(ConsoleRole.RELEASE_MANAGER) and me not in {author, getattr(booking, "booked_by", None)}:
        why = (
            f"{me} is {role}; changing the sample rate of a challenger {me} did not upload or book "
            "needs release_manager"
        )
        await asyncio.to_thread(_audit, user, role, "sample_rate", target, "forbidden", {"reason": why})
        raise HTTPException(status_code=403, detail=why)
    before = None if booking is None else booking.sample_rate
    if booking is not None:
        await _in_pool(
            user,
            role,
            "sample_rate",
            target,
            lambda budget, lock: resize(
                wh, budget, booking_id=booking.booking_id, lock_path=lock, sample_rate=rate
            ),
        )
    req = {
        "modelId": name,
        "deploymentMode": "sample_rate",
        "alias": alias,
        "sampleRate": rate,
        "reason": reason,
        "actor": f"console:{me}",
    }
    status, doc, _ = await _control_api(settings, req)
    if status >= 300:
        if booking is not None and before is not None:  # the pool holds what the service samples
            try:
                await asyncio.to_thread(
                    resize,
                    wh,
                    PoolBudget.from_env(),
                    booking_id=booking.booking_id,
                    lock_path=_pool_lock(settings),
                    sample_rate=before,
                )
            except (BookingRefused, ServiceError) as err:  # the service's answer is what matters here
                log.warning("booking %s kept rate %g: %s", booking.booking_id, rate, err)
        await asyncio.to_thread(_audit, user, role, "sample_rate", target, "error", {"service": doc})
        return JSONResponse(doc if isinstance(doc, dict) else {"detail": doc}, status_code=status)
    await asyncio.to_thread(
        _audit, user, role, "sample_rate", target, "ok", {"reason": reason, "service": doc, "booking": before}
    )
    return JSONResponse(doc)


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
