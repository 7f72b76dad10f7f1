"""A small, fast subset of ``make bench-gate`` (demo profile) with its targets asserted.

Runs the platform's own decision code on planted scenarios (``fraudops.release.scenarios``), 8
seeds per row on two worker processes. The full benchmark (50 seeds, both profiles) is
``make bench-gate``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from fraudops.release.scenarios import evaluate, run_seed

SEEDS = list(range(1, 9))
BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_gate.py"

# The demo profile's probation row misses its target: 37/50 seeds roll back (target ≥ 90 %),
# 6/8 with seeds 1-8. The probation sample is sized for a detectable drop of 0.13 at power 0.9, but
# at maturity only label_coverage (90 %) of the frauds are labeled (the rest count as genuine),
# which leaves fewer frauds and shrinks the observed ΔAP; true ΔAP (−0.131) is at the planned drop.

ROWS = [
    "A/A exact copy",
    "better ranker, other calibration + own threshold",
    "worse ranker",
    "crashing",
    "constant scores",
    "too few mature labels",
    "probation: degraded after promotion",
]


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gate", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo() -> tuple[Any, dict[str, Any]]:
    bench = _load_bench()
    profile = bench.profiles()["demo"]
    return profile, {s.name: s for s in bench.scenarios(profile)}


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(max_workers=2) as executor:
        yield executor


@pytest.mark.slow
@pytest.mark.parametrize("row", ROWS)
def test_demo_row_meets_its_target(
    row: str, demo: tuple[Any, dict[str, Any]], pool: ProcessPoolExecutor
) -> None:
    profile, scenarios = demo
    matches = [s for name, s in scenarios.items() if name.startswith(row)]
    assert len(matches) == 1, (row, list(scenarios))
    scenario = matches[0]

    def runner(jobs: list[tuple[Any, Any, int]]) -> list[Any]:
        return list(pool.map(run_seed, *zip(*jobs, strict=True)))

    result = evaluate(scenario, profile, SEEDS, runner)
    assert result.seeds == len(SEEDS)
    assert result.met, (
        f"{row}: {result.shares}, target {result.target_text()}, observed {result.share_right:.0%}; "
        f"{result.examples}"
    )
