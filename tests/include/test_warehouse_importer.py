"""`fraudops import`: every bad row reported with its number and reason, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from fraudops.warehouse.importer import import_file, parse_mapping

MAP = parse_mapping(["event_time=ts", "card_id=card", "terminal_id=term", "amount=amt", "is_fraud=label"])

GOOD_CSV = """ts,card,term,amt,label,merchant_id,region
2026-01-01T10:00:00Z,c1,t1,10.50,0,m1,eu-west
2026-01-01 11:30:00+01:00,c2,t1,99.99,1,m1,eu-west
2026-01-02T00:00:00,c3,t2,5,,m2,us-east
2026-01-02T00:00:00,c3,t2,5,,m2,us-east
"""

BAD_CSV = """ts,card,term,amt,label
2026-01-01T10:00:00Z,c1,t1,10.5,0
2026-01-01T11:00:00Z,c2,t1,abc,1
not-a-time,,t2,-3,maybe
2026-01-02T00:00:00Z,c3,t3,inf,yes
,c4,t4,,
"""


def test_bad_rows_reported_with_numbers_and_reasons_and_nothing_written(tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_text(BAD_CSV)
    rejects = tmp_path / "rejects.csv"
    # No warehouse is needed: a file with bad rows never reaches one.
    result = import_file(src, MAP, warehouse=None, reject_file=rejects)
    assert not result.ok and result.inserted_transactions == 0
    assert result.bad_rows == [2, 3, 4, 5]
    got = {(e.row, e.column, e.reason) for e in result.errors}
    assert (2, "amount", "not a number") in got
    assert {
        (3, "event_time", "not a timestamp"),
        (3, "card_id", "missing id"),
        (3, "amount", "negative"),
    } <= got
    assert (3, "is_fraud", "not a boolean (use true/false, 1/0, yes/no)") in got
    assert (4, "amount", "not finite") in got
    assert {(5, "event_time", "missing"), (5, "amount", "missing")} <= got
    assert "4 of 5 rows are invalid; nothing was written" in result.report()
    rej = pd.read_csv(rejects)
    assert list(rej.row) == [2, 3, 4, 5]
    assert "amount: not a number" in rej.reject_reason.iloc[0]


def test_duplicate_transaction_ids_are_rejected(tmp_path: Path) -> None:
    src = tmp_path / "dup.csv"
    src.write_text(
        "id,ts,card,term,amt\nA,2026-01-01T00:00:00Z,c,t,1\nB,2026-01-01T00:00:00Z,c,t,1\n"
        "A,2026-01-01T00:00:01Z,c,t,2\n"
    )
    mapping = parse_mapping(
        ["transaction_id=id", "event_time=ts", "card_id=card", "terminal_id=term", "amount=amt"]
    )
    result = import_file(src, mapping, dry_run=True)
    assert [(e.row, e.reason) for e in result.errors] == [(3, "duplicate (first at row 1)")]


@pytest.mark.integration
def test_cli_rejects_bad_file_and_writes_nothing(
    warehouse: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fraudops.cli import main

    cfg = warehouse.cfg  # type: ignore[attr-defined]
    # Only the warehouse settings: the CLI needs no MLflow (the fraudops_env fixture would start one).
    monkeypatch.setenv("FRAUDOPS_BQ_PROJECT", cfg.project)
    monkeypatch.setenv("FRAUDOPS_BQ_DATASET", cfg.dataset)
    monkeypatch.setenv("FRAUDOPS_BQ_ENDPOINT", cfg.endpoint)
    src = tmp_path / "bad.csv"
    src.write_text(BAD_CSV)
    wh = warehouse
    res = CliRunner().invoke(
        main,
        [
            "import",
            str(src),
            "--map",
            "event_time=ts",
            "--map",
            "card_id=card",
            "--map",
            "terminal_id=term",
            "--map",
            "amount=amt",
            "--map",
            "is_fraud=label",
        ],
    )
    assert res.exit_code == 1
    assert "row 2: amount: not a number" in res.output and "import rejected: 4 invalid rows" in res.output
    assert wh.count("transactions") == 0  # type: ignore[attr-defined]


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_good_file_imports_transactions_and_labels_idempotently(
    warehouse: object, tmp_path: Path, fmt: str
) -> None:
    src = tmp_path / f"good.{fmt}"
    if fmt == "csv":
        src.write_text(GOOD_CSV)
    else:
        df = pd.read_csv(pd.io.common.StringIO(GOOD_CSV), dtype={"label": "boolean"})
        df["ts"] = pd.to_datetime(df["ts"], utc=True, format="mixed")
        df.to_parquet(src)
    result = import_file(src, MAP, warehouse=warehouse, source="bank-x")  # type: ignore[arg-type]
    assert result.ok, result.report()
    assert result.inserted_transactions == 4  # identical rows are two transactions with distinct ids
    assert result.inserted_labels == 2
    again = import_file(src, MAP, warehouse=warehouse)  # type: ignore[arg-type]
    assert (again.inserted_transactions, again.inserted_labels) == (0, 0)
    rows = warehouse.query(  # type: ignore[attr-defined]
        "SELECT t.card_id, t.merchant_id, t.region, t.source, t.event_time, l.is_fraud, l.label_source, "
        "l.label_time FROM transactions t JOIN labels l USING (transaction_id) ORDER BY t.card_id"
    )
    assert [(r["card_id"], r["is_fraud"]) for r in rows] == [("c1", False), ("c2", True)]
    assert rows[1]["merchant_id"] == "m1" and rows[1]["source"] == "bank-x"
    assert rows[1]["event_time"].isoformat() == "2026-01-01T10:30:00+00:00"
    assert rows[1]["label_time"] == rows[1]["event_time"] and rows[1]["label_source"] == "import"
