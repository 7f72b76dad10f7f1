"""``fraudops train --data``: the pipeline's feature and training steps on a user's file, with no
warehouse and no MLflow (both pointed at closed ports here, so any use of them would fail)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from fraudops.simulate import SimulationConfig, generate

#: The public simulated data set's column names (it has no merchant, region or device fields).
MAPS = (
    "transaction_id=TRANSACTION_ID",
    "event_time=TX_DATETIME",
    "card_id=CUSTOMER_ID",
    "terminal_id=TERMINAL_ID",
    "amount=TX_AMOUNT",
    "is_fraud=TX_FRAUD",
)
PARAMS = (
    "-p",
    "window_days=6",
    "-p",
    "label_maturity_days=7",
    "-p",
    "history_days=5",
    "-p",
    "n_estimators=40",
)


@pytest.fixture(scope="module")
def history_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = SimulationConfig(n_cards=2500, n_customers=2200, n_merchants=150, n_terminals=500)
    sim = generate("2026-05-01", 20, 9, cfg)
    tx = sim.transactions
    fraud = set(sim.labels.loc[sim.labels.is_fraud.astype(bool), "transaction_id"])
    frame = pd.DataFrame(
        {
            "TRANSACTION_ID": tx["transaction_id"],
            "TX_DATETIME": tx["event_time"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            "CUSTOMER_ID": tx["card_id"],
            "TERMINAL_ID": tx["terminal_id"],
            "TX_AMOUNT": tx["amount"].round(2),
            "TX_FRAUD": tx["transaction_id"].isin(fraud).astype(int),
        }
    )
    path = tmp_path_factory.mktemp("file") / "transactions.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture()
def no_services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from fraudops.stack.process import free_port

    closed = free_port()
    monkeypatch.setenv("FRAUDOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FRAUDOPS_BQ_ENDPOINT", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("FRAUDOPS_MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed}")
    return tmp_path


def _train(*args: str) -> Any:
    from fraudops.cli import main

    return CliRunner().invoke(main, ["train", *args], catch_exceptions=False)


def test_a_file_without_merchants_trains_a_verified_bundle_without_any_service(
    history_file: Path, no_services: Path
) -> None:
    from fraudops.features import FeatureSpec
    from fraudops.training import verify_artifact

    result = _train("--data", str(history_file), *(a for m in MAPS for a in ("--map", m)), *PARAMS, "--json")
    assert result.exit_code == 0, result.output
    steps = json.loads(result.output)
    assert "register" not in steps
    meta = steps["extract"]
    assert meta["source"] == str(history_file) and meta["label_delay_days"] == 7.0
    # Labels known by as_of only: a fraud in the last 7 days of the file is not known yet.
    labels = pd.read_parquet(Path(meta["extract_dir"]) / "labels.parquet")
    assert (labels["label_time"] <= pd.Timestamp(meta["as_of"])).all() and len(labels) > 0
    assert (labels["label_time"] - labels["event_time"] == pd.Timedelta(days=7)).all()
    # No merchant, region or device in the file: their features are dropped by name.
    dropped = set(steps["features"]["dropped_features"])
    assert {
        "merchant_fraud_rate_30d",
        "region_tx_count_1h",
        "device_tx_count_1d",
        "card_new_device_30d",
    } <= dropped
    # The file's labels arrive 7 days late: the run reads that off them and offers the terminal risk
    # windows shifted back by 7 days (the merchant ones go with the missing merchant column).
    # Forward folds then chose between no delayed features and the delays whose windows hold labels.
    delay = steps["features"]["risk_delay"]
    assert delay["curve_delay"] == "7d" and delay["coverage_by_delay"]["3d"] == 0.0
    assert delay["source"] == "folds" and set(delay["fold_ap"]) == {"none", "7d", "14d"}, delay
    assert delay["delay"] == "7d" and delay["fold_ap"]["7d"] > delay["fold_ap"]["none"], delay
    logged = steps["train"]["models"]["candidate"]["params"]  # what MLflow gets with the model
    assert logged["risk_delay"] == "7d" and logged["risk_delay_source"] == "folds", logged
    assert logged["risk_delay_fold_ap"].startswith("none:"), logged
    offered = len(FeatureSpec.default(delay="7d"))
    assert offered == 52 and steps["features"]["n_features"] == offered - len(dropped)
    assert not any("_lag14d_" in f for f in steps["features"]["dropped_features"])  # not offered
    assert {f"merchant_lag7d_fraud_rate_{w}" for w in ("1d", "7d", "30d")} <= dropped
    assert "terminal_fraud_rate_30d" not in dropped and not any("terminal_lag7d" in f for f in dropped)
    # #23's finding, named by the run: with labels 7 days late, the 7-day terminal risk window
    # (labels known before the event, within 7 days of it) never holds a label.
    assert {"terminal_fraud_count_7d", "terminal_fraud_rate_7d"} <= dropped
    assert "constant: terminal_fraud_count_7d, terminal_fraud_rate_7d" in steps["features"]["feature_health"]
    bundle = Path(steps["package"]["artifact_dir"])
    assert verify_artifact(bundle).n_features == offered - len(dropped)
    # ... and the model leans on them: a delayed terminal risk feature is among its 10 most important.
    top = steps["evaluate"]["candidate"]["top_features"]
    assert any(name.startswith("terminal_lag7d_") for name in top), top
    ap = steps["evaluate"]["candidate"]["metrics"]["average_precision"]
    assert ap > 5 * steps["validate"]["fraud_rate"], (ap, steps["validate"]["fraud_rate"])

    # With a search budget (the fraud_retrain Param search_minutes): Optuna on forward folds first.
    human = _train(
        "--data",
        str(history_file),
        *(a for m in MAPS for a in ("--map", m)),
        *PARAMS,
        "-p",
        "search_minutes=0.1",
    )
    assert human.exit_code == 0, human.output
    assert "search: " in human.output and "forward folds (gap 1.5 d)" in human.output, human.output
    train = json.loads(
        Path(steps["train"]["models"]["candidate"]["path"]).parent.parent.joinpath("train.json").read_text()
    )
    assert "search" not in train  # the first run had no budget
    assert f"features: {offered - len(dropped)} of {offered} features kept" in human.output
    assert "bundle (not registered): " in human.output


def test_a_bad_file_is_refused_with_its_rows_and_nothing_trains(
    history_file: Path, no_services: Path, tmp_path: Path
) -> None:
    frame = pd.read_csv(history_file)
    frame.loc[3, "TX_AMOUNT"] = "twelve"
    frame.loc[7, "TX_DATETIME"] = ""
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    maps = [a for m in MAPS for a in ("--map", m)]
    refused = _train("--data", str(bad), *maps, *PARAMS)
    assert refused.exit_code == 1
    assert (
        "2 invalid rows: row 4: amount: not a number (value 'twelve'); row 8: event_time: missing"
        in refused.output
    )
    assert not list(no_services.glob("state/artifacts/retrain/*/features"))
    unlabelled = [a for m in MAPS if not m.startswith("is_fraud") for a in ("--map", m)]
    refused = _train("--data", str(history_file), *unlabelled, *PARAMS)
    assert (
        refused.exit_code == 1
        and "no labels; map the fraud flag with --map is_fraud=COLUMN" in refused.output
    )
    short = [a if a != "label_maturity_days=7" else "label_maturity_days=3" for a in PARAMS]
    refused = _train("--data", str(history_file), *maps, *short)
    assert refused.exit_code == 1
    assert "label_maturity_days 3 is shorter than the file's label delay 7 days" in refused.output
    usage = _train("--map", "amount=TX_AMOUNT")
    assert usage.exit_code == 2 and "--map, --label-time-col and --register go with --data" in usage.output
