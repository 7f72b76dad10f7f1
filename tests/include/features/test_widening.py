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
    rows: list[dict[str, Any]] = frame.sort_values(["event_time", "transaction_id"]).to_dict("records")
    return rows


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


@pytest.mark.integration
def test_labels_that_arrive_while_serving_reach_the_online_store(warehouse: Any) -> None:
    """The online store learns fraud labels from the warehouse as they arrive (label feed), so the
    label-based risk features of live events equal the offline builder's. Without the feed, a
    store knows only its warm-up's labels: the control below shows the skew that made fresh-clone
    run 6 reject a retrained challenger on feature drift."""
    from fraudops.serving.features import FeatureRouter

    tx, labels = synthetic_events(2500, seed=7, days=12, start=pd.Timestamp("2026-05-01", tz="UTC"))
    t = times_us(tx["event_time"])
    cut = int(np.quantile(t, 0.6))
    lt = times_us(labels["label_time"])
    warehouse.upsert("transactions", tx.loc[t < cut])
    warehouse.upsert("labels", labels.loc[lt < cut])
    router = FeatureRouter(warehouse=warehouse, warm_days=30)
    router.ensure([FeatureSpec.default()])
    # The control: the same warm-up, no label feed.
    stale = OnlineFeatureStore(FeatureSpec.default())
    stale.backfill(tx.loc[t < cut], labels.loc[lt < cut])

    live = tx.loc[t >= cut].sort_values(["event_time", "transaction_id"])
    pending = labels.loc[lt >= cut].sort_values("label_time")
    pending_t = times_us(pending["label_time"])
    li, synced, syncs = 0, 0, 0
    got, control = {}, {}
    for row in live.to_dict("records"):
        now = times_us(pd.Series([row["event_time"]]))[0]
        due = li
        while due < len(pending) and pending_t[due] < now:
            due += 1
        if due > li:  # these labels are known before this event: the event log has them, and a
            # sync runs before the event is scored (the service does it every few seconds)
            warehouse.upsert(
                "transactions", tx[tx["transaction_id"].isin(pending["transaction_id"].iloc[li:due])]
            )
            warehouse.upsert("labels", pending.iloc[li:due])
            synced += router.sync_labels()
            syncs += 1
            li = due
        got[str(row["transaction_id"])] = router.compute(row)
        control[str(row["transaction_id"])] = stale.update_and_vector(row)
    names = FeatureSpec.default().names
    offline = build_offline(tx, labels)
    online = pd.DataFrame.from_dict(got, orient="index", columns=names)
    result = compare(offline.loc[online.index], online)
    before = compare(
        offline.loc[online.index], pd.DataFrame.from_dict(control, orient="index", columns=names)
    )
    print(
        f"\nlabel feed: {synced} fraud labels in {syncs} syncs over {len(online)} live events: "
        f"{result.mismatches} mismatches with the offline builder; without the feed {before.mismatches} "
        f"(worst: {before.worst_feature})"
    )
    assert synced == int(pending["is_fraud"].iloc[:li].astype(bool).sum())  # each counted once
    assert result.ok, result.describe()
    assert not before.ok  # the skew the feed removes


def test_a_widening_for_a_new_spec_keeps_every_served_specs_slice() -> None:
    """Regression (CI, 2026-12-07): the scoring service widens the union with the new challenger's
    spec only; the union's positions move, and the slices of the specs already served (the
    champion's) must be rebuilt with it (they were dropped: every request failed with KeyError)."""
    from fraudops.serving.features import FeatureRouter

    tx, _ = synthetic_events(3000, seed=4, days=12)
    rows = _rows(tx)
    champion = FeatureSpec.default(delay="3d")
    challenger = FeatureSpec.default(delay="1d")
    router = FeatureRouter()
    router.ensure([champion])
    for row in rows[:1500]:
        router.compute(row)
    router.ensure([challenger])  # widens: the 1 d families are new
    assert router.union is not None and len(router.union) == len(champion) + 18
    for row in rows[1500:1600]:
        union = router.compute(row)
        a, b = router.slice(union, champion.id), router.slice(union, challenger.id)
        assert len(a) == len(champion) and len(b) == len(challenger)
        by_name = dict(zip(router.union.names, union, strict=True))
        assert a == [by_name[n] for n in champion.names] and b == [by_name[n] for n in challenger.names]
