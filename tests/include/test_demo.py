"""The demo's world: the attack is a pattern the champion's history never had."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from fraudops.demo import DemoConfig, demo_wave
from fraudops.simulate import generate
from fraudops.stack.bootstrap import BootstrapPlan


def test_the_history_lacks_the_novel_scenario_and_the_stream_brings_it() -> None:
    plan = BootstrapPlan(n_cards=3000)
    history = generate("2026-10-01", 21, plan.seed, plan.world()).ground_truth
    assert plan.novel_scenario == "account_takeover"
    assert not (history.scenario == plan.novel_scenario).any()
    assert {"card_testing", "stolen_card_spree", "compromised_terminal"} <= set(history.scenario)

    cfg = DemoConfig(attack_after_days=0.5, attack_days=4.0)
    wave = demo_wave(plan, cfg)
    start = dt.date(2026, 10, 22)
    live = generate(start, 5, plan.seed, plan.world(extra_waves=(wave,))).ground_truth
    attack = live[live.scenario == plan.novel_scenario]
    assert len(attack) > 200 and set(attack.wave_id) == {wave.wave_id}
    assert attack.event_time.min() >= pd.Timestamp(start, tz="UTC") + pd.Timedelta(days=0.5)


def test_without_a_novel_scenario_the_wave_scales_the_base_rate() -> None:
    plan = BootstrapPlan(n_cards=3000, novel_scenario=None)
    assert plan.world().rates.account_takeover_per_day > 0
    assert demo_wave(plan, DemoConfig()).base_per_day is None


def test_the_local_retrain_profile_is_a_valid_retrain_request() -> None:
    """The profile goes through the same parsing as a trigger form (half a day of maturity stays
    half a day: the field is not truncated to whole days)."""
    from fraudops.demo import RETRAIN_PROFILE
    from fraudops.pipeline.retrain import RetrainParams

    params = RetrainParams.from_dict(RETRAIN_PROFILE)
    assert params.label_maturity_days == 0.5
    assert params.window_days == RETRAIN_PROFILE["window_days"]
