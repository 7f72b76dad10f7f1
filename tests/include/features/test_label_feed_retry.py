"""The label feed's side effect, killed and retried (issue #17/#18 "killed right after, then
retried"): the shared Redis store gets fraud labels in chunks; a feed SIGKILLed after its first
chunk and then run again three times leaves exactly the state of one clean run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudops.features.online import RedisBackend

pytestmark = pytest.mark.retry_safety

N_LABELS = 12_000  # three chunks of 5,000 (the last one partial)


def _labels(seed: int = 5) -> list[tuple[str, int, int, str, str]]:
    rng = np.random.default_rng(seed)
    t0 = 1_780_000_000_000_000
    event = t0 + np.sort(rng.integers(0, 20 * 86_400_000_000, N_LABELS))
    delay = rng.integers(3_600_000_000, 5 * 86_400_000_000, N_LABELS)
    return [
        (f"tx-{i}", int(e), int(e + d), f"t-{rng.integers(0, 400)}", f"m-{rng.integers(0, 60)}")
        for i, (e, d) in enumerate(zip(event, delay, strict=True))
    ]


def _state(backend: RedisBackend) -> dict[str, Any]:
    """Every key of the prefix with its members and scores (TTLs aside)."""
    out: dict[str, Any] = {}
    for key in backend.r.scan_iter(f"{backend.prefix}:*", count=1000):
        name = key.split(":", 2)[2]
        out[name] = sorted(backend.r.zrange(key, 0, -1, withscores=True))
    return out


def _killed_feed(redis_url: str, prefix: str, labels_file: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import json, sys\n"
        "from fraudops.features.online import RedisBackend\n"
        "rows = [tuple(r) for r in json.load(open(sys.argv[3]))]\n"
        "RedisBackend(sys.argv[1], prefix=sys.argv[2]).add_labels(rows)\n"
    )
    env = {**os.environ, "FRAUDOPS_CRASH_AT": "labels:after_chunk"}
    return subprocess.run(
        [sys.executable, "-c", code, redis_url, prefix, str(labels_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_label_feed_killed_between_chunks_and_retried_ends_like_one_clean_run(
    redis_url: str, tmp_path: Path
) -> None:
    labels = _labels()
    clean = RedisBackend(redis_url, prefix="test:labels-clean")
    crashed = RedisBackend(redis_url, prefix="test:labels-crashed")
    try:
        for b in (clean, crashed):
            b.clear()
        clean.add_labels(labels)
        want = _state(clean)
        assert sum(len(v) for v in want.values()) == 2 * N_LABELS  # terminal and merchant entries

        path = tmp_path / "labels.json"
        path.write_text(json.dumps(labels))
        proc = _killed_feed(redis_url, crashed.prefix, path)
        assert proc.returncode == -9, proc.stderr  # SIGKILLed at the crash point
        partial = _state(crashed)
        assert 0 < sum(len(v) for v in partial.values()) < 2 * N_LABELS  # one chunk landed

        for _ in range(3):  # the service restarts and feeds the same window again
            crashed.add_labels(labels)
            assert _state(crashed) == want
    finally:
        for b in (clean, crashed):
            b.clear()
            b.close()
