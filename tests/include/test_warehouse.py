"""Warehouse round trip through the real BigQuery emulator: schema, idempotent writes, queries."""

from __future__ import annotations

import datetime as dt

import pytest

from fraudops.exceptions import WarehouseError, WarehouseUnavailable
from fraudops.warehouse import TABLES, Warehouse
from fraudops.warehouse.schema import TableSpec

pytestmark = pytest.mark.integration

UTC = dt.UTC


def _tx(i: int, amount: float = 10.0) -> dict[str, object]:
    return {
        "transaction_id": f"tx-{i}",
        "event_time": dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=i),
        "card_id": f"card-{i % 3}",
        "terminal_id": "term-1",
        "amount": amount + i,
    }


def test_schema_created_partitioned_and_idempotent(warehouse: Warehouse) -> None:
    assert warehouse.ensure_schema() == []  # second run changes nothing
    for spec in TABLES:
        table = warehouse.client.get_table(warehouse.table_id(spec.name))
        assert [f.name for f in table.schema] == list(spec.column_names)
        if spec.partition_field:
            assert table.time_partitioning.field == spec.partition_field
            assert table.time_partitioning.type_ == "DAY"


def test_schema_migration_adds_new_columns(warehouse: Warehouse) -> None:
    from fraudops.warehouse.schema import TRANSACTIONS, Column

    extended = TableSpec(
        name=TRANSACTIONS.name,
        columns=(*TRANSACTIONS.columns, Column("risk_note", "STRING")),
        key=TRANSACTIONS.key,
        partition_field=TRANSACTIONS.partition_field,
    )
    changes = warehouse.ensure_schema([extended])
    assert changes == ["added ['risk_note'] to transactions"]
    names = [f.name for f in warehouse.client.get_table(warehouse.table_id("transactions")).schema]
    assert names[-1] == "risk_note"
    assert warehouse.ensure_schema([extended]) == []


def test_insert_query_roundtrip_with_parameters(warehouse: Warehouse) -> None:
    assert warehouse.upsert("transactions", [_tx(i) for i in range(10)]) == 10
    rows = warehouse.query(
        "SELECT transaction_id, amount FROM transactions WHERE card_id = @card AND amount >= @min "
        "AND event_time < @until ORDER BY transaction_id",
        {"card": "card-1", "min": 12.0, "until": dt.datetime(2026, 1, 1, 0, 8, tzinfo=UTC)},
    )
    assert rows == [{"transaction_id": "tx-4", "amount": 14.0}, {"transaction_id": "tx-7", "amount": 17.0}]
    # The dataset-qualified name resolves too, as users write it in `fraudops query`.
    qualified = warehouse.query(f"SELECT COUNT(*) AS n FROM {warehouse.cfg.dataset}.transactions")
    assert qualified == [{"n": 10}]


def test_upsert_is_idempotent_by_natural_key(warehouse: Warehouse) -> None:
    batch = [_tx(i) for i in range(5)]
    assert warehouse.upsert("transactions", batch) == 5
    assert warehouse.upsert("transactions", batch) == 0
    # Overlapping batch with in-batch duplicates: only the genuinely new keys land.
    overlap = [_tx(3), _tx(4), _tx(5), _tx(5), _tx(6)]
    assert warehouse.upsert("transactions", overlap) == 2
    assert warehouse.count("transactions") == 7


def test_upsert_composite_key(warehouse: Warehouse) -> None:
    now = dt.datetime(2026, 1, 2, tzinfo=UTC)
    base = {"transaction_id": "tx-1", "model_name": "m", "served_at": now, "score": 0.1}
    rows = [
        {**base, "model_version": "1", "mode": "production"},
        {**base, "model_version": "2", "mode": "shadow"},
        {**base, "model_version": "1", "mode": "production", "score": 0.9},  # same key: dropped
    ]
    assert warehouse.upsert("predictions", rows) == 2
    assert warehouse.upsert("predictions", rows) == 0


def test_rows_with_different_keys_keep_every_column(warehouse: Warehouse) -> None:
    """Regression: the first row used to decide the batch's columns (a shadow row without
    ``sampled`` first made every production row's ``sampled`` NULL)."""
    now = dt.datetime(2026, 1, 3, tzinfo=UTC)
    base = {"transaction_id": "tx-k", "model_name": "m", "served_at": now}
    rows = [
        {**base, "model_version": "2", "mode": "shadow", "score": None, "error": "shed:down"},
        {**base, "model_version": "1", "mode": "production", "score": 0.4, "sampled": True},
        {**base, "transaction_id": "tx-l", "model_version": "1", "mode": "production", "sampled": False},
    ]
    assert warehouse.upsert("predictions", rows) == 3
    got = warehouse.query(
        f"SELECT transaction_id, mode, sampled, score, error FROM `{warehouse.table_id('predictions')}` "
        "WHERE served_at = @t ORDER BY transaction_id, mode",
        {"t": now},
    )
    assert got == [
        {"transaction_id": "tx-k", "mode": "production", "sampled": True, "score": 0.4, "error": None},
        {"transaction_id": "tx-k", "mode": "shadow", "sampled": None, "score": None, "error": "shed:down"},
        {"transaction_id": "tx-l", "mode": "production", "sampled": False, "score": None, "error": None},
    ]


def test_required_column_and_unknown_column_are_rejected(warehouse: Warehouse) -> None:
    bad = _tx(1)
    del bad["card_id"]
    with pytest.raises(WarehouseError, match=r"card_id is REQUIRED"):
        warehouse.upsert("transactions", [bad])
    with pytest.raises(WarehouseError, match="unknown columns"):
        warehouse.upsert("transactions", [{**_tx(2), "colour": "red"}])
    assert warehouse.count("transactions") == 0


def test_unreachable_warehouse_raises_unavailable_quickly() -> None:
    from fraudops.config import WarehouseConfig
    from fraudops.stack.process import free_port

    wh = Warehouse(WarehouseConfig(endpoint=f"http://127.0.0.1:{free_port()}", timeout_s=2.0))
    with pytest.raises(WarehouseUnavailable):
        wh.query("SELECT 1")
    assert wh.ping() is False
