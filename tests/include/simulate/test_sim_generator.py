"""The simulator's data contract: deterministic by seed, every scenario present, realistic labels."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from fraudops.simulate import SCENARIOS, SimulationConfig, Wave, generate, wave_schedule
from fraudops.warehouse.schema import LABELS, SIM_GROUND_TRUTH, TRANSACTIONS

#: Small world so the tests stay fast: ~6.6k transactions a day, same rates as the default.
SMALL = SimulationConfig(n_cards=10_000, n_customers=8_600, n_merchants=800, n_terminals=2_000)


@pytest.fixture(scope="module")
def result() -> object:
    return generate("2026-03-02", 14, seed=11)


def test_same_seed_identical_frames_other_seed_differs() -> None:
    a = generate("2026-01-05", 2, seed=3, config=SMALL)
    b = generate("2026-01-05", 2, seed=3, config=SMALL)
    for name in ("transactions", "labels", "ground_truth"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    c = generate("2026-01-05", 2, seed=4, config=SMALL)
    assert not set(a.transactions.transaction_id) & set(c.transactions.transaction_id)
    assert not a.transactions.amount.head(100).equals(c.transactions.amount.head(100))


def test_days_are_independent_of_the_window() -> None:
    """Day 2 of a 2-day run equals a 1-day run of day 2: chunked backfills write the same rows."""
    both = generate("2026-01-05", 2, seed=3, config=SMALL).transactions
    day2 = generate("2026-01-06", 1, seed=3, config=SMALL).transactions
    tail = both[both.event_time >= pd.Timestamp("2026-01-06", tz="UTC")].reset_index(drop=True)
    pd.testing.assert_frame_equal(tail, day2)


def test_columns_types_and_order_match_the_warehouse(result: object) -> None:
    tx, lab, gt = result.transactions, result.labels, result.ground_truth  # type: ignore[attr-defined]
    assert list(tx.columns) == list(TRANSACTIONS.column_names)
    assert list(lab.columns) == list(LABELS.column_names)
    assert list(gt.columns) == list(SIM_GROUND_TRUTH.column_names)
    assert str(tx.event_time.dt.tz) == "UTC" and str(lab.label_time.dt.tz) == "UTC"
    assert tx.event_time.is_monotonic_increasing
    assert tx.transaction_id.is_unique
    assert tx.notna().all().all(), "every transaction column is filled"
    assert (tx.source == "simulator").all()
    assert set(tx.region) == {"eu-west", "eu-north", "us-east", "us-west", "latam", "apac"}
    assert set(tx.channel) == {"card_present", "ecommerce", "mobile"}
    assert set(tx.device_type) == {"pos", "desktop", "ios", "android"}
    assert (tx[tx.channel == "card_present"].device_type == "pos").all()
    # ~33k a day with the default world.
    assert 28_000 < len(tx) / 14 < 38_000


def test_every_scenario_visible_with_its_signature_and_total_rate(result: object) -> None:
    tx, gt = result.transactions, result.ground_truth  # type: ignore[attr-defined]
    rate = len(gt) / len(tx)
    assert 0.002 <= rate <= 0.01
    assert set(gt.scenario) == set(SCENARIOS)
    f = tx.merge(gt[["transaction_id", "scenario"]], on="transaction_id", how="left")
    genuine = f[f.scenario.isna()]
    by = {s: f[f.scenario == s] for s in SCENARIOS}
    # Card testing: tiny online amounts in bursts on one card.
    ct = by["card_testing"]
    assert ct.amount.median() < 5 and (ct.channel == "ecommerce").all()
    assert ct.groupby("card_id").size().max() >= 5
    # Account takeover: unseen device, high amount, away from the card's home region.
    ato = by["account_takeover"]
    assert not set(ato.device_id) & set(genuine.device_id)
    assert ato.amount.median() > 3 * genuine.amount.median()
    assert (ato.channel != "card_present").all()
    # Compromised terminal: the same terminal carries fraud on several days.
    cterm = by["compromised_terminal"]
    days_per_terminal = cterm.groupby("terminal_id").event_time.agg(lambda s: s.dt.date.nunique())
    assert days_per_terminal.max() >= 3
    # Spree: several card-present purchases on one card within hours.
    spree = by["stolen_card_spree"]
    assert (spree.channel == "card_present").all()
    span = spree.groupby("card_id").event_time.agg(lambda s: s.max() - s.min())
    assert spree.groupby("card_id").size().max() >= 3 and span.max() < pd.Timedelta(hours=8)


def test_fraud_rate_varies_by_region(result: object) -> None:
    tx, gt = result.transactions, result.ground_truth  # type: ignore[attr-defined]
    ct = gt[gt.scenario == "compromised_terminal"].groupby("region").size() / tx.groupby("region").size()
    assert ct["latam"] > 2 * ct["eu-north"]


def test_label_delays_hours_weeks_and_never(result: object) -> None:
    gt, lab = result.ground_truth, result.labels  # type: ignore[attr-defined]
    h = gt.label_delay_hours
    never = h.isna().mean()
    fast = (h < 24).mean()
    weeks = ((h >= 24) & (h <= 90 * 24)).mean()
    assert 0.02 <= never <= 0.2, never
    assert 0.05 <= fast <= 0.35, fast
    assert weeks >= 0.55, weeks
    assert 5 * 24 < h.median() < 20 * 24
    # Labels are separate records; never-labelled frauds have none.
    fraud_labels = lab[lab.is_fraud]
    assert set(fraud_labels.transaction_id) == set(gt[h.notna()].transaction_id)
    assert (lab.label_time >= lab.event_time).all()
    merged = fraud_labels.merge(gt, on="transaction_id", suffixes=("", "_gt"))
    delay = (merged.label_time - merged.event_time).dt.total_seconds() / 3600
    assert np.allclose(delay, merged.label_delay_hours, atol=1e-3)
    assert set(lab.label_source) == {"customer_report", "chargeback"}


def test_injected_wave_spreads_to_other_regions_then_stops() -> None:
    wave = Wave(
        scenario="card_testing",
        region="us-east",
        start_day=2,
        duration_days=6,
        intensity=30.0,
        spread_regions=2,
        spread_lag_days=3,
        wave_id="demo",
    )
    cfg = SimulationConfig(
        n_cards=10_000,
        n_customers=8_600,
        n_merchants=800,
        n_terminals=2_000,
        auto_waves=False,
        extra_waves=(wave,),
    )
    res = generate("2026-05-01", 16, seed=5, config=cfg)
    gt = res.ground_truth
    w = gt[gt.wave_id == "demo"]
    assert set(w.scenario) == {"card_testing"}
    first_day = w.groupby("region").event_time.min().dt.date
    # us-east first, then its neighbours us-west and eu-west in order, 3 days apart.
    assert list(first_day.sort_values().index) == ["us-east", "us-west", "eu-west"]
    assert first_day["us-west"] - first_day["us-east"] >= dt.timedelta(days=2)
    assert w.event_time.max() < pd.Timestamp("2026-05-15", tz="UTC")  # 2 + 2×3 + 6 = day 14
    sched = wave_schedule(5, "2026-05-01", 16, cfg)
    assert [s["region"] for s in sched] == ["us-east", "us-west", "eu-west"]
    # The wave lifts card testing far above its base rate while active.
    assert len(w) > 3 * len(gt[(gt.scenario == "card_testing") & gt.wave_id.isna()])


def test_a_wave_can_bring_a_scenario_the_world_never_had() -> None:
    """``base_per_day`` sizes a wave of a scenario with no base rate (a new attack pattern)."""
    import dataclasses

    from fraudops.simulate.config import ScenarioRates

    rates = ScenarioRates().without("account_takeover")
    assert rates.base_rate("account_takeover") == 0.0
    assert rates.base_rate("card_testing") == ScenarioRates().base_rate("card_testing") > 0
    wave = Wave(
        scenario="account_takeover",
        region="eu-west",
        start_day=3,
        duration_days=4,
        intensity=10.0,
        spread_regions=0,
        wave_id="new",
        base_per_day=22.0,
    )
    world = dataclasses.replace(SMALL, rates=rates, extra_waves=(wave,))
    gt = generate("2026-05-01", 8, seed=5, config=world).ground_truth
    ato = gt[gt.scenario == "account_takeover"]
    # none before the wave nor outside it (random waves scale the zero base rate), many during it
    assert set(ato.wave_id) == {"new"} and set(ato.region) == {"eu-west"}
    assert ato.event_time.min() >= pd.Timestamp("2026-05-04", tz="UTC")
    assert ato.event_time.max() < pd.Timestamp("2026-05-08", tz="UTC")
    # peak ≈ 22/day × eu-west's share (~0.37) × 10 events, each 1-3 transactions
    assert len(ato) > 100
    # without base_per_day the same wave has nothing to scale
    silent = dataclasses.replace(wave, base_per_day=None)
    none = generate("2026-05-01", 8, seed=5, config=dataclasses.replace(world, extra_waves=(silent,)))
    assert not (none.ground_truth.scenario == "account_takeover").any()
    from fraudops.exceptions import ConfigError

    with pytest.raises(ConfigError, match="base_per_day"):
        Wave(scenario="account_takeover", region="eu-west", base_per_day=0.0)
    with pytest.raises(ConfigError, match="unknown scenario"):
        ScenarioRates().without("bank_robbery")


def test_a_wave_with_a_short_ramp_is_at_its_peak_on_its_second_day() -> None:
    """``ramp_days`` sets how fast a leg reaches its peak; by default a long campaign ramps over a
    quarter of its duration (ten days for forty), so its first days carry a fraction of the peak."""
    import dataclasses

    from fraudops.exceptions import ConfigError
    from fraudops.simulate.config import ScenarioRates

    wave = Wave(
        scenario="account_takeover",
        region="eu-west",
        start_day=1,
        duration_days=40,
        intensity=20.0,
        spread_regions=0,
        wave_id="fast",
        base_per_day=22.0,
        ramp_days=1.0,
    )
    world = dataclasses.replace(SMALL, rates=ScenarioRates().without("account_takeover"))

    def day_two_events(w: Wave) -> int:
        gt = generate(
            "2026-05-01", 3, seed=5, config=dataclasses.replace(world, extra_waves=(w,))
        ).ground_truth
        on_day_two = gt.event_time >= pd.Timestamp("2026-05-03", tz="UTC")
        return int(((gt.wave_id == w.wave_id) & on_day_two).sum())

    fast, slow = day_two_events(wave), day_two_events(dataclasses.replace(wave, ramp_days=None))
    # at its peak on day two (22/day x 0.37 x 20 events), against 1.5/10 of it with the default ramp
    assert fast > 3 * slow and fast > 50, (fast, slow)
    with pytest.raises(ConfigError, match="ramp_days"):
        dataclasses.replace(wave, ramp_days=0.0)
    with pytest.raises(ConfigError, match="ramp_days"):
        dataclasses.replace(wave, ramp_days=25.0)


def test_auto_waves_move_across_regions_over_time(result: object) -> None:
    gt = result.ground_truth  # type: ignore[attr-defined]
    waves = gt.dropna(subset=["wave_id"])
    assert len(waves), "the default world has attack waves"
    regions_per_wave = waves.groupby("wave_id").region.nunique()
    assert regions_per_wave.max() >= 2


def test_fractional_days_and_bad_arguments() -> None:
    res = generate("2026-01-05", 0.25, seed=1, config=SMALL)
    assert res.transactions.event_time.max() < pd.Timestamp("2026-01-05 06:00", tz="UTC")
    from fraudops.exceptions import ConfigError

    with pytest.raises(ConfigError):
        generate("2026-01-05", 0, seed=1)
    with pytest.raises(ConfigError):
        Wave(scenario="bank_robbery", region="us-east")
