"""Scoring-service benchmark: latency at 500 req/s open loop (mirroring off vs 10 %), throughput vs
``mlflow models serve`` on the same ONNX model, and resident memory with two challengers loaded.

Starts its own BigQuery emulator, MLflow server and scoring service (uvicorn, one worker) on free
ports in a temp folder and stops them all at the end. The load generator is a separate process
(asyncio + httpx), so it does not share the service's CPU time slice accounting. Prints a table.

    .venv/bin/python benchmarks/bench_scoring.py [--rate 500] [--duration 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "include" / "serving"))

LOAD_CLIENT = r"""
import asyncio, json, sys, time, random
import httpx
url, mode = sys.argv[1], sys.argv[2]
rate, duration, conc = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
def body(i):
    if mode == "mlflow":
        return {"inputs": [[float((i * 7) % 97)] * int(sys.argv[6])]}
    ts = f"2026-06-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z"
    return {"transaction_id": f"b{time.time_ns()}-{i}", "card_id": f"c{i % 2000}",
            "terminal_id": f"t{i % 300}", "merchant_id": f"m{i % 100}", "amount": float(10 + i % 500),
            "region": "eu-west", "device_id": f"d{i % 900}", "timestamp": ts, "channel": "ecom"}
client_ms, server_ms, errors = [], [], 0
async def one(client, i):
    global errors
    t = time.perf_counter()
    try:
        r = await client.post(url, json=body(i))
    except Exception:
        errors += 1; return
    client_ms.append((time.perf_counter() - t) * 1e3)
    if r.status_code != 200: errors += 1
    h = r.headers.get("x-score-latency-ms")
    if h: server_ms.append(float(h))
async def main():
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        for i in range(200): await one(client, i)  # warm-up
        client_ms.clear(); server_ms.clear()
        t0 = time.perf_counter(); tasks = []; i = 0
        if rate > 0:  # open loop: send on schedule regardless of responses
            while time.perf_counter() - t0 < duration:
                i += 1
                tasks.append(asyncio.create_task(one(client, i)))
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0: await asyncio.sleep(delay)
            await asyncio.gather(*tasks)
        else:  # closed loop: conc workers back to back
            async def worker(k):
                j = k
                while time.perf_counter() - t0 < duration:
                    j += conc; await one(client, j)
            await asyncio.gather(*(worker(k) for k in range(conc)))
        elapsed = time.perf_counter() - t0
    print(json.dumps({"client": client_ms, "server": server_ms, "errors": errors, "elapsed": elapsed}))
asyncio.run(main())
"""


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * q))]


def run_load(url: str, mode: str, rate: float, duration: float, conc: int, n_features: int = 0) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", LOAD_CLIENT, url, mode, str(rate), str(duration), str(conc), str(n_features)],
        capture_output=True,
        text=True,
        timeout=duration + 300,
        check=True,
    )
    return json.loads(out.stdout)


def wait_http(url: str, timeout: float = 300) -> None:
    from fraudops.stack.process import http_ok

    deadline = time.monotonic() + timeout
    while not http_ok(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not healthy")
        time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--duration", type=float, default=20)
    args = ap.parse_args()
    import httpx
    import psutil
    from conftest import _tiny_bundle  # type: ignore[import-not-found]
    from serving_helpers import register  # the tests' helpers

    from fraudops.config import WarehouseConfig
    from fraudops.registry import set_alias
    from fraudops.stack import process
    from fraudops.stack.services import bqemulator_spec, mlflow_spec
    from fraudops.warehouse import Warehouse

    tmp = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    started: list[process.ServiceSpec] = []
    procs: list[subprocess.Popen] = []
    rows: list[tuple[str, ...]] = []
    try:
        bq = bqemulator_spec(
            tmp / "bq", tmp / "logs", tmp / "run", "bench", process.free_port(), process.free_port()
        )
        ml = mlflow_spec(tmp / "mlflow", tmp / "logs", tmp / "run", "127.0.0.1", process.free_port())
        for spec in (bq, ml):
            process.start(spec)
            started.append(spec)
        Warehouse(WarehouseConfig(project="bench", dataset="fraud", endpoint=bq.url)).ensure_schema()
        print("training a benchmark model ...", flush=True)
        bundle = _tiny_bundle(tmp / "bundle", 200, 3)
        name = "bench-model"
        v1 = register(bundle, ml.url, name)
        v2 = register(bundle, ml.url, name)
        set_alias(name, "champion", v1, tracking_uri=ml.url)
        n_features = json.loads((bundle / "manifest.json").read_text())["n_features"]
        env = {
            **os.environ,
            "FRAUDOPS_STATE_DIR": str(tmp / "state"),
            "FRAUDOPS_BQ_PROJECT": "bench",
            "FRAUDOPS_BQ_ENDPOINT": bq.url,
            "FRAUDOPS_MLFLOW_TRACKING_URI": ml.url,
            "MLFLOW_TRACKING_URI": ml.url,
            "FRAUDOPS_MODEL_NAME": name,
            "FRAUDOPS_WARM_DAYS": "0",
            "FRAUDOPS_ALIAS_POLL_S": "1",
        }
        results = {}
        for label, rate_share, challengers in (("mirroring off", "0", False), ("mirroring 10%", "0.1", True)):
            for alias in ("challenger-a", "challenger-b"):
                if challengers:
                    set_alias(name, alias, v2, tracking_uri=ml.url)
            port = process.free_port()
            p = subprocess.Popen(
                [sys.executable, "-m", "fraudops.serving", "--port", str(port), "--log-level", "warning"],
                env={**env, "FRAUDOPS_SHADOW_SAMPLE_RATE": rate_share},
                stdout=(tmp / f"serve-{port}.log").open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            procs.append(p)
            url = f"http://127.0.0.1:{port}"
            wait_http(f"{url}/health")
            if challengers:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    ch = httpx.get(f"{url}/version").json()["challengers"]
                    if len(ch) == 2 and all(c["state"] == "running" for c in ch.values()):
                        break
                    time.sleep(0.5)
            print(f"{label}: {args.rate:.0f} req/s open loop for {args.duration:.0f} s ...", flush=True)
            r = run_load(f"{url}/score", "score", args.rate, args.duration, 64)
            info = httpx.get(f"{url}/version").json()
            rss = psutil.Process(p.pid).memory_info().rss / 2**20
            results[label] = (r, rss, info["challengers"])
            if challengers:
                print("closed-loop max throughput of /score ...", flush=True)
                results["score-max"] = run_load(f"{url}/score", "score", 0, 10, 16)
            p.terminate()
            p.wait(30)
        # mlflow models serve of the same ONNX model
        mport = process.free_port()
        mp = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "models",
                "serve",
                "-m",
                f"models:/{name}/{v1}",
                "--env-manager",
                "local",
                "-p",
                str(mport),
                "-h",
                "127.0.0.1",
            ],
            env={**env, "MLFLOW_TRACKING_URI": ml.url},
            stdout=(tmp / "mlflow-serve.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(mp)
        wait_http(f"http://127.0.0.1:{mport}/ping", 300)
        print("closed-loop max throughput of mlflow models serve ...", flush=True)
        mres = run_load(f"http://127.0.0.1:{mport}/invocations", "mlflow", 0, 10, 16, n_features)
        mp.terminate()
        mp.wait(30)

        off, on = results["mirroring off"], results["mirroring 10%"]
        for label, (r, rss, _) in (("mirroring off", off), ("mirroring 10%", on)):
            rows.append(
                (
                    label,
                    f"{len(r['client']) / r['elapsed']:.0f}",
                    f"{pct(r['server'], 0.5):.3f}",
                    f"{pct(r['server'], 0.99):.3f}",
                    f"{pct(r['client'], 0.5):.3f}",
                    f"{pct(r['client'], 0.99):.3f}",
                    str(r["errors"]),
                    f"{rss:.0f}",
                )
            )
        smax, mmax = results["score-max"], mres
        thr_s, thr_m = len(smax["client"]) / smax["elapsed"], len(mmax["client"]) / mmax["elapsed"]
        hdr = (
            "run",
            "req/s",
            "server p50 ms",
            "server p99 ms",
            "client p50 ms",
            "client p99 ms",
            "errors",
            "service RSS MB",
        )
        widths = [max(len(x[i]) for x in [hdr, *rows]) for i in range(len(hdr))]
        print()
        for row in [hdr, *rows]:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        print()
        sp99 = pct(on[0]["server"], 0.99) / pct(off[0]["server"], 0.99)
        print(f"mirroring on/off production server p99 ratio: {sp99:.3f} (target <= 1.10)")
        print(
            f"closed-loop throughput: fraudops /score {thr_s:.0f} req/s vs mlflow models serve "
            f"{thr_m:.0f} req/s = {thr_s / thr_m:.1f}x (target >= 5x)"
        )
        for alias, c in on[2].items():
            print(
                f"shadow worker {alias}: RSS {c['rss_mb']} MB, processed {c['processed']}, "
                f"shed {c['shed']}, restarts {c['restarts']}"
            )
        print(f"load average: {os.getloadavg()}  cpus: {os.cpu_count()}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for spec in reversed(started):
            process.stop(spec)


if __name__ == "__main__":
    main()
