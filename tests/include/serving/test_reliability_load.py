"""Load scenarios of the reliability suite (issue #18): a real scoring service over real HTTP,
the BigQuery emulator for the prediction log, real MLflow, shadow workers in real processes.

- A shadow worker SIGKILLed under twice the demo's traffic: production answers every request, and
  every mirrored event is in the warehouse exactly once, scored or dead-lettered (``shed:*``).
- A hung shadow model: production's p99 next to a clean run with the same load, and the work held
  for the hung worker stays bounded by its pipe.
- The champion hot-swapped 10 times under load: no failed request, and every client sees the
  versions in order, each once, never an older one after a newer.
- The whole service SIGKILLed under load, and the warehouse down for 60 s under load: every
  acknowledged prediction in the warehouse exactly once.

Each scenario prints its figures (the README's reliability table quotes them).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_helpers import LiveServer, make_service, point, register, service_process, tx, wait_for

from fraudops.config import load_settings
from fraudops.serving.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

#: The demo streams 100 tx/s; the scenarios run at twice that.
RATE = 200.0


class Load:
    """``RATE`` requests/s from 4 client threads, each on its own schedule; records everything."""

    def __init__(self, url: str, start: int, rate: float = RATE, threads: int = 4) -> None:
        self.url, self.rate, self.threads = url, rate, threads
        self.next_id = start
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.results: list[tuple[int, int, str | None, float]] = []  # (thread, status, version, seconds)
        self.ids: list[str] = []
        self._workers: list[threading.Thread] = []

    def _take(self) -> int:
        with self.lock:
            self.next_id += 1
            return self.next_id

    def _run(self, k: int) -> None:
        period = self.threads / self.rate
        due = time.perf_counter()
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                due += period
                i = self._take()
                body = tx(i)
                start = time.perf_counter()
                try:
                    r = client.post("/score", json=body)
                    status = r.status_code
                    version = r.json().get("model_version") if status == 200 else None
                except (httpx.HTTPError, ValueError):
                    status, version = 599, None
                took = time.perf_counter() - start
                with self.lock:
                    self.results.append((k, status, version, took))
                    if status == 200:
                        self.ids.append(body["transaction_id"])
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)

    def __enter__(self) -> Load:
        self._workers = [threading.Thread(target=self._run, args=(k,)) for k in range(self.threads)]
        for t in self._workers:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._workers:
            t.join(30)

    def p99_ms(self) -> float:
        return pooled_p99_ms([self])


def pooled_p99_ms(loads: list[Load]) -> float:
    """p99 over every request of ``loads`` together."""
    took = sorted(s for load in loads for *_, s in load.results)
    return took[max(0, int(len(took) * 0.99) - 1)] * 1e3 if took else float("nan")


def _version(client: httpx.Client) -> dict[str, Any]:
    return dict(client.get("/version").json())


def _shadow_rows(warehouse: Any, alias: str) -> list[dict[str, Any]]:
    return list(
        warehouse.query(
            "SELECT transaction_id, COUNT(*) AS n, COUNTIF(score IS NOT NULL) AS scored, "
            "ANY_VALUE(error) AS error FROM predictions WHERE mode = 'shadow' AND alias = @a "
            "GROUP BY transaction_id",
            {"a": alias},
        )
    )


def test_a_shadow_worker_killed_under_twice_the_traffic(
    fraudops_env: Path, warehouse: Any, bundles: dict[str, Path], live: list[LiveServer], tmp_path: Path
) -> None:
    uri = load_settings().mlflow.tracking_uri
    name, alias = "rel-kill-shadow", "challenger-kill"
    va, vb = register(bundles["a"], uri, name), register(bundles["b"], uri, name)
    point(warehouse, name, "champion", va, uri)
    point(warehouse, name, alias, vb, uri)
    service = make_service(tmp_path, name, warehouse, shadow=True, shadow_sample_rate=1.0)
    server = LiveServer(create_app(service))
    live.append(server)
    client = httpx.Client(base_url=server.url, timeout=10)
    wait_for(lambda: client.get("/health").status_code == 200, 120, "champion loaded")
    wait_for(
        lambda: _version(client)["challengers"].get(alias, {}).get("state") == "running", 120, "worker up"
    )
    assert service.shadow is not None
    pid = service.shadow.pids()[alias]

    with Load(server.url, start=0) as load:
        time.sleep(3.0)
        os.kill(pid, signal.SIGKILL)
        killed_at = len(load.results)
        wait_for(
            lambda: (
                _version(client)["challengers"][alias]["state"] == "running"
                and service.shadow is not None
                and service.shadow.pids().get(alias) not in (None, pid)
            ),
            60,
            "worker restarted",
        )
        time.sleep(3.0)
    status = _version(client)["challengers"][alias]
    statuses = Counter(s for _, s, _, _ in load.results)
    assert statuses == Counter({200: len(load.results)}), statuses  # production never failed
    assert status["restarts"] >= 1, status

    wait_for(lambda: _version(client)["challengers"][alias]["in_flight"] == 0, 30, "shadow work answered")
    service.writer.flush()
    want = set(load.ids)

    def logged() -> set[str]:
        return {r["transaction_id"] for r in _shadow_rows(warehouse, alias)}

    wait_for(lambda: logged() >= want, 60, "every mirrored event logged")
    rows = _shadow_rows(warehouse, alias)
    by_id = {r["transaction_id"]: r for r in rows}
    twice = [r for r in rows if r["n"] != 1]
    assert not twice, twice[:5]
    assert set(by_id) == want, (len(set(by_id) - want), len(want - set(by_id)))
    outcomes = Counter("scored" if r["scored"] else (r["error"] or "no score") for r in rows)
    print(
        f"\nshadow worker SIGKILLed at request {killed_at} of {len(load.results)} "
        f"({RATE:.0f} req/s, production p99 {load.p99_ms():.1f} ms, 0 failed): mirrored events in the "
        f"warehouse exactly once each: {dict(outcomes)}"
    )
    assert outcomes["scored"] > len(want) // 2


def test_a_hung_shadow_model_leaves_production_p99_and_holds_bounded_work(
    fraudops_env: Path, warehouse: Any, bundles: dict[str, Path], live: list[LiveServer], tmp_path: Path
) -> None:
    uri = load_settings().mlflow.tracking_uri
    name, alias = "rel-hang-shadow", "challenger-hang"
    va, vb = register(bundles["a"], uri, name), register(bundles["b"], uri, name)
    point(warehouse, name, "champion", va, uri)
    point(warehouse, name, alias, vb, uri)
    # A long hang timeout: the worker stays hung for the whole measurement instead of being restarted.
    service = make_service(
        tmp_path, name, warehouse, shadow=True, shadow_sample_rate=1.0, shadow_hang_timeout_s=30.0
    )
    assert service.shadow is not None
    server = LiveServer(create_app(service))
    live.append(server)
    client = httpx.Client(base_url=server.url, timeout=10)
    wait_for(lambda: client.get("/health").status_code == 200, 120, "champion loaded")
    wait_for(
        lambda: _version(client)["challengers"].get(alias, {}).get("state") == "running", 120, "worker up"
    )

    def in_flight() -> int:
        return int(_version(client)["challengers"][alias]["in_flight"])

    with Load(server.url, start=0):  # warm-up: first requests, first batches, first flushes
        time.sleep(3.0)
    # Clean and hung phases alternate (three of each, the same length, the same load), so a drift
    # of the shared machine's load touches both; each condition's p99 is over its pooled requests.
    # The same worker is hung by SIGSTOP (it stops reading its pipe: a hang in native code looks
    # the same from outside), so the pipe fills and further offers are shed; after SIGCONT the
    # next clean phase waits until it has drained its backlog.
    pid = service.shadow.pids()[alias]
    clean: list[Load] = []
    hung: list[Load] = []
    held = 0
    for phase in range(3):
        wait_for(lambda: in_flight() < 50, 60, "the worker's backlog drained")
        with Load(server.url, start=(2 * phase + 1) * 1_000_000) as load:
            time.sleep(6.0)
        clean.append(load)
        os.kill(pid, signal.SIGSTOP)
        try:
            with Load(server.url, start=(2 * phase + 2) * 1_000_000) as load:
                time.sleep(6.0)
            held = max(held, in_flight())
        finally:
            os.kill(pid, signal.SIGCONT)
        hung.append(load)
    clean_p99, hung_p99 = pooled_p99_ms(clean), pooled_p99_ms(hung)
    phases = ", ".join(f"{c.p99_ms():.1f}/{h.p99_ms():.1f}" for c, h in zip(clean, hung, strict=True))
    service.writer.flush()
    shed = Counter(
        r["error"] for r in _shadow_rows(warehouse, alias) if r["error"] and r["error"].startswith("shed:")
    )
    statuses = Counter(s for load in clean + hung for _, s, _, _ in load.results)
    n_clean, n_hung = (sum(len(load.results) for load in loads) for loads in (clean, hung))
    print(
        f"\nproduction p99 at {RATE:.0f} req/s over 3 alternating phases each: clean {clean_p99:.2f} ms "
        f"({n_clean} requests), with a hung shadow model {hung_p99:.2f} ms ({n_hung} requests; "
        f"{hung_p99 / clean_p99 - 1:+.1%}); per phase clean/hung {phases} ms; held for the hung worker: "
        f"{held} events (pipe sized for {service.options.shadow_queue_size}); shed so far {dict(shed)}"
    )
    assert statuses == Counter({200: n_clean + n_hung}), statuses
    # The pipe is sized at ~1 KiB per event; frames here are a little smaller, and the worker had
    # read one chunk before it stopped: bounded by a small multiple of the configured queue.
    assert 0 < held <= 2 * service.options.shadow_queue_size + 64, held
    # Both runs share a busy 2-core machine: the bound is loose; the printed ratio is the figure.
    assert hung_p99 < clean_p99 * 2 + 5.0


def test_ten_hot_swaps_under_load_switch_each_version_once_in_order(
    fraudops_env: Path, warehouse: Any, bundles: dict[str, Path], live: list[LiveServer], tmp_path: Path
) -> None:
    uri = load_settings().mlflow.tracking_uri
    name = "rel-ten-swaps"
    versions = [register(bundles["a" if i % 2 == 0 else "b"], uri, name) for i in range(11)]
    point(warehouse, name, "champion", versions[0], uri)
    service = make_service(tmp_path, name, warehouse, shadow=True, shadow_sample_rate=0.0)
    server = LiveServer(create_app(service))
    live.append(server)
    client = httpx.Client(base_url=server.url, timeout=10)
    wait_for(lambda: client.get("/health").status_code == 200, 120, "champion loaded")
    took = []
    with Load(server.url, start=0) as load:
        time.sleep(1.0)
        for v in versions[1:]:
            t0 = time.monotonic()
            point(warehouse, name, "champion", v, uri)
            wait_for(
                lambda v=v: (_version(client)["champion"] or {}).get("version") == v, 90, f"swap to v{v}"
            )
            took.append(time.monotonic() - t0)
            time.sleep(0.5)
    statuses = Counter(s for _, s, _, _ in load.results)
    assert statuses == Counter({200: len(load.results)}), statuses
    order = {v: i for i, v in enumerate(versions)}
    for k in range(load.threads):
        seen = [order[v] for t, s, v, _ in load.results if t == k and v is not None]
        assert seen == sorted(seen), f"client {k} saw an older version after a newer one"
    served = {v for _, _, v, _ in load.results}
    print(
        f"\n10 hot swaps under {RATE:.0f} req/s: {len(load.results)} requests, 0 failed, every client "
        f"saw the versions in order; alias move to serving {min(took):.1f}-{max(took):.1f} s "
        f"(verification in a child process included); versions answered: {len(served)} of 11"
    )
    assert _version(client)["champion"]["version"] == versions[-1]


def test_the_scoring_service_sigkilled_under_load_loses_no_acknowledged_prediction(
    fraudops_env: Path, warehouse: Any, bundles: dict[str, Path], tmp_path: Path
) -> None:
    """The whole service (``python -m fraudops.serving`` with its shipper and shadow workers, one
    process group) SIGKILLed at twice the demo's traffic, then started again on the same state
    folder: every request answered 200 is in the warehouse exactly once; requests cut off by the
    kill (never acknowledged) are there at most once."""
    from fraudops.stack import process

    uri = load_settings().mlflow.tracking_uri
    name = "rel-kill-service"
    va, vb = register(bundles["a"], uri, name), register(bundles["b"], uri, name)
    point(warehouse, name, "champion", va, uri)
    point(warehouse, name, f"challenger-{vb}", vb, uri)
    spec = service_process(tmp_path, warehouse, name, FRAUDOPS_SHADOW_SAMPLE_RATE="0.5")
    url = spec.url
    process.start(spec)
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            wait_for(lambda: f"challenger-{vb}" in _version(client)["challengers"], 120, "challenger loaded")
        with Load(url, start=0) as load:
            time.sleep(5.0)
            pid = process.read_pid(spec.pid_file)
            assert pid is not None
            os.killpg(pid, signal.SIGKILL)  # the service, its shipper and its shadow workers
            killed_at = time.perf_counter()
            time.sleep(0.5)
        acked = list(load.ids)
        failed = sum(1 for _, s, _, _ in load.results if s != 200)
        spec.pid_file.unlink(missing_ok=True)
        restart = time.perf_counter()
        process.start(spec)  # the same state folder: its spool is shipped again
        back_s = time.perf_counter() - restart

        def production_rows() -> dict[str, int]:
            rows = warehouse.query(
                "SELECT transaction_id, COUNT(*) AS n FROM predictions WHERE mode = 'production' "
                "AND model_name = @m GROUP BY transaction_id",
                {"m": name},
            )
            return {r["transaction_id"]: int(r["n"]) for r in rows}

        wait_for(lambda: set(acked) <= set(production_rows()), 120, "every acknowledged row shipped")
        time.sleep(2.0)  # nothing arrives twice a little later either
        rows = production_rows()
        twice = {k: n for k, n in rows.items() if n != 1}
        since_kill = time.perf_counter() - killed_at
        print(
            f"\nSIGKILL of the whole service under {RATE:.0f} req/s: {len(acked)} acknowledged, {failed} "
            f"failed (cut off or refused while it was down); after a restart ({back_s:.1f} s to healthy, "
            f"{since_kill:.0f} s after the kill) {sum(k in rows for k in acked)}/{len(acked)} acknowledged "
            f"in the warehouse, {len(set(rows) - set(acked))} unacknowledged there too, {len(twice)} more "
            "than once"
        )
        assert len(acked) > 500 and not twice, twice
        assert all(k in rows for k in acked)
    finally:
        process.stop(spec)


def test_a_60_second_warehouse_outage_under_load_loses_and_duplicates_nothing(
    fraudops_env: Path, bundles: dict[str, Path], tmp_path: Path
) -> None:
    """BigQuery (a private emulator) goes away for 60 s while the whole service takes twice the
    demo's traffic: scoring goes on, every request answered 200 is in the warehouse exactly once
    after the emulator is back, and nothing unacknowledged is there twice."""
    from fraudops.config import WarehouseConfig
    from fraudops.stack import process
    from fraudops.stack.services import bqemulator_spec
    from fraudops.warehouse import Warehouse

    uri = load_settings().mlflow.tracking_uri
    name = "rel-bq-outage"
    va = register(bundles["a"], uri, name)
    port, grpc = process.free_port(), process.free_port()
    project = "outage-load"
    bq = bqemulator_spec(tmp_path / "bq", tmp_path / "logs", tmp_path / "run", project, port, grpc)
    process.start(bq)
    endpoint = f"http://127.0.0.1:{port}"
    wh = Warehouse(WarehouseConfig(project=project, dataset="fraud", endpoint=endpoint, timeout_s=5.0))
    wh.ensure_schema()
    point(wh, name, "champion", va, uri)
    spec = service_process(
        tmp_path,
        wh,
        name,
        FRAUDOPS_BQ_PROJECT=project,
        FRAUDOPS_BQ_ENDPOINT=endpoint,
        FRAUDOPS_BQ_TIMEOUT_S="5",
    )
    process.start(spec)
    try:
        with Load(spec.url, start=0) as load:
            time.sleep(3.0)
            process.stop(bq)  # the warehouse goes away under load ...
            down_at = time.perf_counter()
            time.sleep(60.0)
            during = len(load.results)
            process.start(bq)  # ... and comes back on the same data folder
            down_s = time.perf_counter() - down_at
            time.sleep(3.0)
        acked = list(load.ids)
        failed = [s for _, s, _, _ in load.results if s != 200]

        def production_rows() -> dict[str, int]:
            rows = wh.query(
                "SELECT transaction_id, COUNT(*) AS n FROM predictions WHERE mode = 'production' "
                "AND model_name = @m GROUP BY transaction_id",
                {"m": name},
            )
            return {r["transaction_id"]: int(r["n"]) for r in rows}

        back = time.perf_counter()
        wait_for(lambda: set(acked) <= set(production_rows()), 180, "every acknowledged row shipped")
        replay_s = time.perf_counter() - back
        time.sleep(2.0)  # nothing arrives twice a little later either
        rows = production_rows()
        twice = {k: n for k, n in rows.items() if n != 1}
        print(
            f"\nwarehouse down {down_s:.0f} s under {RATE:.0f} req/s: {len(load.results)} requests "
            f"({during} before it came back), {len(failed)} failed, production p99 {load.p99_ms():.1f} ms; "
            f"{sum(k in rows for k in acked)}/{len(acked)} acknowledged in the warehouse "
            f"{replay_s:.1f} s after the load stopped, {len(twice)} more than once"
        )
        assert not failed, Counter(failed)
        assert len(acked) > 10_000 and not twice, twice
        assert all(k in rows for k in acked) and set(rows) == set(acked)
    finally:
        process.stop(spec)
        process.stop(bq)
