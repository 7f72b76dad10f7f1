"""The shadow pool's pipe transport and the prediction logger's lifetime, with real processes.

* A full pipe sheds (``queue_full``) instead of blocking the caller, and the shed is counted.
* A frame longer than PIPE_BUF (written in parts) arrives whole and in order.
* A prediction logger whose server is SIGKILLed writes what it holds and exits (no orphan).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from serving_helpers import tx

from fraudops.config import load_settings
from fraudops.features.spec import FeatureSpec
from fraudops.serving.features import FeatureRouter
from fraudops.serving.metrics import ServingMetrics
from fraudops.serving.models import ModelSlot
from fraudops.serving.options import ServingOptions
from fraudops.serving.schema import parse_score_request
from fraudops.serving.shadow import ShadowPool

pytestmark = pytest.mark.integration


def _slot(bundle: Path, alias: str) -> ModelSlot:
    manifest = json.loads((bundle / "manifest.json").read_text())
    spec = FeatureSpec.from_dict(json.loads((bundle / "feature_spec.json").read_text()))
    return ModelSlot("m", "7", alias, None, spec, float(manifest["decision_threshold"]), 50.0, bundle)


def _wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_full_pipe_sheds_and_long_frames_arrive_whole(bundles: dict[str, Path], tmp_path: Path) -> None:
    options = ServingOptions(
        settings=load_settings(),
        work_dir=tmp_path,
        shadow_queue_size=64,  # a 64 KiB pipe per worker
        shadow_hang_timeout_s=120.0,  # keep the stuck worker stuck for the whole test
    )
    results: list[dict[str, Any]] = []
    pool = ShadowPool(options, ServingMetrics(), results.append)
    pool.faults["challenger-stuck"] = "hang"
    router = FeatureRouter(warm_days=0)
    slots = {a: _slot(bundles["b"], a) for a in ("challenger-ok", "challenger-stuck")}
    router.ensure([s.spec for s in slots.values()])
    pool.start()
    n = 200
    try:
        pool.sync(dict(slots), keep=set(slots))
        _wait(lambda: all(w["state"] == "running" for w in pool.status().values()), 120, "workers up")
        sent, long = [], set()
        for i in range(n):
            t = parse_score_request(tx(i)).to_transaction()
            if i % 20 == 5:  # a frame longer than the pipe itself: written in parts
                t["context"] = "z" * 100_000
                long.add(f"r{i}")
            union = router.compute(t)
            pool.mirror(f"r{i}", t, union, router)
            sent.append((f"r{i}", router.slice(union, slots["challenger-ok"].spec_id)))
            time.sleep(0.01)
        for _ in range(50):  # small frames after the last long one push its tail through
            t = parse_score_request(tx(n)).to_transaction()
            pool.mirror("r-tail", t, router.compute(t), router)
            time.sleep(0.02)

        def ok_results() -> list[dict[str, Any]]:
            return [r for r in results if r["alias"] == "challenger-ok" and r["request_id"] != "r-tail"]

        _wait(lambda: len(ok_results()) >= n, 60, "every event answered or shed")
        status = pool.status()
    finally:
        pool.stop()

    ok = ok_results()
    assert sorted(r["request_id"] for r in ok) == sorted(rid for rid, _ in sent)  # each once
    delivered = [r for r in ok if r["error"] is None]
    order = [rid for rid, _ in sent]
    assert [r["request_id"] for r in delivered] == [
        x for x in order if x in {r["request_id"] for r in delivered}
    ]
    vectors = dict(sent)
    assert all(r["features"] == vectors[r["request_id"]] and 0.0 <= r["score"] <= 1.0 for r in delivered)
    assert long & {r["request_id"] for r in delivered}, "no long frame arrived whole"
    assert all(r["error"] == "shed:queue_full" for r in ok if r["error"] is not None)
    assert status["challenger-ok"]["restarts"] == 0  # no torn frame ever reached the worker
    stuck = [r for r in results if r["alias"] == "challenger-stuck"]
    shed = [r for r in stuck if r["error"] == "shed:queue_full"]
    assert shed and all(r["score"] is None for r in shed)  # shed, counted, logged: never blocked
    assert status["challenger-stuck"]["shed"] == len(shed)


KILLED_SERVER = r"""
import datetime as dt, os, signal, sys, time
from pathlib import Path
from fraudops.config import WarehouseConfig
from fraudops.serving.predlog import PredictionLog
project, dataset, endpoint, spool, n = sys.argv[1:6]
log = PredictionLog(WarehouseConfig(project=project, dataset=dataset, endpoint=endpoint), Path(spool),
                    batch_size=10_000, flush_interval_s=60.0).start()
for i in range(int(n)):
    log.write({"transaction_id": f"k-{i}", "model_name": "m", "model_version": "1", "mode": "production",
               "score": 0.1, "decision": "approve", "latency_ms": 0.2, "features": "[1.0]",
               "served_at": dt.datetime(2026, 3, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i)})
time.sleep(1.0)  # the batches reach the logger process (which holds them: flush interval 60 s)
print(log.proc.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_logger_of_a_killed_server_writes_what_it_holds_and_exits(warehouse: Any, tmp_path: Path) -> None:
    cfg = warehouse.cfg
    out = subprocess.run(
        [sys.executable, "-c", KILLED_SERVER, cfg.project, cfg.dataset, cfg.endpoint, str(tmp_path), "300"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == -signal.SIGKILL, out.stderr
    pid = int(out.stdout.split()[0])

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie reparented to a reaper that is not us counts as gone too
        return "zombie" in Path(f"/proc/{pid}/status").read_text().lower()

    _wait(gone, 60, "the orphaned logger to exit")
    assert warehouse.count("predictions") == 300
