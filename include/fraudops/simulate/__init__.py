"""Transaction simulator: realistic card traffic with fraud scenarios, attack waves and delayed labels.

Public API (the feature store, training and the drift demo build on it):

* ``generate(start, days, seed, config) -> SimulationResult``: frames in memory, deterministic by seed.
* ``backfill(warehouse, start, days, seed, config) -> BackfillReport``: day-chunked, idempotent writes.
* ``stream(...) -> StreamReport``: open-loop traffic to the scoring API in accelerated event time.
* ``SimulationConfig`` and ``Wave`` describe the world and let callers inject attack waves.
"""

from __future__ import annotations

from fraudops.simulate.backfill import BackfillReport, backfill
from fraudops.simulate.config import (
    CHANNELS,
    DEVICE_TYPES,
    REGIONS,
    SCENARIOS,
    LabelDelayConfig,
    ScenarioRates,
    SimulationConfig,
    Wave,
)
from fraudops.simulate.generator import SimulationResult, generate, wave_schedule
from fraudops.simulate.stream import StreamReport, stream

__all__ = [
    "CHANNELS",
    "DEVICE_TYPES",
    "REGIONS",
    "SCENARIOS",
    "BackfillReport",
    "LabelDelayConfig",
    "ScenarioRates",
    "SimulationConfig",
    "SimulationResult",
    "StreamReport",
    "Wave",
    "backfill",
    "generate",
    "stream",
    "wave_schedule",
]
