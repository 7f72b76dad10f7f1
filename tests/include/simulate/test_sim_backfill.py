"""Backfill into the real emulator: counts match the generator and re-runs never duplicate."""

from __future__ import annotations

import pytest

from fraudops.simulate import SimulationConfig, backfill, generate
from fraudops.warehouse import Warehouse

pytestmark = pytest.mark.integration

SMALL = SimulationConfig(n_cards=5_000, n_customers=4_300, n_merchants=500, n_terminals=1_200)


def test_backfill_writes_the_generated_rows_and_rerun_adds_nothing(warehouse: Warehouse) -> None:
    expected = generate("2026-02-01", 3, seed=9, config=SMALL)
    first = backfill(warehouse, "2026-02-01", 3, seed=9, config=SMALL, chunk_days=2)
    assert first.inserted["transactions"] == len(expected.transactions)
    assert first.inserted["labels"] == len(expected.labels)
    assert first.inserted["ground_truth"] == len(expected.ground_truth)
    again = backfill(warehouse, "2026-02-01", 3, seed=9, config=SMALL, chunk_days=1)
    assert again.inserted == {"transactions": 0, "labels": 0, "ground_truth": 0}
    # An overlapping window only adds the new day.
    more = backfill(warehouse, "2026-02-03", 2, seed=9, config=SMALL)
    day4 = generate("2026-02-04", 1, seed=9, config=SMALL)
    assert more.inserted["transactions"] == len(day4.transactions)
    assert warehouse.count("transactions") == len(expected.transactions) + len(day4.transactions)
    dup = warehouse.query(
        "SELECT COUNT(*) AS n FROM (SELECT transaction_id FROM transactions GROUP BY transaction_id "
        "HAVING COUNT(*) > 1)"
    )
    assert dup == [{"n": 0}]
    rows = warehouse.query(
        "SELECT COUNT(*) AS n FROM transactions WHERE source = @src AND event_time < @until",
        {"src": "simulator", "until": expected.transactions.event_time.max().to_pydatetime()},
    )
    assert rows[0]["n"] == len(expected.transactions) - 1
