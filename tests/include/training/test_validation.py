"""The extract contract: clean data passes, planted defects fail with a reason that names them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from training_data import make_extract

from fraudops.exceptions import DataValidationError
from fraudops.training.validation import ValidationConfig, validate_extract, validate_or_raise


@pytest.fixture(scope="module")
def extract() -> pd.DataFrame:
    return make_extract()


def test_clean_extract_passes(extract: pd.DataFrame, tmp_path: Path) -> None:
    cfg = ValidationConfig(
        window_start=pd.Timestamp("2026-01-01", tz="UTC").to_pydatetime(),
        window_end=pd.Timestamp("2026-01-08", tz="UTC").to_pydatetime(),
    )
    result = validate_or_raise(extract, cfg, result_path=tmp_path / "validation.json")
    assert result.success, result.summary
    assert result.failed == ()
    assert result.statistics["unsuccessful_expectations"] == 0
    saved = json.loads((tmp_path / "validation.json").read_text())
    assert saved["fraudops"]["success"] is True
    assert saved["gx_result"]["success"] is True


def test_null_amounts_fail_with_clear_reason(extract: pd.DataFrame, tmp_path: Path) -> None:
    bad = extract.copy()
    bad.loc[bad.sample(frac=0.3, random_state=1).index, "amount"] = np.nan
    out = tmp_path / "validation.json"
    with pytest.raises(DataValidationError) as err:
        validate_or_raise(bad, result_path=out)
    message = str(err.value)
    assert "expect_column_values_to_not_be_null(amount)" in message
    assert "30.00%" in message
    # Evidence saved before raising, and only the planted defect failed.
    saved = json.loads(out.read_text())
    failed = [o for o in saved["fraudops"]["outcomes"] if not o["success"]]
    assert [(o["expectation"], o["column"]) for o in failed] == [
        ("expect_column_values_to_not_be_null", "amount")
    ]


def test_other_defects_are_each_reported(extract: pd.DataFrame) -> None:
    bad = extract.drop(columns=["terminal_id"]).copy()
    bad.loc[0, "amount"] = -5.0
    bad.loc[1, "transaction_id"] = bad.loc[2, "transaction_id"]
    bad["is_fraud"] = False  # fraud rate 0: the label join broke
    cfg = ValidationConfig(window_end=pd.Timestamp("2026-01-05", tz="UTC").to_pydatetime())
    result = validate_extract(bad, cfg)
    assert not result.success
    failed = {(o.expectation, o.column) for o in result.failed}
    assert ("expect_column_to_exist", "terminal_id") in failed
    assert ("expect_column_values_to_be_between", "amount") in failed
    assert ("expect_column_values_to_be_unique", "transaction_id") in failed
    assert ("expect_column_mean_to_be_between", "is_fraud") in failed
    assert ("expect_column_values_to_be_between", "event_time") in failed


def test_too_few_rows_fail(extract: pd.DataFrame) -> None:
    result = validate_extract(extract.head(100), ValidationConfig(fraud_rate_min=0.0))
    assert [o.expectation for o in result.failed] == ["expect_table_row_count_to_be_between"]
