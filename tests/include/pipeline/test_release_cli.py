"""``fraudops release run``: the DAG's step functions, in the DAG's order (steps stubbed here; the
real end-to-end run is the DAG's e2e test)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from click.testing import CliRunner

from fraudops.pipeline import release
from fraudops.pipeline.release_cli import run_release
from fraudops.pipeline.release_types import (
    Candidate,
    DecisionSummary,
    DriftReport,
    EvidenceWindow,
    ProbationOutcome,
    Promotion,
    ReleaseOutcome,
    ShadowDeployment,
    ShadowWait,
)
from fraudops.vocabulary import Decision

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


class _Ctx:
    run_key = "fraud_release__cli-test"


def _stub(monkeypatch: pytest.MonkeyPatch, status: str, looks: int = 2) -> list[str]:
    calls: list[str] = []
    cand = Candidate(
        model_name="m",
        version="2",
        champion="1",
        alias="challenger-2",
        params={},
        policy={},
        policy_fingerprint="f",
        min_scored_events=10,
        min_labeled_frauds=2,
        label_maturity_hours=1.0,
    )
    left = {"shadow": looks, "probation": looks}

    def step(name: str, result: Any) -> Any:
        def fn(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return result(*args) if callable(result) else result

        return fn

    def look(*_: Any) -> ShadowWait:
        left["shadow"] -= 1
        return ShadowWait(ready=left["shadow"] <= 0, reason="matured labeled frauds 1 of 2 needed")

    def probation(*_: Any) -> ProbationOutcome:
        left["probation"] -= 1
        done = left["probation"] <= 0
        return ProbationOutcome(
            done=done, status=Decision.CONFIRM if done else Decision.WAIT, reason="r", decision={}
        )

    window = EvidenceWindow(served_until=NOW, label_as_of=NOW)
    decision = DecisionSummary(status=status, reason="why", decision_id="d", served_threshold=0.4)  # type: ignore[arg-type]
    promo = Promotion(promoted_at=NOW, old_champion="1", old_alias="challenger-1", served_threshold=0.4)
    for name, result in {
        "resolve": cand,
        "deploy_shadow": ShadowDeployment(ok=True, deployed_at=NOW, alias="challenger-2"),
        "shadow_look": look,
        "check_drift": DriftReport(window=window),
        "decide": decision,
        "promote": promo,
        "reject": ReleaseOutcome(status="rejected", reason="why"),
        "probation_check": probation,
        "finish_probation": ReleaseOutcome(status="confirmed", reason="r", serving="2"),
    }.items():
        monkeypatch.setattr(release, name, step(name, result))
    return calls


def test_promote_path_runs_the_dag_steps_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _stub(monkeypatch, "promote")
    lines: list[str] = []
    params = release.ReleaseParams(version="2", poll_interval_s=1, probation_poll_s=1)
    out = run_release(_Ctx(), params, echo=lines.append, sleep=lambda s: None)
    assert calls == [
        "resolve",
        "deploy_shadow",
        "shadow_look",
        "shadow_look",
        "check_drift",
        "decide",
        "promote",
        "probation_check",
        "probation_check",
        "finish_probation",
    ]
    assert out.status == "confirmed"
    assert any("matured labeled frauds 1 of 2 needed" in line for line in lines)
    assert any("threshold 0.4" in line for line in lines)


def test_reject_path_and_shadow_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _stub(monkeypatch, "reject", looks=100)
    ticks = iter(range(0, 10_000, 30))
    params = release.ReleaseParams(version="2", shadow_timeout_minutes=1, poll_interval_s=1)
    out = run_release(_Ctx(), params, echo=lambda s: None, sleep=lambda s: None, clock=lambda: next(ticks))
    assert calls[:2] == ["resolve", "deploy_shadow"] and calls[-3:] == ["check_drift", "decide", "reject"]
    assert 2 <= calls.count("shadow_look") <= 4 and out.status == "rejected"


def test_cli_help_lists_release_run() -> None:
    from fraudops.cli import main

    result = CliRunner().invoke(main, ["release", "run", "--help"])
    assert result.exit_code == 0, result.output
    assert "VERSION" in result.output and "--policy" in result.output and "--model-name" in result.output


def test_an_early_reject_ends_the_wait_and_the_early_look_is_taken_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CLI asks for the early look until the gate's floor of events was sent (as the DAG's
    sensor does), and an ``early_reject`` ends the wait: the gate decides without waiting for labels."""
    calls = _stub(monkeypatch, "reject")
    asked: list[bool] = []
    sent = itertools.chain([3, 9, 12], itertools.repeat(15))

    def look(*_: Any, early: bool = False) -> ShadowWait:
        asked.append(early)
        n = next(sent)
        return ShadowWait(ready=False, reason="waiting", progress={"scored": n - 1, "errors": 1})

    monkeypatch.setattr(release, "shadow_look", look)
    monkeypatch.setattr(release, "early_floor", lambda cand: 10)
    ticks = iter(range(0, 10_000, 1))
    params = release.ReleaseParams(version="2", shadow_timeout_minutes=1, poll_interval_s=1)
    run_release(_Ctx(), params, echo=lambda s: None, sleep=lambda s: None, clock=lambda: next(ticks))
    assert asked[:4] == [True, True, True, False]  # 3 and 9 sent: not yet; 12 >= 10: the one look

    calls.clear()
    broken = ShadowWait(
        ready=False, reason="constant scores (1 distinct value < 10)", early_reject="constant_scores"
    )
    monkeypatch.setattr(release, "shadow_look", lambda *_, **__: broken)
    lines: list[str] = []
    out = run_release(_Ctx(), params, echo=lines.append, sleep=lambda s: None)
    assert calls == ["resolve", "deploy_shadow", "check_drift", "decide", "reject"]
    assert out.status == "rejected"
    assert any("rejected early: constant scores" in line for line in lines)
