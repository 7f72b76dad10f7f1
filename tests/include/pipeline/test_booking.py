"""Shadow-slot placement within the pool's budget (fraudops.pipeline.booking), pure; and recording
bookings under the pool lock, retried after a kill and made at once (real emulator)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import subprocess
from pathlib import Path

import pytest

from fraudops.pipeline.booking import (
    Booking,
    BookingRefused,
    ModelCost,
    Placement,
    PoolBudget,
    calendar,
    new_booking,
    place,
)

T0 = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
POOL = PoolBudget(cpu_cores=1.0, memory_mb=1000.0)


def _booked(start: dt.datetime, hours: float, cpu: float, mem: float, state: str = "booked") -> Booking:
    placement = Placement(start, start + hours * H, state == "queued", cpu, mem, "")
    booking = new_booking(
        model_name="m",
        version="7",
        booked_by="dana",
        requested_start_at=start,
        placement=placement,
        sample_rate=0.1,
        cpu_cores=cpu,
        memory_mb=mem,
    )
    return dataclasses.replace(booking, state=state)


def test_cost_is_traffic_times_sample_times_latency() -> None:
    cost = ModelCost(latency_ms=0.5, memory_mb=150.0)
    assert cost.cpu_cores(events_per_s=200.0, sample_rate=0.1) == pytest.approx(0.01)
    assert cost.cpu_cores(events_per_s=10_000.0, sample_rate=1.0) == pytest.approx(5.0)


def test_an_empty_pool_takes_a_booking_at_its_start() -> None:
    got = place(POOL, [], start_at=T0, duration=2 * H, cpu_cores=0.4, memory_mb=300)
    assert (got.start_at, got.end_at, got.queued) == (T0, T0 + 2 * H, False)
    assert (got.peak_cpu_cores, got.peak_memory_mb) == (0.4, 300)


def test_a_full_pool_queues_the_booking_to_the_first_instant_with_room() -> None:
    existing = [_booked(T0, 3, 0.7, 200), _booked(T0 + H, 1, 0.2, 600)]
    # CPU: 0.7 + 0.5 > 1 until the first booking ends at T0 + 3 h.
    got = place(POOL, existing, start_at=T0 + 0.5 * H, duration=H, cpu_cores=0.5, memory_mb=100)
    assert got.queued and got.start_at == T0 + 3 * H, got
    assert "queued to start then" in got.reason
    # Memory binds: 200 + 600 + 300 > 1000 while both run (T0+1h .. T0+2h); a 30-minute booking
    # at T0 fits before the second one starts, a 2-hour one does not: it waits until T0 + 2 h.
    assert not place(POOL, existing, start_at=T0, duration=0.5 * H, cpu_cores=0.1, memory_mb=300).queued
    late = place(POOL, existing, start_at=T0, duration=2 * H, cpu_cores=0.1, memory_mb=300)
    assert late.queued and late.start_at == T0 + 2 * H, late


def test_a_booking_starting_inside_another_is_checked_at_every_change() -> None:
    """The window's peak counts bookings that start inside it, not only those live at its start."""
    existing = [_booked(T0 + H, 1, 0.8, 100)]
    got = place(POOL, existing, start_at=T0, duration=3 * H, cpu_cores=0.3, memory_mb=100)
    assert got.queued and got.start_at == T0 + 2 * H


def test_cancelled_bookings_take_no_capacity() -> None:
    gone = _booked(T0, 5, 1.0, 1000, state="cancelled")
    assert not place(POOL, [gone], start_at=T0, duration=H, cpu_cores=1.0, memory_mb=1000).queued


@pytest.mark.parametrize(
    ("cpu", "mem", "duration", "message"),
    [
        (1.5, 100, H, "needs 1.50 CPU cores"),
        (0.1, 1200, H, "1200 MB"),
        (0.1, 100, dt.timedelta(0), "duration must be positive"),
    ],
)
def test_impossible_bookings_are_refused_with_the_numbers(
    cpu: float, mem: float, duration: dt.timedelta, message: str
) -> None:
    with pytest.raises(BookingRefused, match=message):
        place(POOL, [], start_at=T0, duration=duration, cpu_cores=cpu, memory_mb=mem)


def test_the_calendar_shows_each_stretch_with_its_load() -> None:
    a, b = _booked(T0, 2, 0.5, 200), _booked(T0 + H, 2, 0.25, 300)
    segments = calendar([a, b], POOL, T0 - H, T0 + 4 * H)
    loads = [(s["start"], s["cpu_cores"], s["memory_mb"], len(s["bookings"])) for s in segments]
    assert loads == [
        ((T0 - H).isoformat(), 0.0, 0.0, 0),
        (T0.isoformat(), 0.5, 200.0, 1),
        ((T0 + H).isoformat(), 0.75, 500.0, 2),
        ((T0 + 2 * H).isoformat(), 0.25, 300.0, 1),
        ((T0 + 3 * H).isoformat(), 0.0, 0.0, 0),
    ]
    assert segments[2]["cpu_share"] == 0.75 and segments[2]["memory_share"] == 0.5


def test_a_booking_round_trips_through_its_row() -> None:
    b = _booked(T0, 1, 0.1, 120)
    assert Booking.from_row(b.to_row()) == b
    assert b.dag_run_id == f"booking__{b.booking_id}" and b.state == "booked"


# -- recording a booking: retried and concurrent requests (real emulator) -------------------------
#: A child process reserving one booking: ``python -c CHILD '<json>'`` (the warehouse config, the
#: lock file and the booking), printing the booking id and whether it was placed now.
CHILD = """
import datetime as dt, json, sys
from pathlib import Path
from fraudops.config import WarehouseConfig
from fraudops.pipeline.booking import PoolBudget, reserve
from fraudops.warehouse import Warehouse
job = json.loads(sys.argv[1])
wh = Warehouse(WarehouseConfig(**job["warehouse"]))
booking, placement = reserve(
    wh, PoolBudget(cpu_cores=1.0, memory_mb=1000.0), booking_id=job["id"], lock_path=Path(job["lock"]),
    model_name="m", version="7", booked_by="dana", start_at=dt.datetime.fromisoformat(job["start"]),
    duration=dt.timedelta(hours=1), sample_rate=0.1, cpu_cores=0.1, memory_mb=600.0,
)
out = {"id": booking.booking_id, "new": placement is not None, "start": booking.start_at.isoformat()}
print(json.dumps(out))
"""


def _reserve_in_child(
    wh: object, lock: str, booking_id: str, crash_at: str = ""
) -> subprocess.CompletedProcess[str]:
    import json
    import os
    import sys

    job = {
        "warehouse": dataclasses.asdict(wh.cfg),  # type: ignore[attr-defined]
        "lock": lock,
        "id": booking_id,
        "start": (T0 + 24 * H).isoformat(),
    }
    env = {**os.environ, "FRAUDOPS_CRASH_AT": crash_at} if crash_at else dict(os.environ)
    return subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(job)], env=env, capture_output=True, text=True, timeout=180
    )


@pytest.mark.retry_safety
def test_a_booking_killed_after_it_was_recorded_is_found_by_its_retry(
    warehouse: object, tmp_path: Path
) -> None:
    """Killed right after the row was written (before the release run was triggered): the retry
    with the same request id gets that booking back (the console then triggers its run, which
    Airflow takes once), and the pool holds it once."""
    from fraudops.pipeline.booking import booking_id_for, load_bookings

    lock = str(tmp_path / "pool.lock")
    booking_id = booking_id_for("dana", "form-submit-1")
    assert booking_id == booking_id_for("dana", "form-submit-1") != booking_id_for("eli", "form-submit-1")
    killed = _reserve_in_child(warehouse, lock, booking_id, crash_at="book:after_save")
    assert killed.returncode == -9, killed.stderr[-2000:]
    for _ in range(2):
        again = _reserve_in_child(warehouse, lock, booking_id)
        assert again.returncode == 0, again.stderr[-2000:]
        assert '"new": false' in again.stdout and booking_id in again.stdout, again.stdout
    rows = load_bookings(warehouse)  # type: ignore[arg-type]
    assert [b.booking_id for b in rows] == [booking_id]
    # The lock died with the killed process: another booking goes through, queued behind it.
    other = _reserve_in_child(warehouse, lock, booking_id_for("dana", "form-submit-2"))
    assert '"new": true' in other.stdout, other.stderr[-2000:]
    second = [b for b in load_bookings(warehouse) if b.booking_id != booking_id]  # type: ignore[arg-type]
    assert second[0].state == "queued" and second[0].start_at == rows[0].end_at


@pytest.mark.retry_safety
def test_bookings_made_at_once_never_share_the_last_room(warehouse: object, tmp_path: Path) -> None:
    """Four requests at the same instant for a pool with room for one: each is placed after the
    others it saw, so no two overlap (without the lock, all four read an empty calendar)."""
    from concurrent.futures import ThreadPoolExecutor

    from fraudops.pipeline.booking import load_bookings

    lock = str(tmp_path / "pool.lock")
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda i: _reserve_in_child(warehouse, lock, f"at-once-{i}"), range(4)))
    assert all(r.returncode == 0 for r in runs), [r.stderr[-1500:] for r in runs]
    rows = sorted(load_bookings(warehouse), key=lambda b: b.start_at)  # type: ignore[arg-type]
    assert len(rows) == 4
    for earlier, later in itertools.pairwise(rows):
        assert later.start_at >= earlier.end_at, rows
    assert [b.state for b in rows].count("booked") == 1


def test_the_pool_lock_is_exclusive_and_times_out_with_a_reason(tmp_path: Path) -> None:
    from fraudops.exceptions import ServiceError
    from fraudops.pipeline.booking import pool_lock

    lock = tmp_path / "run" / "pool.lock"
    with (
        pool_lock(lock),
        pytest.raises(ServiceError, match="calendar is locked"),
        pool_lock(lock, timeout_s=0.2),
    ):
        pass
    with pool_lock(lock, timeout_s=0.2):  # released on exit
        pass


def test_a_running_challengers_rate_is_recosted_and_refused_when_the_pool_cannot_hold_it(
    warehouse: object, tmp_path: Path
) -> None:
    """Resizing (a running challenger sampling more or less): its CPU cost scales with the rate;
    more than the pool can hold next to the other bookings is refused and changes nothing; less
    always fits; the same rate again is a no-op; a cancelled booking cannot be resized."""
    from fraudops.pipeline.booking import cancel_booking, find_booking, resize, save_booking

    lock = tmp_path / "pool.lock"
    a, b = _booked(T0, 2, 0.3, 100), _booked(T0 + 0.5 * H, 2, 0.5, 100)
    for booking in (a, b):
        save_booking(warehouse, booking)  # type: ignore[arg-type]

    def rate(x: float) -> Booking:
        return resize(warehouse, POOL, booking_id=a.booking_id, lock_path=lock, sample_rate=x, now=T0 - H)  # type: ignore[arg-type]

    up = rate(0.15)
    assert up.sample_rate == 0.15 and up.cpu_cores == pytest.approx(0.45), up
    with pytest.raises(BookingRefused, match="cannot hold it"):  # 0.6 + 0.5 > 1.0 where they overlap
        rate(0.2)
    assert find_booking(warehouse, a.booking_id) == up  # type: ignore[arg-type]
    down = rate(0.05)
    assert down.cpu_cores == pytest.approx(0.15) and rate(0.05) == down
    # After b has ended, a may take the whole pool (a "now" past b's end leaves only a's tail).
    late = resize(
        warehouse,  # type: ignore[arg-type]
        POOL,
        booking_id=a.booking_id,
        lock_path=lock,
        sample_rate=0.3,
        now=T0 + 2.75 * H,
    )
    assert late.cpu_cores == pytest.approx(0.9)
    with pytest.raises(BookingRefused, match="in \\(0, 1\\]"):
        rate(0.0)
    cancel_booking(warehouse, b.booking_id)  # type: ignore[arg-type]
    with pytest.raises(BookingRefused, match="is cancelled"):
        resize(warehouse, POOL, booking_id=b.booking_id, lock_path=lock, sample_rate=0.2)  # type: ignore[arg-type]
    with pytest.raises(BookingRefused, match="no booking"):
        resize(warehouse, POOL, booking_id="nope", lock_path=lock, sample_rate=0.2)  # type: ignore[arg-type]


#: A child process moving one booking (``python -c MOVE_CHILD '<json>'``).
MOVE_CHILD = """
import datetime as dt, json, sys
from pathlib import Path
from fraudops.config import WarehouseConfig
from fraudops.pipeline.booking import PoolBudget, move
from fraudops.warehouse import Warehouse
job = json.loads(sys.argv[1])
moved, placement = move(
    Warehouse(WarehouseConfig(**job["warehouse"])), PoolBudget(cpu_cores=1.0, memory_mb=1000.0),
    booking_id=job["id"], lock_path=Path(job["lock"]), start_at=dt.datetime.fromisoformat(job["start"]),
    now=dt.datetime.fromisoformat(job["now"]),
)
print(json.dumps({"start": moved.start_at.isoformat(), "state": moved.state}))
"""


@pytest.mark.retry_safety
def test_a_moved_booking_is_placed_again_and_its_move_killed_after_saving_is_retried_the_same(
    warehouse: object, tmp_path: Path
) -> None:
    """Moving a booking that has not started: placed again among the others (queued when the pool
    is full at the new start), its length and cost kept; killed right after the row was saved and
    retried, it ends where one clean move puts it; a started, cancelled or unknown booking, or a
    start in the past, is refused."""
    import json
    import os
    import sys

    from fraudops.pipeline.booking import cancel_booking, find_booking, move, save_booking

    lock = tmp_path / "pool.lock"
    a, b = _booked(T0 + 10 * H, 2, 0.3, 600), _booked(T0 + 20 * H, 2, 0.3, 600)
    for booking in (a, b):
        save_booking(warehouse, booking)  # type: ignore[arg-type]
    now = T0
    moved, placement = move(  # into b's slot: the memory does not fit, queued to b's end
        warehouse,  # type: ignore[arg-type]
        POOL,
        booking_id=a.booking_id,
        lock_path=lock,
        start_at=T0 + 21 * H,
        now=now,
    )
    assert placement.queued and moved.start_at == b.end_at and moved.state == "queued", moved
    assert moved.end_at - moved.start_at == 2 * H and moved.requested_start_at == T0 + 21 * H
    assert find_booking(warehouse, a.booking_id) == moved  # type: ignore[arg-type]

    job = {
        "warehouse": dataclasses.asdict(warehouse.cfg),  # type: ignore[attr-defined]
        "lock": str(lock),
        "id": a.booking_id,
        "start": (T0 + 5 * H).isoformat(),
        "now": now.isoformat(),
    }

    def run(crash: str = "") -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "FRAUDOPS_CRASH_AT": crash} if crash else dict(os.environ)
        return subprocess.run(
            [sys.executable, "-c", MOVE_CHILD, json.dumps(job)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    killed = run("move:after_save")
    assert killed.returncode == -9, killed.stderr[-2000:]
    retried = [run(), run()]
    assert all(r.returncode == 0 for r in retried), [r.stderr[-2000:] for r in retried]
    docs = [json.loads(r.stdout) for r in retried]
    assert docs[0] == docs[1] == {"start": (T0 + 5 * H).isoformat(), "state": "booked"}, docs
    after = find_booking(warehouse, a.booking_id)  # type: ignore[arg-type]
    assert after is not None and after.start_at == T0 + 5 * H and after.cpu_cores == a.cpu_cores

    def refused(booking_id: str, start: dt.datetime, at: dt.datetime, why: str) -> None:
        with pytest.raises(BookingRefused, match=why):
            move(warehouse, POOL, booking_id=booking_id, lock_path=lock, start_at=start, now=at)  # type: ignore[arg-type]

    refused(a.booking_id, T0 + 30 * H, T0 + 6 * H, "under way and cannot be moved")
    refused(b.booking_id, T0 - 2 * H, T0, "in the past")
    cancel_booking(warehouse, b.booking_id)  # type: ignore[arg-type]
    refused(b.booking_id, T0 + 30 * H, T0, "is cancelled")
    refused("nope", T0 + 30 * H, T0, "no booking")
