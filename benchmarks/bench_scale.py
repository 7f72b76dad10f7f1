"""Scale-profile benchmark (issue #20): throughput and p99 of 1, 2 and 4 scoring replicas behind
HAProxy next to the single process of the local profile, shadow workers 1, 2 and 4 on a challenger
stream, and what the shared online state (Redis) costs per request. One run, side by side.

Starts its own BigQuery emulator, MLflow, Redis, replicas, HAProxy and shadow workers on free ports
in a temp folder (the stack code ``fraudops up --profile scale`` runs), and stops them all.

* Replicas: ``wrk`` closed loop, 16 connections, ``--duration`` s, mirroring off; through HAProxy
  (Redis state) for 1/2/4 replicas, and the local profile's single process (embedded state) direct.
* Shadow workers: the challenger samples every event. (a) At a steady ``--shadow-rate`` ev/s for
  ``--duration`` s: how far shadow scoring trails production (p50/p99 from XADD to the spooled row).
  (b) Drain: ``--backlog`` events queued with no worker running, then M workers started: events/s.
* Redis round trip: the online store's per-event update-and-vector, in this process, for the same
  4,000 events with the embedded backend and with Redis (one pipelined round trip per event).

    .venv/bin/python benchmarks/bench_scale.py [--duration 10] [--backlog 6000] [--shadow-rate 300]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "include" / "serving"))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))


def _rss_tree_mb(pid: int) -> float:
    import psutil

    try:
        p = psutil.Process(pid)
        return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**20
    except psutil.Error:
        return float("nan")


def _child_rss(settings: Any, name: str) -> float:
    from fraudops.stack.scale import child_pid_file

    return _rss_tree_mb(int(json.loads(child_pid_file(settings, name).read_text())["pid"]))


def trailing_delay(wh: Any, version: str, since: Any, until: Any) -> tuple[float, float, int]:
    """p50, p99 (ms) of how far each shadow row trails its production row (``served_at`` of both:
    replica and worker clocks are this machine's), over production rows served in [since, until]."""
    frame = wh.query_df(
        f"SELECT TIMESTAMP_DIFF(s.served_at, p.served_at, MICROSECOND) AS us FROM "
        f"`{wh.table_id('predictions')}` p JOIN `{wh.table_id('predictions')}` s "
        "ON s.transaction_id = p.transaction_id AND s.mode = 'shadow' AND s.model_version = @v "
        "WHERE p.mode = 'production' AND p.served_at BETWEEN @a AND @b",
        {"v": version, "a": since, "b": until},
    )
    us = sorted(float(x) for x in frame["us"])
    if not us:
        return float("nan"), float("nan"), 0
    return us[len(us) // 2] / 1e3, us[min(len(us) - 1, int(len(us) * 0.99))] / 1e3, len(us)


def redis_cost(redis_url: str, n: int = 4000) -> dict[str, float]:
    """Per-event update-and-vector time (µs): embedded vs Redis, same events, same spec."""
    from serving_helpers import tx

    from fraudops.features.online import EmbeddedBackend, OnlineFeatureStore, RedisBackend
    from fraudops.serving.schema import ScoreRequest

    events = [ScoreRequest.model_validate(tx(i, amount=10.0 + i % 500)).to_transaction() for i in range(n)]
    out = {}
    for label, backend in (
        ("embedded", EmbeddedBackend()),
        ("redis", RedisBackend(redis_url, prefix="bench:cost")),
    ):
        store = OnlineFeatureStore(backend=backend)
        times = []
        for ev in events:
            t = time.perf_counter()
            store.update_and_vector(ev)
            times.append((time.perf_counter() - t) * 1e6)
        times.sort()
        out[f"{label}_mean"] = statistics.fmean(times)
        out[f"{label}_p99"] = times[int(len(times) * 0.99)]
        if isinstance(backend, RedisBackend):
            backend.clear()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--backlog", type=int, default=6000)
    ap.add_argument("--shadow-rate", type=float, default=300)
    args = ap.parse_args()
    import httpx
    import redis
    from bench_scoring import run_load, run_wrk
    from conftest import _tiny_bundle  # type: ignore[import-not-found]
    from serving_helpers import point, register

    from fraudops.config import WarehouseConfig, load_settings
    from fraudops.serving.streams import stream_backlog, stream_key
    from fraudops.stack import process
    from fraudops.stack.scale import (
        child_pid_file,
        haproxy_spec,
        redis_spec,
        replica_specs,
        shadow_worker_specs,
    )
    from fraudops.stack.services import bqemulator_spec, mlflow_auth, mlflow_spec
    from fraudops.warehouse import Warehouse

    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    tmp.chmod(0o755)
    started: list[Any] = []

    def start(spec: Any) -> None:
        process.start(spec)
        started.append(spec)

    def stop_all() -> None:
        for spec in reversed(started):
            process.stop(spec)
        started.clear()

    replica_rows: list[tuple[str, ...]] = []
    shadow_rows: list[tuple[str, ...]] = []
    cost: dict[str, float] = {}
    try:
        auth = mlflow_auth(tmp / "mlflow-auth.json")
        os.environ.update(auth.client_env())
        bq = bqemulator_spec(
            tmp / "bq", tmp / "logs", tmp / "run", "bench", process.free_port(), process.free_port()
        )
        ml = mlflow_spec(
            tmp / "mlflow", tmp / "logs", tmp / "run", "127.0.0.1", process.free_port(), auth=auth
        )
        for spec in (bq, ml):
            process.start(spec)
        base = {
            "FRAUDOPS_BQ_PROJECT": "bench",
            "FRAUDOPS_BQ_DATASET": "fraud",
            "FRAUDOPS_BQ_ENDPOINT": bq.url,
            "FRAUDOPS_MLFLOW_TRACKING_URI": ml.url,
            "MLFLOW_TRACKING_URI": ml.url,
            "FRAUDOPS_MODEL_NAME": "bench-model",
            "FRAUDOPS_WARM_DAYS": "0",
            "FRAUDOPS_ALIAS_POLL_S": "1",
            "FRAUDOPS_LOG_FLUSH_S": "1",
            "FRAUDOPS_EVENT_CLOCK": "simulated",  # as the local profile runs it (scoring_spec)
        }
        os.environ.update(base)
        wh = Warehouse(WarehouseConfig(project="bench", dataset="fraud", endpoint=bq.url))
        wh.ensure_schema()
        print("training a benchmark model ...", flush=True)
        bundle = _tiny_bundle(tmp / "bundle", 200, 3)
        champion = register(bundle, ml.url, "bench-model")
        challenger = register(bundle, ml.url, "bench-model")
        point(wh, "bench-model", "champion", champion, ml.url)

        def configure(n_replicas: int, n_workers: int, sample_rate: str, profile: str = "scale") -> Any:
            state = tmp / f"state-{profile}-{n_replicas}-{n_workers}-{sample_rate}"
            os.environ.update(
                {
                    "FRAUDOPS_STATE_DIR": str(state),
                    "FRAUDOPS_PROFILE": profile,
                    "FRAUDOPS_SCORING_PORT": str(process.free_port()),
                    "FRAUDOPS_SCALE_REPLICAS": str(n_replicas),
                    "FRAUDOPS_SCALE_SHADOW_WORKERS": str(max(1, n_workers)),  # none started when 0
                    "FRAUDOPS_SCALE_REDIS_PORT": str(process.free_port()),
                    "FRAUDOPS_SCALE_REPLICA_BASE_PORT": str(process.free_port() + 7),
                    "FRAUDOPS_SCALE_HAPROXY_STATS_PORT": str(process.free_port()),
                    "FRAUDOPS_SHADOW_SAMPLE_RATE": sample_rate,
                }
            )
            os.environ.pop("FRAUDOPS_REDIS_URL", None)
            return load_settings()

        # -- the local profile's single process, embedded state, direct --------------------------
        settings = configure(1, 0, "0", profile="local")
        from fraudops.stack.services import scoring_spec

        single = scoring_spec(settings)
        single.command = [c for c in single.command if c != "--ensure-champion"]
        start(single)
        print(f"local profile, 1 process: wrk {args.duration:g} s ...", flush=True)
        run_wrk(f"{single.url}/score", "score", 3, 16)  # warm-up
        w = run_wrk(f"{single.url}/score", "score", args.duration, 16)
        rss = _rss_tree_mb(process.read_pid(single.pid_file) or 0)
        replica_rows.append(
            (
                "local: 1 process, embedded state",
                f"{w['rps']:.0f}",
                f"{w['p50_us'] / 1e3:.2f}",
                f"{w['p99_us'] / 1e3:.2f}",
                str(w["errors"]),
                f"{rss:.0f}",
                "–",
            )
        )
        stop_all()

        # -- replicas behind HAProxy, Redis state --------------------------------------------
        for n in (1, 2, 4):
            settings = configure(n, 0, "0")
            start(redis_spec(settings))
            for spec in replica_specs(settings):
                start(spec)
            start(haproxy_spec(settings))
            if not cost:
                cost = redis_cost(settings.redis_url)
            print(f"scale: {n} replica(s) behind HAProxy: wrk {args.duration:g} s ...", flush=True)
            run_wrk(f"{settings.scoring.url}/score", "score", 3, 16)
            rc = redis.Redis.from_url(settings.redis_url)
            before = int(rc.info("stats")["total_commands_processed"])
            w = run_wrk(f"{settings.scoring.url}/score", "score", args.duration, 16)
            commands_per_request = (int(rc.info("stats")["total_commands_processed"]) - before) / max(
                1, w["requests"]
            )
            rc.close()
            rss = [_child_rss(settings, f"scoring-{i}") for i in range(1, n + 1)]
            replica_rows.append(
                (
                    f"scale: {n} replica{'s' if n > 1 else ''} + HAProxy + Redis",
                    f"{w['rps']:.0f}",
                    f"{w['p50_us'] / 1e3:.2f}",
                    f"{w['p99_us'] / 1e3:.2f}",
                    str(w["errors"]),
                    f"{statistics.fmean(rss):.0f} each",
                    f"{commands_per_request:.1f}",
                )
            )
            stop_all()

        # -- shadow workers on the challenger's stream ---------------------------------------
        point(wh, "bench-model", f"challenger-{challenger}", challenger, ml.url)
        alias = f"challenger-{challenger}"
        for m in (1, 2, 4):
            settings = configure(1, m, "1.0")
            start(redis_spec(settings))
            for spec in replica_specs(settings):
                start(spec)
            start(haproxy_spec(settings))
            url = settings.scoring.url
            deadline = time.monotonic() + 120
            while alias not in httpx.get(f"{url}/version").json()["challengers"]:
                if time.monotonic() > deadline:
                    raise RuntimeError("the challenger was not picked up")
                time.sleep(0.5)
            workers = shadow_worker_specs(settings)
            for spec in workers:
                start(spec)
            r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
            stream = stream_key(alias, challenger)

            def drained(r: Any = r, stream: str = stream) -> None:
                deadline = time.monotonic() + 600
                while sum(stream_backlog(r, stream)) > 0:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the stream did not drain")
                    time.sleep(0.02)

            # Warm-up, not recorded: every worker loads (fetches and verifies) the model on its
            # first events; that is start-up, not the trailing delay or the drain rate.
            run_load(f"{url}/score", "score", 100, 4, 16)
            drained()
            print(
                f"{m} shadow worker(s): steady {args.shadow_rate:g} ev/s for {args.duration:g} s ...",
                flush=True,
            )
            t_start = dt.datetime.now(dt.UTC)
            run_load(f"{url}/score", "score", args.shadow_rate, args.duration, 32)
            t_end = dt.datetime.now(dt.UTC)
            drained()
            p50, p99, n_delay = trailing_delay(wh, challenger, t_start, t_end)
            rss_w = statistics.fmean(_child_rss(settings, spec.name) for spec in workers)
            # The drain: the workers paused (SIGSTOP, models loaded), a backlog queued, then resumed.
            pids = [json.loads(child_pid_file(settings, spec.name).read_text())["pid"] for spec in workers]
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            print(f"{m} shadow worker(s): drain a backlog of {args.backlog} ...", flush=True)
            rate = min(800.0, args.backlog / 8)
            run_load(f"{url}/score", "score", rate, args.backlog / rate, 32)
            time.sleep(1)  # the replica's sender writes its last batch
            queued = sum(stream_backlog(r, stream))
            t0 = time.monotonic()
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
            drained()
            drain = time.monotonic() - t0
            shadow_rows.append(
                (
                    str(m),
                    f"{p50:.0f}",
                    f"{p99:.0f}",
                    str(n_delay),
                    str(queued),
                    f"{queued / drain:.0f}",
                    f"{rss_w:.0f}",
                )
            )
            r.close()
            stop_all()
    finally:
        stop_all()
        for spec in (ml, bq) if "ml" in locals() else ():
            process.stop(spec)
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(
        f"Scoring throughput, closed loop (wrk, 16 connections, {args.duration:g} s, mirroring off), 2 cores"
    )
    head = ("setup", "req/s", "p50 ms", "p99 ms", "errors", "RSS MB", "Redis commands/request")
    print(" | ".join(head))
    for row in replica_rows:
        print(" | ".join(row))
    base_rps = float(replica_rows[0][1])
    print(
        "ratios to the local profile's single process: "
        + ", ".join(
            f"{row[0].split(':')[1].strip()} {float(row[1]) / base_rps:.2f}x" for row in replica_rows[1:]
        )
    )
    print()
    print(
        f"Shadow workers (1 replica, challenger samples 100 %): trailing delay at {args.shadow_rate:g} ev/s, "
        "and drain of a backlog"
    )
    print(
        " | ".join(
            ("workers", "delay p50 ms", "delay p99 ms", "events", "backlog", "drain ev/s", "RSS MB each")
        )
    )
    for row in shadow_rows:
        print(" | ".join(row))
    print()
    print(
        "Online state per event (update + vector, in process, 4,000 events): embedded "
        f"{cost['embedded_mean']:.0f} µs mean / {cost['embedded_p99']:.0f} p99; Redis "
        f"{cost['redis_mean']:.0f} µs mean / {cost['redis_p99']:.0f} p99 (one pipelined round trip): "
        f"+{cost['redis_mean'] - cost['embedded_mean']:.0f} µs per request"
    )


if __name__ == "__main__":
    main()
