"""The release end-to-end world: real emulator, MLflow, a real scoring-service process, and
simulator traffic streaming into it, shared by the tests of this folder (module order matters
only for the traffic phases, which each test sets itself).

The world is small and fraud-heavy (6 000 cards, ~3 % fraud), with fast labels (most within hours of
event time) and the stream running event time at about one simulated day every ~25 s, so a
challenger collects a decidable sample in well under a minute. The policy overrides for that are in
``RELEASE_POLICY`` (test_release.py), each one explained.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass, field
from typing import Any

HISTORY_START = "2026-09-07"
#: 45 days of history: models train on the last TRAIN_DAYS, whose features (30-day windows at most)
#: have their full history, exactly like live features (else every 30-day feature "drifts").
HISTORY_DAYS = 45
TRAIN_DAYS = 15
STREAM_START = dt.date(2026, 10, 22)
SEED = 5
MODEL = "e2e-fraud"
#: Requests a second the simulator sends (open loop).
RATE = 120.0


def world() -> Any:
    from fraudops.simulate import SimulationConfig
    from fraudops.simulate.config import SCENARIOS, LabelDelayConfig

    return SimulationConfig(
        n_cards=6000,
        n_customers=5400,
        n_merchants=500,
        n_terminals=1200,
        auto_waves=False,
        label_delays=LabelDelayConfig(
            p_fast=0.85,
            fast_median_hours=3.0,
            chargeback_median_days=1.5,
            p_never=dict.fromkeys(SCENARIOS, 0.0),
        ),
    )


def natural_speed(cfg: Any, rate: float, volume: float = 1.0) -> float:
    """Event seconds per wall second so that ``rate`` req/s carry ``volume`` × the world's daily volume."""
    per_day = cfg.n_cards * cfg.tx_per_card_per_day * cfg.volume_scale * volume
    return float(rate * 86_400.0 / per_day)


@dataclass
class Traffic:
    """Simulator traffic into the scoring service, restartable with another volume."""

    url: str
    warehouse: Any
    cfg: Any
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    reports: list[Any] = field(default_factory=list)
    next_day: dt.date = STREAM_START

    def start(self, volume: float = 1.0) -> None:
        """Stream from the next simulated day with ``volume`` × the usual daily volume."""
        from fraudops.simulate.stream import stream

        self.stop()
        self._stop = threading.Event()
        speed = natural_speed(self.cfg, RATE, volume)
        first = self.next_day

        def run() -> None:
            report = stream(
                rate=RATE,
                speed=speed,
                url=self.url,
                seed=SEED,
                start=first,
                config=self.cfg,
                warehouse=self.warehouse,
                concurrency=16,
                flush_interval_s=1.0,
                stop_event=self._stop,
            )
            self.reports.append(report)

        self._thread = threading.Thread(target=run, name="e2e-stream", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(120)
        self._thread = None
        if self.reports and self.reports[-1].event_end is not None:
            self.next_day = self.reports[-1].event_end.date() + dt.timedelta(days=1)


def wait_until(predicate: Any, timeout_s: float, what: str, every_s: float = 0.25) -> float:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(every_s)
    return time.monotonic() - t0
