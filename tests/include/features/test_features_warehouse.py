"""Feature store against the real BigQuery emulator: registry mirror and warehouse builds."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from fraudops.features import REGISTRY, OnlineFeatureStore, build_offline, sync_registry
from fraudops.features.offline import build_offline_from_warehouse, times_us
from fraudops.features.parity import compare, synthetic_events
from fraudops.warehouse import Warehouse

pytestmark = pytest.mark.integration


def test_sync_registry_is_idempotent(warehouse: Warehouse) -> None:
    assert sync_registry(warehouse) == len(REGISTRY.list())
    assert sync_registry(warehouse) == 0
    rows = warehouse.query(
        f"SELECT name, version, entity, `window`, owner FROM `{warehouse.table_id('feature_registry')}` "
        "WHERE name = @name",
        {"name": "card_amount_zscore_30d"},
    )
    assert rows == [
        {
            "name": "card_amount_zscore_30d",
            "version": 1,
            "entity": "card",
            "window": "30d",
            "owner": "fraud-ml",
        }
    ]


def test_build_from_warehouse_matches_in_memory_and_warm_start(warehouse: Warehouse) -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    tx, labels = synthetic_events(1200, seed=4, days=40, start=start)
    warehouse.upsert("transactions", tx)
    warehouse.upsert("labels", labels)
    lo, hi = start + dt.timedelta(days=32), start + dt.timedelta(days=38)
    got = build_offline_from_warehouse(warehouse, lo, hi)
    t = times_us(tx["event_time"])
    in_range = tx.loc[(t >= times_us(pd.Series([lo]))[0]) & (t < times_us(pd.Series([hi]))[0])]
    assert len(got) == len(in_range) > 0
    # labels known only after `hi` are invisible to the build, exactly as for the in-memory build
    known = labels.loc[times_us(labels["label_time"]) < times_us(pd.Series([hi]))[0]]
    want = build_offline(tx, known).loc[got.index]
    assert compare(want, got).ok
    # warm start from the warehouse: the first live event after `hi` gets the full-history vector
    store = OnlineFeatureStore()
    store.warm_from_warehouse(warehouse, hi)
    first = tx.loc[t >= times_us(pd.Series([hi]))[0]].sort_values(["event_time", "transaction_id"]).iloc[0]
    vec = store.update_and_vector(first.to_dict())
    expected = build_offline(tx, known).loc[str(first["transaction_id"])].to_numpy()
    np.testing.assert_array_equal(np.asarray(vec), expected)
