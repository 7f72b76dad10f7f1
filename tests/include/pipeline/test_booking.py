"""Shadow-slot placement within the pool's budget (fraudops.pipeline.booking), pure."""

from __future__ import annotations

import dataclasses
import datetime as dt

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
