"""Per-challenger sample rates without services: which registry tags are rates, and which
challengers an event's draw is offered to (nested samples, each at its own rate)."""

from __future__ import annotations

import random
from pathlib import Path

from fraudops.registry import SAMPLE_RATE_TAG_PREFIX, sample_rates
from fraudops.serving.metrics import ServingMetrics
from fraudops.serving.options import ServingOptions
from fraudops.serving.shadow import ShadowPool, _Worker


def test_only_rates_in_0_1_are_read_from_the_tags() -> None:
    tags = {
        SAMPLE_RATE_TAG_PREFIX + "challenger-7": "0.25",
        SAMPLE_RATE_TAG_PREFIX + "challenger-8": "1",
        SAMPLE_RATE_TAG_PREFIX + "challenger-9": "nan",
        SAMPLE_RATE_TAG_PREFIX + "challenger-10": "2",
        SAMPLE_RATE_TAG_PREFIX + "challenger-11": "0",
        SAMPLE_RATE_TAG_PREFIX + "challenger-12": "-0.1",
        SAMPLE_RATE_TAG_PREFIX + "challenger-13": "a lot",
        "fraudops.other": "0.5",
    }
    assert sample_rates(tags) == {"challenger-7": 0.25, "challenger-8": 1.0}
    assert sample_rates(None) == {}


def test_each_challenger_gets_its_own_share_and_lower_rates_nest_in_higher(tmp_path: Path) -> None:
    pool = ShadowPool(ServingOptions(shadow_sample_rate=0.1, work_dir=tmp_path), ServingMetrics(), print)
    workers = {
        alias: _Worker(alias, alias[-1], tmp_path, "fs", 0.5)
        for alias in ("challenger-a", "challenger-b", "challenger-c")
    }
    pool._workers = dict(workers)
    pool.set_rates({"challenger-a": 0.5, "challenger-b": 0.05})  # c keeps the default, 0.1
    pool._snapshot = tuple(pool._workers.values())
    assert [w.sample_rate for w in workers.values()] == [0.5, 0.05, 0.1]
    rng, n = random.Random(7), 40_000
    offered = [{w.alias for w in pool.select(rng.random())} for _ in range(n)]
    for alias, rate in (("challenger-a", 0.5), ("challenger-b", 0.05), ("challenger-c", 0.1)):
        share = sum(alias in o for o in offered) / n
        assert abs(share - rate) < 5 * (rate * (1 - rate) / n) ** 0.5, (alias, share)
    assert all("challenger-a" in o for o in offered if "challenger-b" in o or "challenger-c" in o)
    assert all("challenger-c" in o for o in offered if "challenger-b" in o)
    pool.set_rates({})  # the tags removed: every challenger back at the default
    assert [w.sample_rate for w in workers.values()] == [0.1, 0.1, 0.1]
