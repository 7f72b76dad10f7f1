"""Feature store: registry, specs, no leakage, offline/online parity (embedded and Redis)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from fraudops.exceptions import FeatureSpecError
from fraudops.features import (
    REGISTRY,
    EmbeddedBackend,
    FeatureDefinition,
    FeatureRegistry,
    FeatureSpec,
    OnlineFeatureStore,
    RedisBackend,
    build_offline,
    resolve,
)
from fraudops.features.offline import times_us
from fraudops.features.parity import compare, run_parity, stream_online, synthetic_events

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
#: Every feature, the delayed risk families of every label delay included.
EVERY = FeatureSpec.every()


@pytest.fixture(scope="module")
def events() -> tuple[pd.DataFrame, pd.DataFrame]:
    return synthetic_events(3000, seed=11, days=12)


def _jittered_arrival(tx: pd.DataFrame, seed: int, max_delay_s: float = 6 * 3600) -> np.ndarray:
    rng = np.random.default_rng(seed)
    late = rng.random(len(tx)) < 0.15
    return times_us(tx["event_time"]) + late * rng.uniform(0, max_delay_s * 1e6, len(tx))


# -- registry and specs -------------------------------------------------------------------------
def test_registry_metadata_complete() -> None:
    defs = REGISTRY.active()
    assert len(defs) >= 30
    for d in defs:
        assert d.name and d.version >= 1 and d.description and d.owner and d.aggregation and d.tags
        assert d.entity in {"transaction", "card", "customer", "terminal", "merchant", "device", "region"}
        assert d.created_at.tzinfo is not None
    names = {d.name for d in defs}
    for needed in (
        "card_tx_count_1h",
        "card_amount_sum_30d",
        "card_amount_zscore_30d",
        "card_seconds_since_last",
        "card_new_device_30d",
        "card_new_terminal_30d",
        "card_new_region_30d",
        "terminal_fraud_rate_7d",
        "merchant_fraud_rate_30d",
        "region_tx_count_1h",
        "device_tx_count_1h",
    ):
        assert needed in names
    rows = REGISTRY.to_rows()
    assert {
        "name",
        "version",
        "entity",
        "window",
        "aggregation",
        "description",
        "owner",
        "tags",
        "definition_hash",
        "label_delay",
        "created_at",
        "registered_at",
    } == set(rows[0])
    assert isinstance(json.loads(rows[0]["tags"]), list)


def test_registry_versions_and_get() -> None:
    base = REGISTRY.get("card_tx_count_1h")
    v2 = FeatureDefinition(**{**base.__dict__, "version": 2})
    reg = FeatureRegistry([*REGISTRY.list(), v2])
    assert reg.get("card_tx_count_1h").version == 2
    assert reg.get("card_tx_count_1h", 1).version == 1
    with pytest.raises(FeatureSpecError, match="no version 7"):
        reg.get("card_tx_count_1h", 7)
    with pytest.raises(ValueError, match="twice"):
        FeatureRegistry([base, base])


def test_spec_roundtrip_and_stable_id() -> None:
    spec = FeatureSpec.from_names(["card_tx_count_1h", "tx_amount", "terminal_fraud_rate_7d"])
    assert spec.id.startswith("fs-") and len(spec.id) == 15
    again = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.id == spec.id
    assert FeatureSpec.from_names(["tx_amount", "card_tx_count_1h"]).id != spec.id  # order matters
    with pytest.raises(FeatureSpecError, match="does not match"):
        FeatureSpec.from_dict({**spec.to_dict(), "id": "fs-000000000000"})


def test_spec_errors_name_every_missing_or_mismatched_feature() -> None:
    spec = FeatureSpec((("card_tx_count_1h", 1), ("no_such_feature", 1), ("tx_amount", 3)))
    with pytest.raises(FeatureSpecError) as err:
        resolve(spec)
    msg = str(err.value)
    assert "no_such_feature@v1: missing" in msg and "tx_amount@v3: version mismatch" in msg
    assert "card_tx_count_1h" not in msg
    with pytest.raises(FeatureSpecError, match="no_such_feature"):
        OnlineFeatureStore(spec)
    tx, labels = synthetic_events(50, seed=1)
    with pytest.raises(FeatureSpecError, match="tx_amount@v3"):
        build_offline(tx, labels, spec)


def test_store_produces_exactly_the_spec_vector(events: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    tx, labels = events
    spec = FeatureSpec.from_names(["region_tx_count_1h", "tx_amount", "card_tx_count_1d"])
    store = OnlineFeatureStore(spec)
    vec = store.update_and_vector(tx.iloc[0].to_dict())
    assert len(vec) == 3 and vec[1] == tx.iloc[0]["amount"]
    assert store.families == ("tx", "card", "region")
    off = build_offline(tx, labels, spec)
    assert list(off.columns) == spec.names and (off.dtypes == np.float64).all()


# -- point-in-time correctness ------------------------------------------------------------------
def _tx(i: int, minutes: float, card: str = "c1", amount: float = 10.0, **kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "transaction_id": f"t{i:03d}",
        "event_time": T0 + dt.timedelta(minutes=minutes),
        "card_id": card,
        "terminal_id": "term1",
        "merchant_id": "m1",
        "amount": amount,
        "region": "eu-west",
        "device_id": "d1",
    }
    row.update(kw)
    return row


def test_hand_computed_semantics() -> None:
    rows = [
        _tx(1, 0, amount=10.0),
        _tx(2, 30, amount=20.0),
        _tx(4, 30, amount=5.0),  # t002/t004 same time
        _tx(3, 80, amount=40.0, device_id="d2", region="us-east"),
    ]
    tx = pd.DataFrame(rows)
    labels = pd.DataFrame(
        [
            {
                "transaction_id": "t001",
                "event_time": T0,
                "label_time": T0 + dt.timedelta(minutes=30),
                "is_fraud": True,
                "label_source": "chargeback",
            }
        ]
    )
    off = build_offline(tx, labels)
    # t004 shares t002's timestamp but sorts after it, so t002 is visible to t004 and not vice versa.
    assert off.loc["t002", "card_tx_count_1h"] == 1 and off.loc["t004", "card_tx_count_1h"] == 2
    assert off.loc["t004", "card_amount_sum_1h"] == 30.0
    assert off.loc["t004", "card_seconds_since_last"] == 0.0
    assert off.loc["t001", "card_seconds_since_last"] == 30 * 86400
    # window (t-1h, t]: t001 at -80 min is out of t003's 1 h window
    assert off.loc["t003", "card_tx_count_1h"] == 2 and off.loc["t003", "card_tx_count_1d"] == 3
    assert off.loc["t003", "card_new_device_30d"] == 1 and off.loc["t003", "card_new_region_30d"] == 1
    assert off.loc["t002", "card_new_device_30d"] == 0 and off.loc["t001", "card_new_terminal_30d"] == 1
    # label_time == event_time of t002/t004: strictly before is required, so not yet known
    assert off.loc["t002", "terminal_fraud_count_7d"] == 0 and off.loc["t004", "terminal_fraud_count_7d"] == 0
    assert off.loc["t003", "terminal_fraud_count_7d"] == 1
    assert off.loc["t003", "terminal_fraud_rate_7d"] == pytest.approx(1 / 3)
    mean_c = (1000 + 2000 + 500) / 3
    std_c = np.sqrt((1000**2 + 2000**2 + 500**2) / 3 - mean_c**2)
    assert off.loc["t003", "card_amount_zscore_30d"] == pytest.approx((4000 - mean_c) / std_c)
    online = stream_online(tx, labels)
    assert compare(off, online).ok


def test_no_leakage_future_events_and_unknown_labels(events: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    tx, labels = events
    base = build_offline(tx, labels)
    t = times_us(tx["event_time"])
    cut = int(np.quantile(t, 0.6))
    cutoff = pd.Timestamp(cut, unit="us", tz="UTC")
    earlier = tx.loc[t < cut, "transaction_id"].astype(str)
    # 1. future events (copies of real ones, shifted after the cut, same cards/terminals/devices)
    future = tx.loc[t < cut].sample(500, random_state=0).copy()
    future["transaction_id"] = "zz-future-" + future["transaction_id"].astype(str)
    future["event_time"] = cutoff + pd.to_timedelta(np.arange(500), unit="s")
    # 2. labels not known yet at the cut: every earlier transaction labelled fraud after the cut
    late_labels = pd.DataFrame(
        {
            "transaction_id": tx.loc[t < cut, "transaction_id"],
            "event_time": tx.loc[t < cut, "event_time"],
            "label_time": cutoff,
            "is_fraud": True,
            "label_source": "chargeback",
        }
    )
    more = build_offline(pd.concat([tx, future]), pd.concat([labels, late_labels]))
    pd.testing.assert_frame_equal(base.loc[earlier], more.loc[earlier])
    # ...and they do change later features, so the test has teeth
    later = tx.loc[t > cut + 3600_000_000, "transaction_id"].astype(str)
    assert not base.loc[later].equals(more.loc[later])
    # 3. online: a label recorded before the event but known only after it changes nothing
    row = tx.loc[t >= cut].iloc[0].to_dict()
    store = OnlineFeatureStore(backend=EmbeddedBackend())
    store.backfill(tx.loc[t < cut], labels.loc[times_us(labels["label_time"]) < cut])
    before = store.vector(row)
    for lab in late_labels.head(300).itertuples():
        store.add_label(
            lab.transaction_id,
            lab.event_time,
            row["event_time"],
            True,
            tx.set_index("transaction_id").loc[lab.transaction_id, "terminal_id"],
        )
    assert store.vector(row) == before


# -- parity -------------------------------------------------------------------------------------
def test_parity_in_order_embedded(events: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    tx, labels = events
    result = run_parity(tx, labels)
    assert result.ok, result.describe()
    assert result.events == len(tx)


@pytest.mark.parametrize("seed", [1, 2])
def test_parity_out_of_order_embedded(events: tuple[pd.DataFrame, pd.DataFrame], seed: int) -> None:
    tx, labels = events
    arrival = _jittered_arrival(tx, seed)
    result = run_parity(tx, labels, EVERY, arrival_order=arrival)
    assert result.ok, result.describe()
    assert result.features == len(EVERY) > 100
    # a late event really changes what earlier-arriving events see
    assert not build_offline(tx, labels).equals(build_offline(tx, labels, arrival_order=arrival))


def test_parity_beyond_the_retention_embedded() -> None:
    """45 days on few entities: every series is trimmed repeatedly while events keep arriving."""
    tx, labels = synthetic_events(4000, seed=7, days=45, n_cards=25)
    assert run_parity(tx, labels, EVERY).ok
    result = run_parity(tx, labels, EVERY, arrival_order=_jittered_arrival(tx, 3))
    assert result.ok, result.describe()


def test_parity_detects_a_difference(events: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    tx, labels = events
    off = build_offline(tx, labels)
    on = off.copy()
    on.iloc[7, 3] += 1e-6
    result = compare(off, on)
    assert not result.ok and result.mismatches == 1
    assert result.worst_transaction == off.index[7] and result.worst_feature == off.columns[3]


def test_duplicate_event_is_idempotent_online() -> None:
    store = OnlineFeatureStore()
    first = store.update_and_vector(_tx(1, 0))
    store.update_and_vector(_tx(2, 5))
    assert store.update_and_vector(_tx(1, 0)) == first


def test_event_time_representations_agree() -> None:
    row = _tx(1, 61)
    t = row["event_time"]
    assert isinstance(t, dt.datetime)
    a = OnlineFeatureStore().update_and_vector(row)
    b = OnlineFeatureStore().update_and_vector({**row, "event_time": t.isoformat()})
    c = OnlineFeatureStore().update_and_vector({**row, "event_time": t.timestamp()})
    d = OnlineFeatureStore().update_and_vector({**row, "event_time": pd.Timestamp(t)})
    assert a == b == c == d


def test_warm_start_matches_full_history(events: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    tx, labels = events
    t = times_us(tx["event_time"])
    cut = int(np.quantile(t, 0.7))
    live = tx.loc[t >= cut]
    off = build_offline(tx, labels).loc[live["transaction_id"]]
    history_labels = labels.loc[times_us(labels["label_time"]) < cut]
    # a store that starts with only the card features, then activates terminal risk features
    store = OnlineFeatureStore(FeatureSpec.from_names(["card_tx_count_1d"]))
    store.backfill(tx.loc[t < cut], history_labels)
    with pytest.raises(FeatureSpecError, match="backfill"):
        store.activate(FeatureSpec.default())
    added = store.activate(FeatureSpec.default(), transactions=tx.loc[t < cut], labels=history_labels)
    assert set(added) == {"terminal", "merchant", "region", "device"}
    later_labels = labels.loc[times_us(labels["label_time"]) >= cut].sort_values("label_time")
    lt = times_us(later_labels["label_time"])
    where = tx.set_index("transaction_id")
    li = 0
    got = []
    for row in live.sort_values(["event_time", "transaction_id"]).to_dict("records"):
        while li < len(later_labels) and lt[li] < times_us(pd.Series([row["event_time"]]))[0]:
            lab = later_labels.iloc[li]
            store.add_label(
                lab.transaction_id,
                lab.event_time,
                lab.label_time,
                lab.is_fraud,
                where.loc[lab.transaction_id, "terminal_id"],
                where.loc[lab.transaction_id, "merchant_id"],
            )
            li += 1
        got.append((row["transaction_id"], store.update_and_vector(row)))
    online = pd.DataFrame([v for _, v in got], index=[k for k, _ in got], columns=store.spec.names)
    result = compare(off, online)
    assert result.ok, result.describe()


# -- Redis --------------------------------------------------------------------------------------
@pytest.mark.integration
def test_parity_redis_in_and_out_of_order(redis_url: str, events: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    tx, labels = events
    tx = tx.iloc[:1500]
    labels = labels[labels["transaction_id"].isin(tx["transaction_id"])]
    backend = RedisBackend(redis_url, prefix="test:inorder")
    backend.clear()
    result = run_parity(tx, labels, EVERY, backend=backend)
    assert result.ok, result.describe()
    backend = RedisBackend(redis_url, prefix="test:shuffled")
    backend.clear()
    result = run_parity(tx, labels, EVERY, backend=backend, arrival_order=_jittered_arrival(tx, 3))
    assert result.ok, result.describe()
    assert backend.has_families() >= {"card", "terminal"}
    backend.clear()
    backend.close()


@pytest.mark.integration
def test_redis_shared_between_replicas_and_warm_start(redis_url: str) -> None:
    tx, labels = synthetic_events(800, seed=5, days=4)
    off = build_offline(tx, labels)
    t = times_us(tx["event_time"])
    cut = int(np.quantile(t, 0.5))
    a = RedisBackend(redis_url, prefix="test:replicas")
    a.clear()
    warm = OnlineFeatureStore(backend=a)
    warm.backfill(tx.loc[t < cut], labels.loc[times_us(labels["label_time"]) < cut])
    replicas = [warm, OnlineFeatureStore(backend=RedisBackend(redis_url, prefix="test:replicas"))]
    rest = tx.loc[t >= cut].sort_values(["event_time", "transaction_id"])
    # no labels are added in the live part here: compare against the labels known at the cut
    off = build_offline(tx, labels.loc[times_us(labels["label_time"]) < cut])
    got = {}
    for i, row in enumerate(rest.to_dict("records")):
        got[str(row["transaction_id"])] = replicas[i % 2].update_and_vector(row)
    online = pd.DataFrame.from_dict(got, orient="index", columns=off.columns)
    result = compare(off.loc[online.index], online)
    assert result.ok, result.describe()
    a.clear()
