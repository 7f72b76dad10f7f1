"""Bounded online state (issue #18, finding 5): idle entities expire past their longest window
without changing any feature (parity with the offline builder), a cap per family evicts the least
recent entity (counted, logged, exported), and a flood of random ids stays within a stated memory
bound. The memory figures are measured in a fresh subprocess (resident set from /proc/self/statm),
through the entry point the scoring service uses (``ServingOptions`` → ``FeatureRouter.compute``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fraudops.features import EmbeddedBackend, FeatureSpec, OnlineFeatureStore
from fraudops.features.parity import run_parity, synthetic_events

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
DAY = dt.timedelta(days=1)
DAY_US = 86_400_000_000
SWEEP_EVERY_US = 600_000_000  # the TTL sweep runs every 10 minutes of event time
#: The contract: state is evicted once its newest event is the family's longest window plus two
#: days (the lateness allowance, and as much again as margin) behind the store's newest event.
#: Terminal and merchant state also serves their delayed risk families (30 d shifted by up to 14 d).
TTL_DAYS = {"card": 32, "terminal": 46, "merchant": 46, "region": 3, "device": 3}

#: Resident memory a capped flood may add per cap slot (every id of every event new, so each
#: family holds ``max_entities`` entities: card, terminal, merchant, region, device). Measured
#: 3.3-3.4 KB once the cap churns (allocator fragmentation included); the bound leaves room for a
#: busy machine.
BYTES_PER_SLOT_BOUND = 4_000
FAMILIES = ("card", "terminal", "merchant", "region", "device")


def _phase(
    n: int, seed: int, start: dt.datetime, days: float, n_cards: int, tag: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    tx, labels = synthetic_events(n, seed=seed, days=days, start=start, n_cards=n_cards)
    tx["transaction_id"] = tag + tx["transaction_id"]
    labels["transaction_id"] = tag + labels["transaction_id"]
    return tx, labels


def _gap_stream() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Five busy days, 55 quiet ones for most cards (a few stay active across the gap), then five
    busy days again: half the cards and terminals come back after their state has expired."""
    parts = [
        _phase(1500, 21, T0, 5, 60, "a-"),
        _phase(400, 23, T0 + 3 * DAY, 59, 5, "b-"),  # card-0..4 bridge the gap
        _phase(1500, 22, T0 + 60 * DAY, 5, 80, "c-"),
    ]
    last = parts[2][0]  # cards 30..59 and terminals 12..24 of the first phase never come back
    card_no = last["card_id"].str.removeprefix("card-").astype(int)
    last.loc[card_no.between(30, 59), "card_id"] = "late-" + last["card_id"]
    term_no = last["terminal_id"].str.removeprefix("term-").astype(int)
    last.loc[term_no >= 12, "terminal_id"] = "late-" + last["terminal_id"]
    tx = pd.concat([p[0] for p in parts], ignore_index=True)
    labels = pd.concat([p[1] for p in parts], ignore_index=True)
    return tx, labels


def _times_us(tx: pd.DataFrame) -> pd.Series:
    return (tx["event_time"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)


def _newest(tx: pd.DataFrame, column: str) -> dict[str, int]:
    rows = tx.dropna(subset=[column])
    return {str(k): int(v) for k, v in _times_us(rows).groupby(rows[column]).max().items()}


def test_idle_entities_expire_past_the_longest_window_and_parity_holds() -> None:
    """State of entities idle longer than their family's TTL is evicted as the clock advances, and
    every vector (before, across and after the gap, returning cards included) equals the offline
    builder's, in order and with late arrivals."""
    tx, labels = _gap_stream()
    backend = EmbeddedBackend()
    result = run_parity(tx, labels, FeatureSpec.every(), backend=backend)
    assert result.ok, result.describe()
    now = int(_times_us(tx).max())
    held = {
        "card": set(backend._cards),
        "terminal": set(backend._times["terminal"]),
        "device": set(backend._times["device"]),
    }
    for fam, column in (("card", "card_id"), ("terminal", "terminal_id"), ("device", "device_id")):
        bound = now - TTL_DAYS[fam] * DAY_US
        newest = _newest(tx, column)
        live = {k for k, t in newest.items() if t > bound}
        expired = {k for k, t in newest.items() if t <= bound - SWEEP_EVERY_US}  # swept that often
        assert live <= held[fam], fam
        assert not held[fam] & expired, f"{len(held[fam] & expired)} expired {fam} entities still held"
        assert expired, fam

    from fraudops.features.online import TTL_US

    assert {fam: days * DAY_US for fam, days in TTL_DAYS.items()} == TTL_US
    backend.sweep()  # on demand: exactly the entities past their TTL go
    bound = now - TTL_US["card"]
    assert set(backend._cards) == {k for k, t in _newest(tx, "card_id").items() if t > bound}
    stats = backend.stats()
    # the first phase's cards were evicted during the gap (and half of them came back)
    assert stats.evictions[("card", "ttl")] >= 55
    assert stats.entities["card"] == len(held["card"])
    assert stats.evictions[("terminal", "ttl")] > 0 and stats.evictions[("device", "ttl")] > 0
    assert all(v == 0 for (fam, reason), v in stats.evictions.items() if reason == "cap")

    # late arrivals (15 % up to 6 h late) see the same vectors as the offline builder too
    rng = np.random.default_rng(4)
    arrival = _times_us(tx).to_numpy() + (rng.random(len(tx)) < 0.15) * rng.uniform(0, 6 * 3600e6, len(tx))
    jittered = EmbeddedBackend()
    result = run_parity(tx, labels, FeatureSpec.every(), backend=jittered, arrival_order=arrival)
    assert result.ok, result.describe()
    assert jittered.stats().evictions[("card", "ttl")] > 0


def _tx(i: int, card: str, t: dt.datetime, **ids: str) -> dict[str, object]:
    return {
        "transaction_id": f"tx-{i:06d}",
        "event_time": t,
        "card_id": card,
        "terminal_id": ids.get("terminal", "term-1"),
        "merchant_id": "m-1",
        "amount": 10.0 + i % 7,
        "region": "eu-west",
        "device_id": ids.get("device"),
    }


def test_the_cap_evicts_the_least_recent_entities_counted_logged_and_exported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from fraudops.serving.features import FeatureRouter
    from fraudops.serving.metrics import ServingMetrics
    from fraudops.serving.options import ServingOptions

    monkeypatch.setenv("FRAUDOPS_FEATURE_MAX_ENTITIES", "50")
    options = ServingOptions.from_env()
    assert options.feature_max_entities == 50
    router = FeatureRouter(max_entities=options.feature_max_entities)
    router.ensure([FeatureSpec.default()])
    count_1d = FeatureSpec.default().names.index("card_tx_count_1d")
    with caplog.at_level(logging.WARNING, logger="fraudops.features.online"):
        for i in range(200):
            t = T0 + dt.timedelta(seconds=i)
            router.compute(_tx(i, f"card-{i}", t, terminal=f"term-{i}", device=f"dev-{i}"))
            if i % 10 == 0:  # a card in steady use is recent, never the one evicted
                v = router.compute(_tx(10_000 + i, "card-steady", t + dt.timedelta(milliseconds=1)))
                assert v[count_1d] == i // 10
    backend = router.store.backend if router.store else None
    assert isinstance(backend, EmbeddedBackend)
    assert set(backend._cards) == {"card-steady", *(f"card-{i}" for i in range(151, 200))}
    assert set(backend._times["terminal"]) == {"term-1", *(f"term-{i}" for i in range(151, 200))}
    stats = backend.stats()
    assert stats.entities["card"] == stats.entities["terminal"] == stats.entities["device"] == 50
    assert stats.evictions[("card", "cap")] == 151  # 200 + card-steady - 50
    assert stats.evictions[("device", "cap")] == 150
    assert stats.evictions[("card", "ttl")] == 0
    assert any("cap reached" in r.getMessage() for r in caplog.records)
    assert len(caplog.records) <= 3 * 9  # logged at powers of two, not per eviction

    # an evicted card restarts cold; a retained one keeps its history
    t = T0 + dt.timedelta(seconds=300)
    assert router.compute(_tx(20_000, "card-0", t))[count_1d] == 0
    assert router.compute(_tx(20_001, "card-199", t))[count_1d] == 1

    metrics = ServingMetrics()
    metrics.set_feature_stats(router.stats())
    text = metrics.render()[0].decode()
    assert 'fraudops_feature_evictions_total{family="card",reason="cap"} 152.0' in text
    assert 'fraudops_feature_entities{family="card"} 50.0' in text
    metrics.set_feature_stats(router.stats())  # cumulative totals are not counted twice
    assert (
        'fraudops_feature_evictions_total{family="card",reason="cap"} 152.0' in metrics.render()[0].decode()
    )


def test_redis_keys_expire_past_the_longest_window(redis_url: str) -> None:
    """The shared store bounds itself too: every key written gets its family's TTL (wall clock)."""
    from fraudops.features import RedisBackend
    from fraudops.features.online import TTL_US

    backend = RedisBackend(redis_url, prefix="test:bounds")
    backend.clear()
    store = OnlineFeatureStore(backend=backend)
    tx, labels = synthetic_events(200, seed=3, days=2)
    store.backfill(tx.iloc[:100], labels)
    for row in tx.iloc[100:].to_dict("records"):
        store.update_and_vector(row)
    keys = [k for k in backend.r.scan_iter("test:bounds:*") if k != "test:bounds:families"]
    assert {k.split(":")[2] for k in keys} >= {*FAMILIES, "terminal_labels", "merchant_labels"}
    for key in keys:
        fam = key.split(":")[2].removesuffix("_labels")
        ttl_ms = backend.r.pttl(key)
        assert TTL_US[fam] // 1000 - 60_000 < ttl_ms <= TTL_US[fam] // 1000, key
    backend.clear()


#: Run in a fresh interpreter: N events through the online features of a ``ScoringService`` built
#: from the environment (cap from FRAUDOPS_FEATURE_MAX_ENTITIES; the call ``/score`` makes per
#: event), resident memory sampled every 50 000 events; stops early past ``limit`` bytes. Prints
#: one JSON line.
FLOOD = r"""
import json, os, pathlib, random, sys, tempfile, time
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
from fraudops.features import FeatureSpec
import fraudops.features.online as online
from fraudops.serving.options import ServingOptions
from fraudops.serving.service import ScoringService
n, limit, profile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
work_dir = pathlib.Path(tempfile.mkdtemp())
options = ServingOptions.from_env(log_predictions=False, warm_days=0, work_dir=work_dir)
router = ScoringService(options, shadow=False).router
router.ensure([FeatureSpec.default()])
rng = random.Random(7)
t0 = 1767225600.0  # 2026-01-01
tx = {"transaction_id": "", "event_time": t0, "card_id": "", "terminal_id": "term-1",
      "merchant_id": "m-1", "amount": 12.5, "region": "eu-west", "device_id": None}
for i in range(5000):  # warm the interpreter and allocator before the baseline
    tx.update(transaction_id=f"w{i}", card_id=f"w{i % 50}", event_time=t0 + i * 1e-3)
    router.compute(tx)
base, start, peak, done = rss(), time.perf_counter(), 0, 0
for i in range(n):
    if profile == "flood":  # every id new
        tx["card_id"] = "%016x" % rng.getrandbits(64)
        tx["terminal_id"] = "t%015x" % rng.getrandbits(60)
        tx["merchant_id"] = "m%015x" % rng.getrandbits(60)
        tx["region"] = "r%015x" % rng.getrandbits(60)
        tx["device_id"] = "d%015x" % rng.getrandbits(60)
        tx["event_time"] = t0 + 10 + i * 1e-3
    else:  # active cards: `profile` events each over 30 days, 5 000 terminals, a device per card
        c = i % (n // int(profile))
        tx["card_id"] = "card-%08d" % c
        tx["terminal_id"] = "term-%d" % rng.randrange(5000)
        tx["device_id"] = "dev-%08d" % c
        tx["event_time"] = t0 + 10 + i * (30 * 86400 / n)
    tx["transaction_id"] = "tx-%d" % i
    router.compute(tx)
    done = i + 1
    if done % 50000 == 0:
        peak = max(peak, rss() - base)
        if peak > limit:
            break
peak = max(peak, rss() - base)
print(json.dumps({"events": done, "grown": peak, "seconds": time.perf_counter() - start,
                  "module": online.__file__}), flush=True)
stats = router.store.backend.stats()
evictions = {"/".join(k): v for k, v in stats.evictions.items()}
print(json.dumps({"entities": stats.entities, "evictions": evictions}))
"""


def _run(n: int, limit: int, profile: str, env: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(memory: events run, bytes grown, seconds, module), (state: entities, evictions)."""
    proc = subprocess.run(
        [sys.executable, "-c", FLOOD, str(n), str(limit), profile],
        env={**os.environ, "FRAUDOPS_REDIS_URL": "", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-3000:]
    memory = json.loads(lines[0])
    n_mib, limit_mib = memory["grown"] / 2**20, limit / 2**20
    assert memory["events"] == n, (
        f"stopped after {memory['events']} events: +{n_mib:.0f} MiB > {limit_mib:.0f} MiB"
    )
    assert proc.returncode == 0 and len(lines) == 2, proc.stderr[-3000:]
    return memory, json.loads(lines[1])


@pytest.mark.reliability
def test_a_million_random_ids_stay_within_the_memory_bound() -> None:
    """1 000 000 events, each with new card, terminal, merchant, region and device ids, through the
    service's entry point with a cap of 100 000 per family: resident memory stays under cap x 4 KB
    (without the cap it grows by ~3.3 KB an event, past the bound before 150 000 events)."""
    cap = 100_000
    limit = cap * BYTES_PER_SLOT_BOUND
    out, state = _run(1_000_000, limit, "flood", {"FRAUDOPS_FEATURE_MAX_ENTITIES": str(cap)})
    grown = out["grown"]
    print(
        f"\n1 000 000 random ids (cap {cap:,} per family): resident memory +{grown / 2**20:.0f} MiB "
        f"({grown / cap:.0f} B per capped slot; bound {limit / 2**20:.0f} MiB) in {out['seconds']:.1f} s; "
        f"{out['module']}"
    )
    assert grown <= limit
    entities, evictions = state["entities"], state["evictions"]
    warm = {"card": 50, "terminal": 1, "merchant": 1, "region": 1, "device": 0}  # the warm-up's
    for fam in FAMILIES:
        assert entities[fam] == cap
        assert evictions[f"{fam}/cap"] == 1_000_000 + warm[fam] - cap


@pytest.mark.reliability
def test_memory_per_100k_active_cards() -> None:
    """The README's figure: resident memory per 100 000 cards (i) each seen once, every other id
    new too (the random-id flood), (ii) active: 5 events each over 30 days."""
    flood, _ = _run(100_000, 1 << 40, "flood", {})
    active, _ = _run(500_000, 1 << 40, "5", {})
    f, a = flood["grown"], active["grown"]
    print(
        f"\nper 100 000 cards: {f / 2**20:.0f} MiB seen once with every other id new too, "
        f"{a / 2**20:.0f} MiB active (5 events each over 30 days, 5 000 terminals, a device per card)"
    )
    assert 0 < f < 100_000 * BYTES_PER_SLOT_BOUND
