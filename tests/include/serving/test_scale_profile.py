"""The ``scale`` profile (issue #20) as ``fraudops up --profile scale`` runs it: a private Redis
(append-only file), three scoring replicas under keepalive behind a real HAProxy, two stream
shadow workers; real MLflow and the BigQuery emulator. One stack for the file (module scope).

Checked: features through three replicas equal the single-process store's (0 mismatches) and no
increment is lost under concurrency; a replica SIGKILLed under steady load costs no client request
and comes back; a shadow worker SIGKILLed mid-stream loses no mirrored event (each scored or
dead-lettered, once in the warehouse) and a poison event is dead-lettered after K deliveries;
Redis restarted under traffic: scoring answers throughout (degraded, counted, visible) and the
state written during the outage is replayed; a shadow worker killed after spooling its rows and
before acknowledging its entries, then retried, leaves one row per event (``retry_safety``).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import datetime as dt
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_helpers import point, register, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.scale, pytest.mark.slow]

MODEL = "scale-model"
POISON = "poison-1"


@dataclass
class Scale:
    settings: Any
    warehouse: Any
    specs: dict[str, Any]
    champion: str
    challenger: str
    url: str
    redis: Any
    sent: list[dict[str, Any]] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def child_pid(self, name: str) -> int:
        from fraudops.stack.scale import child_pid_file

        return int(json.loads(child_pid_file(self.settings, name).read_text())["pid"])

    def haproxy_servers(self) -> dict[str, dict[str, str]]:
        """HAProxy's per-server statistics (CSV of ``/stats;csv``) by server name."""
        port = self.settings.scale.haproxy_stats_port
        text = httpx.get(f"http://127.0.0.1:{port}/stats;csv", timeout=5).text
        header, *rows = [line for line in text.splitlines() if line]
        names = header.lstrip("# ").split(",")
        out = {}
        for row in rows:
            doc = dict(zip(names, row.split(","), strict=False))
            if doc.get("pxname") == "replicas" and doc.get("svname", "").startswith("scoring-"):
                out[doc["svname"]] = doc
        return out


def _consecutive_free_ports(n: int) -> int:
    """A base port with ``base + 1 .. base + n`` free (the replicas' ports)."""
    import random

    from fraudops.stack.process import port_in_use

    for _ in range(200):
        base = random.randint(20_000, 55_000)
        if not any(port_in_use(base + i) for i in range(1, n + 1)):
            return base
    raise RuntimeError("no run of free ports")


@pytest.fixture(scope="module")
def scale(
    bq_emulator: Any, mlflow_server: str, session_tmp: Path, bundles: dict[str, Path]
) -> Iterator[Scale]:
    import redis

    from fraudops.config import load_settings
    from fraudops.stack import process
    from fraudops.stack.process import free_port
    from fraudops.stack.scale import scale_specs
    from fraudops.warehouse import Warehouse

    state = session_tmp / "scale-state"
    env = {
        "FRAUDOPS_STATE_DIR": str(state),
        "FRAUDOPS_PROFILE": "scale",
        "FRAUDOPS_BQ_PROJECT": bq_emulator.project,
        "FRAUDOPS_BQ_DATASET": "scale_profile",
        "FRAUDOPS_BQ_ENDPOINT": bq_emulator.endpoint,
        "FRAUDOPS_MLFLOW_TRACKING_URI": mlflow_server,
        "MLFLOW_TRACKING_URI": mlflow_server,
        "FRAUDOPS_MODEL_NAME": MODEL,
        "FRAUDOPS_SCORING_PORT": str(free_port()),
        "FRAUDOPS_SCALE_REPLICAS": "3",
        "FRAUDOPS_SCALE_SHADOW_WORKERS": "2",
        "FRAUDOPS_SCALE_REDIS_PORT": str(free_port()),
        "FRAUDOPS_SCALE_REPLICA_BASE_PORT": str(_consecutive_free_ports(3)),
        "FRAUDOPS_SCALE_HAPROXY_STATS_PORT": str(free_port()),
        "FRAUDOPS_SCALE_DEAD_LETTER_AFTER": "3",
        "FRAUDOPS_WARM_DAYS": "0",
        "FRAUDOPS_EVENT_CLOCK": "simulated",
        "FRAUDOPS_MAX_FUTURE_S": str(400 * 86_400),  # the tests jump 90 days at a time
        "FRAUDOPS_LOG_FLUSH_S": "1.0",
        "FRAUDOPS_ALIAS_POLL_S": "1",
        "FRAUDOPS_SHADOW_SAMPLE_RATE": "0.5",
        "FRAUDOPS_SHADOW_CLAIM_IDLE_MS": "1500",
        # A poison event for the dead-letter test; 30 ms per batch, so that a worker holds
        # unacknowledged events long enough to be killed with some.
        "FRAUDOPS_SHADOW_WORKER_FAULT": f"crash_on:{POISON},slow:30",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        settings = load_settings()
        wh = Warehouse(settings.warehouse)
        wh.ensure_schema()
        uri = settings.mlflow.tracking_uri
        champion = register(bundles["a"], uri, MODEL)
        challenger = register(bundles["b"], uri, MODEL)
        point(wh, MODEL, "champion", champion, uri)
        point(wh, MODEL, f"challenger-{challenger}", challenger, uri)
        specs = {s.name: s for s in scale_specs(settings)}
        started = []
        try:
            for spec in specs.values():
                process.start(spec)
                started.append(spec)
            r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
            yield Scale(settings, wh, specs, champion, challenger, settings.scoring.url, r)
        finally:
            for spec in reversed(started):
                process.stop(spec)
            wh.drop_dataset()


#: Each test streams its own stretch of event time, 90 days after the previous one's (longer than
#: any feature window plus label delay), so what one test wrote never shapes another's features.
FIRST_DAY = dt.date(2026, 6, 1)


def _stream_rows(n: int, slot: int, seed: int = 11) -> list[dict[str, Any]]:
    """``n`` /score bodies of the simulator's stream (a small world), in event-time order, from
    ``FIRST_DAY`` + 90 days x ``slot``."""
    from fraudops.simulate import SimulationConfig
    from fraudops.simulate.generator import generate_day
    from fraudops.simulate.stream import PAYLOAD_FIELDS

    cfg = SimulationConfig(n_cards=800, n_customers=700, n_merchants=60, n_terminals=240)
    rows: list[dict[str, Any]] = []
    day = FIRST_DAY + dt.timedelta(days=90 * slot)
    while len(rows) < n:
        table = generate_day(seed, day, cfg, id_prefix=f"s{slot}")
        rows += sorted(table.transactions.to_pylist(), key=lambda r: (r["event_time"], r["transaction_id"]))
        day += dt.timedelta(days=1)
    out = []
    for row in rows[:n]:
        body = {k: row[k] for k in PAYLOAD_FIELDS if k != "timestamp"}
        body["timestamp"] = row["event_time"].isoformat()
        out.append(body)
    return out


def _expected_vectors(rows: list[dict[str, Any]], spec: Any) -> dict[str, list[float]]:
    """What one process's embedded online store gives each event of ``rows`` in that order."""
    from fraudops.features.online import EmbeddedBackend, OnlineFeatureStore
    from fraudops.serving.schema import ScoreRequest

    store = OnlineFeatureStore(spec, EmbeddedBackend())
    return {
        r["transaction_id"]: store.update_and_vector(ScoreRequest.model_validate(r).to_transaction())
        for r in rows
    }


def _features(scale: Scale, txids: list[str], mode: str = "production") -> dict[str, list[float]]:
    wh = scale.warehouse
    frame = wh.query_df(
        f"SELECT transaction_id, features FROM `{wh.table_id('predictions')}` "
        "WHERE mode = @mode AND transaction_id IN UNNEST(@ids)",
        {"mode": mode, "ids": txids},
    )
    return {str(k): json.loads(v) for k, v in zip(frame["transaction_id"], frame["features"], strict=True)}


def _champion_spec(scale: Scale) -> Any:
    from fraudops.features.spec import FeatureSpec

    bundle = Path(scale.settings.state_dir) / "serving" / "scoring-1" / "bundles" / MODEL / scale.champion
    return FeatureSpec.from_dict(json.loads((bundle / "bundle" / "feature_spec.json").read_text()))


def _wait_rows(scale: Scale, txids: list[str], mode: str = "production", timeout_s: float = 120) -> None:
    wait_for(lambda: len(_features(scale, txids, mode)) == len(txids), timeout_s, f"{len(txids)} {mode} rows")


def test_three_replicas_compute_exactly_the_single_process_features(scale: Scale) -> None:
    rows = _stream_rows(1200, slot=0)
    with scale.client() as client:
        for body in rows:  # one at a time: consecutive events land on different replicas
            r = client.post("/score", json=body)
            assert r.status_code == 200, r.text
    served = {s: int(doc["stot"]) for s, doc in scale.haproxy_servers().items()}
    assert len(served) == 3 and min(served.values()) >= 300, served  # all three took a share
    txids = [r["transaction_id"] for r in rows]
    _wait_rows(scale, txids)
    got = _features(scale, txids)
    expected = _expected_vectors(rows, _champion_spec(scale))
    mismatches = [t for t in txids if got[t] != expected[t]]
    assert not mismatches, (len(mismatches), mismatches[:3], got[mismatches[0]], expected[mismatches[0]])


def test_concurrent_events_of_one_card_lose_no_increment(scale: Scale) -> None:
    base = _stream_rows(1, slot=1)[0]
    t0 = dt.datetime.fromisoformat(base["timestamp"])
    bodies = [
        {
            **base,
            "transaction_id": f"burst-{i}",
            "card_id": "burst-card",
            "timestamp": (t0 + dt.timedelta(seconds=i)).isoformat(),
        }
        for i in range(40)
    ]
    with scale.client() as client, cf.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda b: client.post("/score", json=b).status_code, bodies[:-1]))
        assert codes == [200] * 39
        assert client.post("/score", json=bodies[-1]).status_code == 200
    last = bodies[-1]["transaction_id"]
    _wait_rows(scale, [last])
    expected = _expected_vectors(bodies, _champion_spec(scale))[last]
    assert _features(scale, [last])[last] == expected


def _steady_load(
    url: str, stop: threading.Event, bodies: Iterator[dict[str, Any]], out: dict[str, Any]
) -> None:
    lock = threading.Lock()

    def run() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                with lock:
                    body = next(bodies, None)
                if body is None:
                    raise AssertionError("the steady load ran out of events")
                try:
                    r = client.post("/score", json=body)
                    key = "ok" if r.status_code == 200 else f"http_{r.status_code}"
                except httpx.HTTPError as err:
                    key = type(err).__name__
                with lock:
                    out[key] = out.get(key, 0) + 1
                time.sleep(0.03)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@contextlib.contextmanager
def _under_load(scale: Scale, slot: int, warm_s: float) -> Iterator[dict[str, int]]:
    """Steady load through HAProxy (4 clients) for the block, after ``warm_s`` of it; yields the
    outcome counts (``ok`` or why a request failed), complete once the block has left."""
    rows = iter(_stream_rows(8000, slot=slot))
    stop, counts = threading.Event(), dict[str, int]()
    load = threading.Thread(target=_steady_load, args=(scale.url, stop, rows, counts))
    load.start()
    time.sleep(warm_s)
    try:
        yield counts
    finally:
        stop.set()
        load.join(60)


def _offering(scale: Scale, name: str) -> bool:
    """Replica ``name`` mirrors to the challenger (a restarted replica is healthy, and taken back
    by HAProxy, before its watcher has loaded the challenger)."""
    try:
        doc = httpx.get(f"{scale.specs[name].url}/version", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return False
    alias = doc.get("challengers", {}).get(f"challenger-{scale.challenger}") or {}
    return bool(alias.get("version") == scale.challenger)


def _all_offering(scale: Scale) -> None:
    for name in (n for n in scale.specs if n.startswith("scoring-")):
        wait_for(lambda name=name: _offering(scale, name), 120, f"{name} mirroring to the challenger")


def _restarted(scale: Scale, name: str, victim: int) -> None:
    wait_for(lambda: scale.child_pid(name) != victim, 60, f"keepalive restarted {name}")
    wait_for(lambda: scale.haproxy_servers()[name]["status"] == "UP", 180, f"{name} back in")
    wait_for(lambda: _offering(scale, name), 120, f"{name} mirroring to the challenger again")


def test_a_replica_killed_under_load_costs_no_request_and_rejoins(scale: Scale) -> None:
    with _under_load(scale, slot=2, warm_s=3) as counts:
        victim = scale.child_pid("scoring-2")
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: scale.haproxy_servers()["scoring-2"]["status"] != "UP", 10, "scoring-2 marked down")
        _restarted(scale, "scoring-2", victim)
        before = int(scale.haproxy_servers()["scoring-2"]["stot"])
        time.sleep(3)
    after = scale.haproxy_servers()["scoring-2"]
    retried = sum(
        int(doc["wretr"] or 0) + int(doc["wredis"] or 0) for doc in scale.haproxy_servers().values()
    )
    assert set(counts) == {"ok"} and counts["ok"] > 500, counts
    assert int(after["stot"]) > before, after  # the restarted replica serves again
    print(f"killed replica: {counts['ok']} requests, 0 failed, {retried} retried or redispatched")


def test_a_replica_restarted_gracefully_is_drained(scale: Scale) -> None:
    """A rolling restart: SIGTERM to a replica under load. It stops taking connections and finishes
    what it holds, HAProxy sends new requests to the others, keepalive starts it again."""
    with _under_load(scale, slot=3, warm_s=2) as counts:
        victim = scale.child_pid("scoring-3")
        os.kill(victim, signal.SIGTERM)
        _restarted(scale, "scoring-3", victim)
        time.sleep(2)
    assert set(counts) == {"ok"} and counts["ok"] > 300, counts
    print(f"graceful restart: {counts['ok']} requests, 0 failed")


def _pending_of(scale: Scale, consumer: str) -> int:
    """Events ``consumer`` took from the challenger's stream and has not acknowledged."""
    from fraudops.serving.streams import GROUP, stream_key

    stream = stream_key(f"challenger-{scale.challenger}", scale.challenger)
    summary = scale.redis.xpending(stream, GROUP)
    return sum(int(c["pending"]) for c in summary.get("consumers") or [] if c["name"] == consumer)


def _drained(scale: Scale) -> bool:
    from fraudops.serving.streams import stream_backlog, stream_key

    lag, pending = stream_backlog(scale.redis, stream_key(f"challenger-{scale.challenger}", scale.challenger))
    return lag == 0 and pending == 0


def test_a_shadow_worker_killed_mid_stream_loses_no_mirrored_event(scale: Scale) -> None:
    from fraudops.serving.streams import worker_status

    rows = _stream_rows(2500, slot=4)
    # CI, 2026-12-07: 930 of 2,500 offered (37 %, not 50 %): a replica restarted by an earlier test
    # had not loaded the challenger yet, so a third of the traffic was offered to nobody.
    _all_offering(scale)
    claimed_before = sum(w["claimed"] for w in worker_status(scale.redis).values())
    with scale.client() as client, cf.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client.post, "/score", json=b) for b in rows]
        wait_for(lambda: _pending_of(scale, "shadow-1") > 0, 30, "shadow-1 holding events")
        os.kill(scale.child_pid("shadow-1"), signal.SIGKILL)
        assert all(f.result().status_code == 200 for f in futures)
    wait_for(lambda: _drained(scale), 180, "challenger stream drained")
    txids = [r["transaction_id"] for r in rows]
    _wait_rows(scale, txids)  # every production row, which names the challengers it was offered to
    want = _offered(scale, txids)
    assert 0.4 * len(rows) < len(want) < 0.6 * len(rows)  # the 0.5 sample
    wait_for(
        lambda: set(_shadow_rows(scale, txids)["transaction_id"]) >= want,
        120,
        "every offered event in the warehouse",
    )
    rows_ = _shadow_rows(scale, txids)
    assert set(rows_["transaction_id"]) == want and (rows_["n"] == 1).all()
    assert rows_["error"].isna().all(), rows_["error"].value_counts()
    claimed = sum(w["claimed"] for w in worker_status(scale.redis).values()) - claimed_before
    assert claimed > 0  # the dead worker's events were taken over, not lost
    print(f"worker killed: {len(want)} offered, all scored once, {claimed} claimed from the dead worker")


def _offered(scale: Scale, txids: list[str]) -> set[str]:
    """Transaction ids of ``txids`` the replicas offered to the challenger (their production rows
    say so)."""
    wh = scale.warehouse
    offered = wh.query_df(
        f"SELECT transaction_id FROM `{wh.table_id('predictions')}` WHERE mode = 'production' "
        "AND transaction_id IN UNNEST(@ids) AND STRPOS(sampled_for, @key) > 0",
        {"ids": txids, "key": f",{scale.challenger},"},
    )
    return set(offered["transaction_id"])


def _shadow_rows(scale: Scale, txids: list[str]) -> Any:
    """The challenger's shadow rows of ``txids``: transaction id, row count, one error."""
    wh = scale.warehouse
    return wh.query_df(
        f"SELECT transaction_id, COUNT(*) AS n, ANY_VALUE(error) AS error FROM "
        f"`{wh.table_id('predictions')}` WHERE mode = 'shadow' AND model_version = @v "
        "AND transaction_id IN UNNEST(@ids) GROUP BY transaction_id",
        {"v": scale.challenger, "ids": txids},
    )


def test_a_poison_event_is_dead_lettered_after_k_deliveries(scale: Scale) -> None:
    from fraudops.serving.streams import dead_key, stream_key

    body = {**_stream_rows(1, slot=5)[0], "transaction_id": POISON}
    stream = stream_key(f"challenger-{scale.challenger}", scale.challenger)
    with scale.client() as client:
        # Offered with probability 0.5 per event: send the poison until a production row names it
        # as sampled (a resend of the same transaction id is the same event).
        for _ in range(40):
            assert client.post("/score", json=body).status_code == 200
            time.sleep(0.3)  # the replica's sender writes its buffer to the stream within ~20 ms
            if int(scale.redis.get(dead_key(stream)) or 0) or scale.redis.xlen(stream):
                break
    wait_for(lambda: int(scale.redis.get(dead_key(stream)) or 0) >= 1, 120, "the poison dead-lettered")
    wh = scale.warehouse
    wait_for(
        lambda: (
            len(
                wh.query_df(
                    f"SELECT 1 FROM `{wh.table_id('predictions')}` WHERE mode = 'shadow' "
                    "AND transaction_id = @t AND error = 'shed:dead_letter'",
                    {"t": POISON},
                )
            )
            == 1
        ),
        60,
        "its dead-letter row",
    )
    wait_for(lambda: _drained(scale), 60, "nothing left pending")


def test_redis_restarted_under_traffic_scoring_answers_and_state_recovers(scale: Scale) -> None:
    from fraudops.stack import process

    rows = _stream_rows(900, slot=6)
    before, during, after = rows[:300], rows[300:600], rows[600:]
    with scale.client() as client:
        for body in before:
            assert client.post("/score", json=body).status_code == 200
        process.stop(scale.specs["redis"])
        for body in during:
            r = client.post("/score", json=body)
            assert r.status_code == 200, r.text
        degraded = [
            httpx.get(f"{s.url}/health").json()["status"]
            for n, s in scale.specs.items()
            if n.startswith("scoring-")
        ]
        assert degraded == ["degraded"] * 3, degraded
        metrics = "".join(
            httpx.get(f"{s.url}/metrics").text for n, s in scale.specs.items() if n.startswith("scoring-")
        )
        assert "fraudops_feature_state_degraded 1.0" in metrics
        process.start(scale.specs["redis"])
        wait_for(
            lambda: all(
                httpx.get(f"{s.url}/health").json()["status"] == "ready"
                for n, s in scale.specs.items()
                if n.startswith("scoring-")
            ),
            60,
            "every replica back on the shared state",
        )
        for body in after:
            assert client.post("/score", json=body).status_code == 200
    replayed = sum(
        httpx.get(f"{s.url}/version").json()["online_state"]["replayed"]
        for n, s in scale.specs.items()
        if n.startswith("scoring-")
    )
    assert replayed == len(during)
    txids = [r["transaction_id"] for r in after]
    _wait_rows(scale, txids)
    expected = _expected_vectors(rows, _champion_spec(scale))
    got = _features(scale, txids)
    mismatches = [t for t in txids if got[t] != expected[t]]
    assert not mismatches, (len(mismatches), got[mismatches[0]], expected[mismatches[0]])


@pytest.mark.retry_safety
def test_a_shadow_worker_killed_after_spooling_then_retried_writes_each_event_once(
    scale: Scale, tmp_path: Path
) -> None:
    """Crash point ``shadow_worker:after_spool``: a worker killed after its batch's rows are in its
    spool and before it acknowledged the entries. Retried (started again on its work folder), it
    ships the spool and claims the same entries, scores them again, and the keyed MERGE keeps one
    row per event. The stack's own workers are paused meanwhile (SIGSTOP), so the entries are the
    crashing worker's alone."""
    import subprocess
    import sys

    import orjson

    from fraudops.serving.streams import GROUP, stream_key

    rows = _stream_rows(600, slot=8)
    txids = [r["transaction_id"] for r in rows]
    stream = stream_key(f"challenger-{scale.challenger}", scale.challenger)
    work = tmp_path / "crasher"
    command = [sys.executable, "-m", "fraudops.serving.shadow_worker", "--consumer", "crasher"]
    command += ["--work-dir", str(work)]
    env = {**os.environ, "FRAUDOPS_SHADOW_CLAIM_IDLE_MS": "1000", "FRAUDOPS_SHADOW_WORKER_FAULT": ""}
    _all_offering(scale)
    paused = [scale.child_pid(n) for n in scale.specs if n.startswith("shadow-")]
    retried: subprocess.Popen[bytes] | None = None
    try:
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        # A worker stopped inside its blocking read (200 ms) would still be handed the next entries:
        # let those reads time out first.
        time.sleep(1.0)
        with scale.client() as client:
            for body in rows:
                assert client.post("/score", json=body).status_code == 200
        wait_for(lambda: scale.redis.xlen(stream) > 0, 30, "events on the challenger's stream")
        crashed = subprocess.run(
            command,
            env={**env, "FRAUDOPS_CRASH_AT": "shadow_worker:after_spool"},
            timeout=180,
            capture_output=True,
        )
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
        pending = scale.redis.xpending_range(stream, GROUP, "-", "+", 1000, consumername="crasher")
        held = [
            orjson.loads(scale.redis.xrange(stream, p["message_id"], p["message_id"])[0][1]["e"])[1]
            for p in pending
        ]
        assert held, "the crashed worker held no unacknowledged entry"
        # Its rows were written before the kill: its orphaned shipper seals and ships its spool.
        wait_for(
            lambda: set(_shadow_rows(scale, held)["transaction_id"]) == set(held),
            120,
            "the crashed worker's rows in the warehouse",
        )
        with (tmp_path / "retried.log").open("wb") as log:  # the child holds its own copy
            retried = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: _drained(scale), 180, "the retried worker took every entry")
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
        paused = []
        _wait_rows(scale, txids)
        want = _offered(scale, txids)
        assert 0.4 * len(rows) < len(want) < 0.6 * len(rows)  # the 0.5 sample
        wait_for(
            lambda: set(_shadow_rows(scale, txids)["transaction_id"]) >= want,
            120,
            "every offered event in the warehouse",
        )
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
        if retried is not None:
            retried.terminate()
            retried.wait(30)
    shadow = _shadow_rows(scale, txids)
    assert set(shadow["transaction_id"]) == want and (shadow["n"] == 1).all()
    assert shadow["error"].isna().all(), shadow["error"].value_counts()
    print(f"killed after spooling: {len(held)} entries held, {len(want)} offered, each in the warehouse once")
