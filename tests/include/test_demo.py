"""The demo's world: the attack is a pattern the champion's history never had."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import pytest

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


def test_memory_watch_sums_each_service_tree_and_keeps_the_peak_per_service() -> None:
    """The README's per-service memory comes from here: a service's children count with it, a
    process is counted once, and a service that died reads 0 instead of failing the watch."""
    import subprocess
    import sys
    import time

    import psutil

    from fraudops.demo import MemoryWatch

    hold = "import sys, time; b = bytearray(int(sys.argv[1]) * 2**20); time.sleep(60)"
    parent = (
        "import subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, '-c', {hold!r}, '64']); "
        f"b = bytearray(32 * 2**20); time.sleep(60)"
    )
    big = subprocess.Popen([sys.executable, "-c", parent])
    small = subprocess.Popen([sys.executable, "-c", hold, "8"])
    try:
        deadline = time.monotonic() + 30
        while len(psutil.Process(big.pid).children()) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the buffers are allocated
        watch = MemoryWatch({"big": big.pid, "small": small.pid, "gone": 2**22 + 7}, include_self=False)
        total = watch.sample()
        assert watch.last["big"] > 96 > watch.last["small"] > 8 and watch.last["gone"] == 0.0
        assert total == sum(watch.last.values()) == watch.peak_mb and watch.at_peak == watch.last
        small.kill()
        small.wait()
        watch.sample()
        assert watch.last["small"] == 0.0 and watch.service_peak["small"] > 8  # its own peak stays
        assert watch.at_peak["small"] > 8  # the total's peak was the first sample
    finally:
        for proc in psutil.Process(big.pid).children(recursive=True):
            proc.kill()
        big.kill()
        small.kill()


def test_the_demo_follows_the_first_drift_release_when_a_second_one_starts() -> None:
    """CI, 2026-12-06: the hourly monitor fired during probation and started a second drift
    release; the demo took that newer one (rejected on its operating point) for the first."""
    from fraudops.demo import _first_run

    newest_first = [
        {"dag_run_id": "second", "run_after": "2026-12-06T18:01:01+00:00", "state": "running"},
        {"dag_run_id": "first", "run_after": "2026-12-06T17:53:56+00:00", "state": "success"},
    ]
    first = _first_run(newest_first)
    assert first is not None and first["dag_run_id"] == "first"
    assert _first_run([]) is None


class _FakeAirflow:
    """The REST calls the demo makes, answered from dictionaries (newest run first)."""

    def __init__(self, runs: dict[str, list[dict[str, Any]]], xcoms: dict[tuple[str, str], Any]) -> None:
        self._runs, self._xcoms, self.triggered = runs, xcoms, list[str]()

    def runs(self, dag_id: str, limit: int = 20) -> list[dict[str, Any]]:
        return self._runs.get(dag_id, [])[:limit]

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        self.triggered.append(dag_id)
        return f"manual-{len(self.triggered)}"

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {"reject": "success"} if dag_id == "fraud_release" else {"train": "failed"}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        return self._xcoms[(run_id, task_id)]


def _run(run_id: str, run_type: str, state: str, after: str) -> dict[str, Any]:
    return {"dag_run_id": run_id, "run_type": run_type, "state": state, "run_after": after}


def test_the_demo_follows_the_bad_and_the_drift_release_by_version() -> None:
    """The bad retrain's release (v2) and the drift retrain's (v3) are told apart by the version
    their ``resolve`` names, not by which asset-triggered release came first."""
    import time

    from fraudops.demo import DemoConfig, _follow_releases

    since = "2026-12-07T14:00:00+00:00"
    af = _FakeAirflow(
        {
            "fraud_retrain": [
                _run("drift-1", "asset_triggered", "success", "2026-12-07T14:05:00+00:00"),
                _run("bad-1", "manual", "success", "2026-12-07T14:00:01+00:00"),
            ],
            "fraud_release": [
                _run("rel-drift", "asset_triggered", "success", "2026-12-07T14:06:00+00:00"),
                _run("rel-bad", "asset_triggered", "success", "2026-12-07T14:02:00+00:00"),
                _run("rel-old", "asset_triggered", "success", "2026-12-06T10:00:00+00:00"),
            ],
        },
        {
            ("bad-1", "register"): {"version": 2},
            ("drift-1", "register"): {"version": 3},
            ("rel-bad", "resolve"): {"version": "2"},
            ("rel-drift", "resolve"): {"version": "3"},
            ("rel-bad", "decide_promotion"): {"status": "reject"},
            ("rel-drift", "decide_promotion"): {"status": "reject"},
        },
    )
    drift, bad = _follow_releases(af, DemoConfig(timeout_s=60), time.monotonic(), since, "bad-1")
    assert drift["release_run"] == "rel-drift" and bad is not None and bad["release_run"] == "rel-bad"
    assert af.triggered == []  # a drift retrain was under way: no monitor run needed


def test_the_demo_plays_the_monitor_and_names_what_did_not_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import click

    import fraudops.demo as demo

    monkeypatch.setattr("fraudops.demo.time.sleep", lambda s: None)
    af = _FakeAirflow({}, {})
    with pytest.raises(click.ClickException, match="drift retrain and the bad retrain did not finish"):
        demo._follow_releases(
            af, demo.DemoConfig(timeout_s=0.05, monitor_every_s=0.0), time.monotonic(), "", "bad-1"
        )
    assert af.triggered and set(af.triggered) == {"fraud_drift_monitor"}
