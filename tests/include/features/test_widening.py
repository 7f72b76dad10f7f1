"""Widening the online feature union for a new challenger, off the hot path (issue #18, finding 3).

Before: ``FeatureRouter.ensure`` read 30 days of history from the warehouse and backfilled the new
families while holding the lock every ``/score`` takes, so production stalled for the whole
backfill (about 3 s in the demo). Now the history is read and the new families are built off the
lock (in a scratch backend, or the new families' own Redis keys), live events are recorded
meanwhile and replayed into the new state under the lock, which then only swaps references.

Checked here: the features after a widening are exactly the offline builder's (embedded and Redis,
with live events during the build, some of them also in the history), and a real router over the
BigQuery emulator keeps computing vectors with a short worst case while a widening runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fraudops.features import FeatureSpec, OnlineFeatureStore, build_offline
from fraudops.features.offline import times_us
from fraudops.features.online import EmbeddedBackend, RedisBackend
from fraudops.features.parity import compare, synthetic_events

NARROW = FeatureSpec.from_names(["card_tx_count_1d", "card_amount_sum_1d"])


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.sort_values(["event_time", "transaction_id"]).to_dict("records")


@pytest.fixture(params=["embedded", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[EmbeddedBackend | RedisBackend]:
    if request.param == "embedded":
        yield EmbeddedBackend()
        return
    redis_url = request.getfixturevalue("redis_url")
    b = RedisBackend(redis_url, prefix="test:widening")
    b.clear()
    try:
        yield b
    finally:
        b.clear()
        b.close()


def test_widening_with_live_events_during_the_build_matches_the_offline_builder(
    backend: EmbeddedBackend | RedisBackend,
) -> None:
    tx, labels = synthetic_events(3000, seed=11, days=12)
    t = times_us(tx["event_time"])
    cut, mid, late = (int(np.quantile(t, q)) for q in (0.5, 0.7, 0.85))
    known = labels.loc[times_us(labels["label_time"]) < mid]  # what the warehouse knows at ``mid``
    store = OnlineFeatureStore(NARROW, backend)
    store.backfill(tx.loc[t < cut], known.loc[times_us(known["label_time"]) < cut])
    for row in _rows(tx.loc[(t >= cut) & (t < mid)]):  # served with the narrow spec
        store.update_and_vector(row)

    # The widening reads history up to a little past ``mid`` (the warehouse already holds events the
    # service sees while the build runs), builds off the hot path, and meanwhile the narrow store
    # serves [mid, late): those events are recorded and replayed at commit.
    overlap = int(np.quantile(t, 0.72))
    prepared = store.prepare(FeatureSpec.default(), tx.loc[t < overlap], known)
    assert set(prepared.families) == {"terminal", "merchant", "region", "device"}
    if isinstance(backend, EmbeddedBackend):  # built beside the live state, not in it
        assert prepared.backend is not backend and "terminal" not in backend.families
    recorded = []
    for row in _rows(tx.loc[(t >= mid) & (t < late)]):
        store.update_and_vector(row)
        recorded.append(row)
    assert store.commit(prepared, recorded) == list(prepared.families)
    assert store.spec == FeatureSpec.default()

    after = tx.loc[t >= late]
    got = {str(r["transaction_id"]): store.update_and_vector(r) for r in _rows(after)}
    online = pd.DataFrame.from_dict(got, orient="index", columns=store.spec.names)
    offline = build_offline(tx, known).loc[online.index]
    result = compare(offline, online)
    assert result.ok, result.describe()
    print(f"\n{backend.name}: {len(after)} events after the widening, 0 mismatches")


@pytest.mark.integration
def test_the_hot_path_keeps_computing_while_a_router_widens(warehouse: Any) -> None:
    from fraudops.serving.features import FeatureRouter

    tx, labels = synthetic_events(60_000, seed=3, days=30, start=pd.Timestamp("2026-05-01", tz="UTC"))
    warehouse.upsert("transactions", tx)
    warehouse.upsert("labels", labels)
    router = FeatureRouter(warehouse=warehouse, warm_days=30)
    router.ensure([NARROW])
    live = _rows(tx.tail(2000))
    last = tx["event_time"].max()
    stalls: list[float] = []
    done = threading.Event()
    errors: list[BaseException] = []

    def widen() -> None:
        try:
            router.ensure([NARROW, FeatureSpec.default()])
        except BaseException as err:  # reported by the assertion below
            errors.append(err)
        finally:
            done.set()

    widener = threading.Thread(target=widen)
    i = 0
    widener.start()
    while not done.is_set():
        row = {
            **live[i % len(live)],
            "transaction_id": f"live-{i}",
            "event_time": last + pd.Timedelta(seconds=i),
        }
        start = time.perf_counter()
        router.compute(row)
        stalls.append(time.perf_counter() - start)
        i += 1
        time.sleep(0.001)
    widener.join()
    assert not errors, errors
    info = router.last_widening
    assert info is not None and set(info["families"]) == {"terminal", "merchant", "region", "device"}
    worst = max(stalls)
    print(
        f"\nwidening: {info['history_events']} history events, {info['off_lock_s']} s off the lock, "
        f"{info['under_lock_s'] * 1e3:.1f} ms under it ({info['replayed_events']} live events replayed); "
        f"{len(stalls)} vectors computed meanwhile, worst {worst * 1e3:.1f} ms, p99 "
        f"{np.percentile(stalls, 99) * 1e3:.2f} ms"
    )
    assert info["off_lock_s"] > 1.0  # a real backfill happened ...
    assert info["replayed_events"] > 50  # ... while live events kept coming
    assert worst < min(0.25, info["off_lock_s"] / 5), worst  # ... and none waited for it
    assert router.union is not None and router.union.id == FeatureSpec.default().id
