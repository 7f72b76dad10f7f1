"""Shadow-slot bookings: when a challenger may take the shadow pool, and whether it fits.

The shadow pool has a budget (``FRAUDOPS_SHADOW_CPU_CORES``, ``FRAUDOPS_SHADOW_MEMORY_MB``). A
challenger costs, while it shadows:

* CPU: mirrored events per second × its sample rate × its single-row latency (the p50 measured by
  verifying its bundle on this machine when it is booked, as the scoring service verifies it), in
  cores;
* memory: a shadow worker's base (``SHADOW_WORKER_BASE_MB``, a conservative 110 MB: ``make bench``
  measured 69 MB per worker with the demo's model loaded, README benchmark table) plus its model's
  ONNX Runtime session (``MODEL_MEMORY_FACTOR`` × the model file).

A booking asks for [start, start + duration) at a sample rate. :func:`place` fits it into the
calendar of the bookings already made: at its start if every instant of its window stays within the
budget, else at the first later instant (an end of another booking) where it does, *queued* with
that expected start; a booking that alone exceeds the budget is refused with the numbers. The
console writes the placement to ``shadow_bookings`` and triggers ``fraud_release`` with the run id
``booking__<id>`` and ``run_after`` = the placed start, so Airflow's scheduler starts the release
then (queued runs wait for their ``run_after``).

Retry and concurrency safety (:func:`reserve`). The booking row is written *before* the release
run is triggered, and its id is derived from the booker and the request's ``request_id`` (the
console's form sends a fresh one per submission; API clients send their own): a request killed
after the row was written and retried finds its booking and triggers the run again (Airflow
answers 409 for a run id it holds, which the console takes as done), so a retry never books twice.
Reading the calendar, placing and writing happen under an exclusive lock on
``<state>/run/shadow_pool.lock`` (``fcntl.flock``: every api-server worker of this host takes
the same lock), so two bookings made at once cannot both take the last room in the pool.

Pure functions except :func:`measure_cost`, :func:`traffic_rate`, :func:`reserve` and the table
helpers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudops.faults import crash_point

if TYPE_CHECKING:
    from fraudops.warehouse import Warehouse

#: RSS of a shadow worker process apart from its model (MB): conservative (``make bench`` measured
#: 69 MB per worker with the demo's model loaded).
SHADOW_WORKER_BASE_MB = 110.0
#: ONNX Runtime session memory per MB of model file (weights, arena), a conservative multiple.
MODEL_MEMORY_FACTOR = 3.0
#: Mirrored events per second assumed when the warehouse has no recent production traffic.
DEFAULT_EVENTS_PER_S = 100.0


class BookingRefused(ValueError):
    """The booking can never fit the pool (or asks for something impossible)."""


@dataclass(frozen=True)
class PoolBudget:
    cpu_cores: float = 1.0
    memory_mb: float = 1024.0

    @classmethod
    def from_env(cls) -> PoolBudget:
        return cls(
            cpu_cores=float(os.environ.get("FRAUDOPS_SHADOW_CPU_CORES", "1.0")),
            memory_mb=float(os.environ.get("FRAUDOPS_SHADOW_MEMORY_MB", "1024")),
        )


@dataclass(frozen=True)
class ModelCost:
    """What one challenger costs the pool per mirrored event and while loaded."""

    latency_ms: float
    memory_mb: float

    def cpu_cores(self, events_per_s: float, sample_rate: float) -> float:
        return events_per_s * sample_rate * self.latency_ms / 1000.0


@dataclass(frozen=True)
class Booking:
    booking_id: str
    model_name: str
    version: str
    booked_by: str
    start_at: dt.datetime
    end_at: dt.datetime
    sample_rate: float
    cpu_cores: float
    memory_mb: float
    #: ``booked`` (starts when asked) or ``queued`` (moved to the first instant the pool has room).
    state: str
    requested_start_at: dt.datetime
    dag_run_id: str
    created_at: dt.datetime
    #: JSON conf of its ``fraud_release`` run (None in rows from before the column).
    release_conf: str | None = None

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        return self.start_at < end and start < self.end_at

    def to_row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Booking:
        from fraudops.release.progress import as_utc

        doc: dict[str, Any] = {k: row.get(k) for k in cls.__dataclass_fields__}
        for key in ("start_at", "end_at", "requested_start_at", "created_at"):
            doc[key] = as_utc(doc[key])
        return cls(**doc)

    def to_json(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Placement:
    start_at: dt.datetime
    end_at: dt.datetime
    queued: bool
    #: The most of the budget in use during the placed window, this booking included.
    peak_cpu_cores: float
    peak_memory_mb: float
    reason: str


def _usage(bookings: list[Booking], at: dt.datetime) -> tuple[float, float]:
    live = [b for b in bookings if b.start_at <= at < b.end_at]
    return sum(b.cpu_cores for b in live), sum(b.memory_mb for b in live)


def _peak(bookings: list[Booking], start: dt.datetime, end: dt.datetime) -> tuple[float, float]:
    """The highest CPU and memory in use at any instant of [start, end) (usage only changes at a
    booking's start, so the window's start and the starts inside it are enough)."""
    usage = [
        _usage(bookings, t) for t in (start, *(b.start_at for b in bookings if start < b.start_at < end))
    ]
    return max(cpu for cpu, _ in usage), max(mem for _, mem in usage)


def place(
    budget: PoolBudget,
    existing: list[Booking],
    *,
    start_at: dt.datetime,
    duration: dt.timedelta,
    cpu_cores: float,
    memory_mb: float,
) -> Placement:
    """Where a booking of ``duration`` costing ``cpu_cores``/``memory_mb`` goes (see the module doc)."""
    if duration <= dt.timedelta(0):
        raise BookingRefused("the duration must be positive")
    if cpu_cores > budget.cpu_cores or memory_mb > budget.memory_mb:
        raise BookingRefused(
            f"this booking alone needs {cpu_cores:.2f} CPU cores and {memory_mb:.0f} MB; the shadow "
            f"pool has {budget.cpu_cores:.2f} cores and {budget.memory_mb:.0f} MB (lower the sample rate)"
        )
    live = [b for b in existing if b.state in ("booked", "queued")]
    candidates = [start_at, *sorted({b.end_at for b in live if b.end_at > start_at})]
    for begin in candidates:
        end = begin + duration
        cpu, mem = _peak(live, begin, end)
        if cpu + cpu_cores <= budget.cpu_cores + 1e-9 and mem + memory_mb <= budget.memory_mb + 1e-9:
            queued = begin > start_at
            reason = (
                f"the pool is full until {begin.isoformat()}: queued to start then"
                if queued
                else "fits the pool at the requested start"
            )
            return Placement(begin, end, queued, cpu + cpu_cores, mem + memory_mb, reason)
    raise AssertionError("unreachable: after the last booking ends the pool is empty")  # pragma: no cover


def calendar(
    bookings: list[Booking], budget: PoolBudget, since: dt.datetime, until: dt.datetime
) -> list[dict[str, Any]]:
    """The pool's load between ``since`` and ``until``: one segment per stretch of constant
    bookings, with the CPU and memory in use and their share of the budget (for the console)."""
    live = [b for b in bookings if b.state in ("booked", "queued") and b.overlaps(since, until)]
    edges = sorted({since, until, *(t for b in live for t in (b.start_at, b.end_at) if since < t < until)})
    out = []
    for lo, hi in itertools.pairwise(edges):
        cpu, mem = _usage(live, lo)
        ids = [b.booking_id for b in live if b.start_at <= lo < b.end_at]
        out.append(
            {
                "start": lo.isoformat(),
                "end": hi.isoformat(),
                "cpu_cores": round(cpu, 4),
                "memory_mb": round(mem, 1),
                "cpu_share": round(cpu / budget.cpu_cores, 4) if budget.cpu_cores else None,
                "memory_share": round(mem / budget.memory_mb, 4) if budget.memory_mb else None,
                "bookings": ids,
            }
        )
    return out


# -- measured inputs ------------------------------------------------------------------------------
def model_cost(bundle_dir: Path, latency_p50_ms: float) -> ModelCost:
    """A version's cost from its bundle: the measured single-row p50 latency and its model's size."""
    if latency_p50_ms <= 0:
        raise BookingRefused("the model's latency was not measured")
    size_mb = sum(p.stat().st_size for p in bundle_dir.rglob("*.onnx")) / 2**20
    return ModelCost(
        latency_ms=float(latency_p50_ms), memory_mb=SHADOW_WORKER_BASE_MB + MODEL_MEMORY_FACTOR * size_mb
    )


def measure_cost(model_name: str, version: str, *, tracking_uri: str | None = None) -> ModelCost:
    """Download the version's bundle and verify it as the scoring service would (which measures
    its single-row latency on this machine); its cost from that measurement."""
    import tempfile

    from fraudops.exceptions import FraudopsError, PermanentError
    from fraudops.registry import download_artifact_dir
    from fraudops.training.package import verify_artifact

    with tempfile.TemporaryDirectory(prefix="fraudops-booking-") as tmp:
        try:
            bundle = download_artifact_dir(model_name, version, tmp, tracking_uri=tracking_uri, verify=False)
        except FraudopsError:
            raise
        except Exception as err:  # MLflow's "no such version" and the like
            raise PermanentError(f"cannot fetch {model_name} v{version}: {err}") from err
        report = verify_artifact(bundle)
        return model_cost(bundle, report.latency_p50_ms)


def traffic_rate(warehouse: Warehouse, model_name: str, *, hours: float = 1.0) -> float:
    """Production events per second over the newest ``hours`` of served predictions (wall clock),
    else ``DEFAULT_EVENTS_PER_S``."""
    rows = warehouse.query(
        f"SELECT COUNT(DISTINCT transaction_id) AS n, MIN(served_at) AS lo, MAX(served_at) AS hi "
        f"FROM `{warehouse.table_id('predictions')}` WHERE model_name = @m AND mode = 'production' "
        "AND served_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL @s SECOND)",
        {"m": model_name, "s": int(hours * 3600)},
    )
    if not rows or not rows[0].get("n") or rows[0].get("lo") is None:
        return DEFAULT_EVENTS_PER_S
    from fraudops.release.progress import as_utc

    span = (as_utc(rows[0]["hi"]) - as_utc(rows[0]["lo"])).total_seconds()
    return float(rows[0]["n"]) / span if span >= 60 else DEFAULT_EVENTS_PER_S


def booking_id_for(booked_by: str, request_id: str | None) -> str:
    """The booking's id: derived from who asks and the request's id (so a retried request finds
    its booking), or random when the client sent no request id."""
    if not request_id:
        return uuid.uuid4().hex[:12]
    return hashlib.sha256(f"{booked_by}\x00{request_id}".encode()).hexdigest()[:12]


@contextmanager
def pool_lock(path: Path, timeout_s: float = 30.0) -> Iterator[None]:
    """Exclusive lock on the shadow pool's calendar (a lock file; released when the holder exits,
    however it exits). Raises ``ServiceError`` after ``timeout_s`` of waiting."""
    import fcntl

    from fraudops.exceptions import ServiceError

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ServiceError("shadow pool", f"its calendar is locked ({path}); try again") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def reserve(
    warehouse: Warehouse,
    budget: PoolBudget,
    *,
    booking_id: str,
    lock_path: Path,
    model_name: str,
    version: str,
    booked_by: str,
    start_at: dt.datetime,
    duration: dt.timedelta,
    sample_rate: float,
    cpu_cores: float,
    memory_mb: float,
    release_conf: str | None = None,
) -> tuple[Booking, Placement | None]:
    """Place and record a booking under the pool lock; idempotent by ``booking_id``.

    Returns the booking and its placement, or ``(existing, None)`` when ``booking_id`` is already
    booked (a retried request). Raises ``BookingRefused`` when it can never fit.
    """
    with pool_lock(lock_path):
        existing = find_booking(warehouse, booking_id)
        if existing is not None:
            return existing, None
        placement = place(
            budget,
            load_bookings(warehouse),
            start_at=start_at,
            duration=duration,
            cpu_cores=cpu_cores,
            memory_mb=memory_mb,
        )
        booking = new_booking(
            booking_id=booking_id,
            model_name=model_name,
            version=version,
            booked_by=booked_by,
            requested_start_at=start_at,
            placement=placement,
            sample_rate=sample_rate,
            cpu_cores=cpu_cores,
            memory_mb=memory_mb,
            release_conf=release_conf,
        )
        save_booking(warehouse, booking)
        crash_point("book:after_save")
    return booking, placement


def _live(warehouse: Warehouse, booking_id: str) -> Booking:
    """The booking, which holds capacity (booked or queued); ``BookingRefused`` otherwise."""
    booking = find_booking(warehouse, booking_id)
    if booking is None:
        raise BookingRefused(f"no booking {booking_id}")
    if booking.state not in ("booked", "queued"):
        raise BookingRefused(f"booking {booking_id} is {booking.state}")
    return booking


def resize(
    warehouse: Warehouse,
    budget: PoolBudget,
    *,
    booking_id: str,
    lock_path: Path,
    sample_rate: float,
    now: dt.datetime | None = None,
) -> Booking:
    """Change a booking's sample rate under the pool lock (a running challenger sampling more or
    less): its CPU cost scales with the rate. Refused (``BookingRefused``) when the other bookings
    leave no room for the new cost at some instant from now (or its start) to its end; a lower
    rate always fits. Setting the rate it has is a no-op (safe to retry)."""
    if not 0.0 < sample_rate <= 1.0:
        raise BookingRefused(f"a sample rate is in (0, 1], got {sample_rate}")
    with pool_lock(lock_path):
        booking = _live(warehouse, booking_id)
        if booking.sample_rate == sample_rate:
            return booking
        per_rate = booking.cpu_cores / booking.sample_rate if booking.sample_rate > 0 else 0.0
        cpu = per_rate * sample_rate
        start = max(now or dt.datetime.now(dt.UTC), booking.start_at)
        if cpu > booking.cpu_cores and start < booking.end_at:
            others = [
                b
                for b in load_bookings(warehouse)
                if b.booking_id != booking_id and b.state in ("booked", "queued")
            ]
            peak, _ = _peak(others, start, booking.end_at)
            if peak + cpu > budget.cpu_cores + 1e-9:
                raise BookingRefused(
                    f"at sample rate {sample_rate:g} this booking needs {cpu:.3f} CPU cores; with the "
                    f"other bookings ({peak:.3f} cores at their peak before {booking.end_at.isoformat()}) "
                    f"the shadow pool's {budget.cpu_cores:.2f} cores cannot hold it"
                )
        resized = replace(booking, sample_rate=float(sample_rate), cpu_cores=cpu)
        warehouse.execute(
            f"UPDATE `{warehouse.table_id('shadow_bookings')}` SET sample_rate = @rate, cpu_cores = @cpu "
            "WHERE booking_id = @id",
            {"rate": resized.sample_rate, "cpu": resized.cpu_cores, "id": booking_id},
        )
    return resized


def move(
    warehouse: Warehouse,
    budget: PoolBudget,
    *,
    booking_id: str,
    lock_path: Path,
    start_at: dt.datetime,
    duration: dt.timedelta | None = None,
    now: dt.datetime | None = None,
) -> tuple[Booking, Placement]:
    """Move a booking that has not started to ``start_at`` (and ``duration``, default its own),
    placed like a new one among the others under the pool lock (queued when the pool is full
    then). Raises ``BookingRefused`` for a booking that started, was cancelled or does not exist,
    or a start in the past. The same move again places it the same way (safe to retry); the
    caller then re-schedules its release run."""
    now = now or dt.datetime.now(dt.UTC)
    with pool_lock(lock_path):
        booking = _live(warehouse, booking_id)
        if booking.start_at <= now:
            raise BookingRefused(
                f"booking {booking_id} started at {booking.start_at.isoformat()}: its release is under "
                "way and cannot be moved (abort it, or change its sample rate)"
            )
        if start_at < now - dt.timedelta(minutes=5):
            raise BookingRefused("start_at is in the past")
        others = [b for b in load_bookings(warehouse) if b.booking_id != booking_id]
        placement = place(
            budget,
            others,
            start_at=max(start_at, now),
            duration=duration or (booking.end_at - booking.start_at),
            cpu_cores=booking.cpu_cores,
            memory_mb=booking.memory_mb,
        )
        moved = replace(
            booking,
            start_at=placement.start_at,
            end_at=placement.end_at,
            state="queued" if placement.queued else "booked",
            requested_start_at=start_at,
        )
        warehouse.execute(
            f"UPDATE `{warehouse.table_id('shadow_bookings')}` SET start_at = @s, end_at = @e, "
            "state = @state, requested_start_at = @r WHERE booking_id = @id",
            {"s": moved.start_at, "e": moved.end_at, "state": moved.state, "r": start_at, "id": booking_id},
        )
        crash_point("move:after_save")
    return moved, placement


def new_booking(
    *,
    booking_id: str | None = None,
    model_name: str,
    version: str,
    booked_by: str,
    requested_start_at: dt.datetime,
    placement: Placement,
    sample_rate: float,
    cpu_cores: float,
    memory_mb: float,
    now: dt.datetime | None = None,
    release_conf: str | None = None,
) -> Booking:
    booking_id = booking_id or uuid.uuid4().hex[:12]
    return Booking(
        booking_id=booking_id,
        model_name=model_name,
        version=str(version),
        booked_by=booked_by,
        start_at=placement.start_at,
        end_at=placement.end_at,
        sample_rate=float(sample_rate),
        cpu_cores=float(cpu_cores),
        memory_mb=float(memory_mb),
        state="queued" if placement.queued else "booked",
        requested_start_at=requested_start_at,
        dag_run_id=f"booking__{booking_id}",
        created_at=now or dt.datetime.now(dt.UTC),
        release_conf=release_conf,
    )


def load_bookings(warehouse: Warehouse, model_name: str | None = None) -> list[Booking]:
    where = "WHERE model_name = @m" if model_name else ""
    rows = warehouse.query(
        f"SELECT * FROM `{warehouse.table_id('shadow_bookings')}` {where} ORDER BY start_at",
        {"m": model_name} if model_name else None,
    )
    return [Booking.from_row(r) for r in rows]


def find_booking(warehouse: Warehouse, booking_id: str) -> Booking | None:
    rows = warehouse.query(
        f"SELECT * FROM `{warehouse.table_id('shadow_bookings')}` WHERE booking_id = @id",
        {"id": booking_id},
    )
    return Booking.from_row(rows[0]) if rows else None


def save_booking(warehouse: Warehouse, booking: Booking) -> None:
    warehouse.upsert("shadow_bookings", [booking.to_row()])


def cancel_booking(warehouse: Warehouse, booking_id: str) -> int:
    """Mark a booking ``cancelled`` (it frees its capacity); returns the rows changed (0: unknown
    or already cancelled)."""
    return warehouse.execute(
        f"UPDATE `{warehouse.table_id('shadow_bookings')}` SET state = 'cancelled' "
        "WHERE booking_id = @id AND state != 'cancelled'",
        {"id": booking_id},
    )
