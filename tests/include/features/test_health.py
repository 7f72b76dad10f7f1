"""Feature health on a training window: missing sources, constant and near-constant features, and
the point-in-time leakage guard, on the simulator's world (and on copies with fields removed)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from fraudops.features import FeatureSpec, build_offline
from fraudops.features.health import feature_health, point_in_time_leaks, source_columns
from fraudops.simulate import SimulationConfig, generate


@pytest.fixture(scope="module")
def world() -> Any:
    cfg = SimulationConfig(n_cards=1500, n_customers=1300, n_merchants=120, n_terminals=300)
    return generate("2026-05-01", 16, 5, cfg)


def test_the_simulators_world_has_no_uninformative_feature(world: Any) -> None:
    spec = FeatureSpec.default()
    X = build_offline(world.transactions, world.labels, spec)
    report = feature_health(X, world.transactions, spec.names)
    assert report.kept == spec.names and report.dropped == []
    assert report.summary().endswith("all informative")


def test_a_file_without_merchants_devices_or_regions_loses_those_features_by_name(world: Any) -> None:
    """As the public data set of #23: no merchant, region or device fields (here dropped, or one
    region for everything). Their features, and the card novelty features reading them, are dropped
    by name; everything computed from what is there is kept."""
    tx = world.transactions.drop(columns=["merchant_id", "device_id"]).assign(region="eu-west")
    spec = FeatureSpec.default()
    X = build_offline(tx, world.labels, spec)
    report = feature_health(X, tx, spec.names)
    dropped = set(report.dropped)
    for name in spec.names:
        gone = {"merchant_id", "device_id", "region"} & set(source_columns(name))
        assert (name in dropped) == bool(gone), name
    assert {"card_new_device_30d", "card_new_region_30d", "merchant_fraud_rate_30d"} <= dropped
    assert "card_new_terminal_30d" not in dropped and "terminal_fraud_rate_30d" not in dropped
    assert all(f.missing_sources for f in report.features if f.dropped)
    assert "13 dropped, source column missing or single-valued: card_new_device_30d" in report.summary()


def test_constant_and_near_constant_features_are_told_apart() -> None:
    n = 10_000
    rng = np.random.default_rng(3)
    names = ["tx_amount", "tx_hour_utc", "card_tx_count_1h"]
    X = pd.DataFrame(
        {
            "tx_amount": rng.gamma(2.0, 30.0, n),
            "tx_hour_utc": np.full(n, 7.0),  # constant
            "card_tx_count_1h": np.where(np.arange(n) < 5, 2.0, 1.0),  # 99.95 % the same
        }
    )
    tx = pd.DataFrame({"amount": X["tx_amount"], "card_id": rng.integers(0, 50, n).astype(str)})
    report = feature_health(X, tx, names)
    status = {f.name: f.status for f in report.features}
    assert status == {"tx_amount": "ok", "tx_hour_utc": "constant", "card_tx_count_1h": "near_constant"}
    assert report.dropped == ["tx_hour_utc"] and report.kept == ["tx_amount", "card_tx_count_1h"]
    # float32 is what serving sees: values that differ only beyond float32 are one value
    X["tx_hour_utc"] = 7.0 + np.arange(n) * 1e-12
    assert feature_health(X, tx, names).features[1].status == "constant"
    with pytest.raises(ValueError, match="near_constant_share"):
        feature_health(X, tx, names, near_constant_share=0.3)


def test_the_leakage_guard_passes_the_store_and_catches_future_labels_and_transactions(world: Any) -> None:
    spec = FeatureSpec.default()
    tx, labels = world.transactions, world.labels
    full = build_offline(tx, labels, spec)
    leaks, compared = point_in_time_leaks(tx, labels, spec, full=full)
    assert leaks == [] and compared > 0.5 * len(tx)

    # A builder that knows each label as soon as the transaction happened (the chargeback that
    # arrives days later counted at once): the risk features read the future.
    clairvoyant = labels.assign(label_time=labels["event_time"])
    leaky = build_offline(tx, clairvoyant, spec)
    leaks, _ = point_in_time_leaks(tx, labels, spec, full=leaky)
    assert leaks and all(name.split("_")[0] in ("terminal", "merchant") for name in leaks), leaks
    assert "terminal_fraud_count_30d" in leaks and "card_tx_count_1d" not in leaks

    # A velocity feature that also counts the card's later transactions.
    future = full.copy()
    order = tx.sort_values("event_time", ascending=False)
    later = order.groupby("card_id").cumcount().to_numpy()
    future.loc[order["transaction_id"].to_numpy(), "card_tx_count_30d"] += later
    leaks, _ = point_in_time_leaks(tx, labels, spec, full=future)
    assert leaks == ["card_tx_count_30d"]
