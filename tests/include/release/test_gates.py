"""Gate outcomes on synthetic paired evidence: each way a challenger can pass or fail."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from release_synthetic import SMALL_POLICY, T0, make_evidence

from fraudops.release.checks import CheckResult
from fraudops.release.drift import ColumnDrift, DriftResult
from fraudops.release.gates import GateDecision, decide_probation, decide_promotion, identical_ranking
from fraudops.release.policy import required_sample
from fraudops.release.recording import decision_row

POLICY = SMALL_POLICY
RATE = 0.05


def _promotion(final: bool = False, **kw: object) -> GateDecision:
    drift = kw.pop("drift", None)
    ev = make_evidence(**kw)
    return decide_promotion(ev, POLICY, drift, expected_fraud_rate=RATE, final=final)  # type: ignore[arg-type]


def test_better_challenger_is_promoted() -> None:
    d = _promotion(champion={"strength": 1.5}, challenger={"strength": 3.0})
    assert d.status == "promote", d.reason
    assert d.passed and d.deciding_check is None and not d.failed_checks
    assert all(c.ran for c in d.checks if c.name != "operating_point") and d.check("operating_point").ran
    ap = d.check("ap_non_inferiority")
    assert ap.value is not None and ap.value > -POLICY.max_ap_regression  # CS lower bound above −δ
    assert ap.details["ap_delta"] > 0.2 and ap.details["cs"][0] == ap.value
    q = d.evidence["quality"]
    # compared at the same budget: both matched thresholds flag ≤ 5 % of the paired events
    assert q["capture_candidate"] > q["capture_incumbent"]
    points = q["operating_point"]
    assert points["candidate"]["achieved"] <= POLICY.alert_budget
    assert points["incumbent"]["achieved"] <= POLICY.alert_budget
    assert d.policy_version == "test.1" and d.policy_fingerprint == POLICY.fingerprint
    need = required_sample(POLICY, RATE)
    assert d.evidence["sample_requirement"] == need.to_dict()
    assert need.min_labeled_frauds == 564  # ⌈((3.035 + 1.282) · 0.55 / 0.1)²⌉, see test_policy
    # plain data: survives JSON and comes back equal
    assert GateDecision.from_dict(json.loads(json.dumps(d.to_dict()))) == d


def test_worse_challenger_is_rejected_on_ap_confidence_sequence() -> None:
    d = _promotion(champion={"strength": 3.0}, challenger={"strength": 1.0})
    assert d.status == "reject"
    assert d.deciding_check == "ap_shown_worse"
    assert d.reason.startswith("ΔAP upper bound -")
    assert (
        d.value is not None
        and d.threshold == -POLICY.max_ap_regression
        and d.value < -POLICY.max_ap_regression
    )


def test_superiority_mode_needs_a_gain_shown() -> None:
    sup = POLICY.model_copy(update={"decision_mode": "superiority", "min_ap_gain": 0.0})
    better = make_evidence(champion={"strength": 1.5}, challenger={"strength": 3.0})
    d = decide_promotion(better, sup, expected_fraud_rate=RATE)
    assert d.status == "promote" and d.check("ap_superiority").passed
    # a slightly better model: non-inferior (promoted) but no gain shown (waits; rejected at the deadline)
    close = make_evidence(champion={"strength": 2.0}, challenger={"strength": 2.2})
    assert decide_promotion(close, POLICY, expected_fraud_rate=RATE).status == "promote"
    d = decide_promotion(close, sup, expected_fraud_rate=RATE)
    assert d.status == "wait" and d.deciding_check == "ap_superiority"
    d = decide_promotion(close, sup, expected_fraud_rate=RATE, final=True)
    assert d.status == "reject" and d.reason.startswith("inconclusive at the evidence deadline")
    assert d.deciding_check == "ap_superiority"


def test_decision_is_deterministic() -> None:
    ev = make_evidence(champion={"strength": 2.0}, challenger={"strength": 2.2})
    a = decide_promotion(ev, POLICY, expected_fraud_rate=RATE)
    b = decide_promotion(ev, POLICY, expected_fraud_rate=RATE)
    assert a.check("ap_non_inferiority").details == b.check("ap_non_inferiority").details
    assert a.evidence["quality"] == b.evidence["quality"]


def test_identical_ranking() -> None:
    import numpy as np

    rng = np.random.default_rng(4)
    a = np.round(rng.random(1000), 2)  # ties
    assert identical_ranking(a, a) and identical_ranking(a, a**3 + 1)
    assert not identical_ranking(a, -a)
    assert not identical_ranking(a, np.where(a > 0.5, 1.0, a))  # merges levels
    b = a.copy()
    b[[0, 1]] = b[[1, 0]]
    assert identical_ranking(a, b) == (a[0] == a[1])
    assert not identical_ranking(a[:0], a[:0])


def test_copy_of_the_champion_is_rejected_as_identical_ranking() -> None:
    ev = make_evidence(champion={"strength": 2.0})
    f = ev.frame
    f["candidate_score"] = f["incumbent_score"] ** 2  # a monotone transform: same ranking
    d = decide_promotion(ev, POLICY, expected_fraud_rate=RATE)
    assert d.status == "reject" and d.deciding_check == "identical_ranking"
    assert "nothing to release" in d.reason


def test_slow_challenger_is_rejected_on_latency() -> None:
    d = _promotion(challenger={"strength": 2.5, "latency_ms": 12.0})
    assert d.status == "reject" and d.deciding_check == "p99_latency_ms"
    assert "p99 latency" in d.reason and "> SLA 10 ms" in d.reason


def test_crashing_challenger_is_rejected_on_error_rate() -> None:
    d = _promotion(challenger={"strength": 2.5, "error_rate": 0.2})
    assert d.status == "reject" and d.deciding_check == "error_rate"
    assert d.reason.startswith("error rate 0.2") and "> 0.01" in d.reason


def test_missing_shadow_scores_count_as_errors() -> None:
    ev = make_evidence(challenger={"strength": 2.5})
    ev.frame.loc[ev.frame.index[:300], "candidate_present"] = False
    d = decide_promotion(ev, POLICY, expected_fraud_rate=RATE)
    assert d.status == "reject" and d.deciding_check == "error_rate"
    assert d.check("error_rate").value == pytest.approx(300 / 6000)
    # The reason says what the failures were, so an operator can tell a down worker from a model bug.
    assert d.check("error_rate").details["kinds"] == {"missing": 300}
    assert d.reason.endswith("(missing 300)")


def test_error_kinds_name_each_failure() -> None:
    from fraudops.release.checks import error_kinds
    from fraudops.release.evidence import ok_mask

    ev = make_evidence(challenger={"strength": 2.5, "error_rate": 0.1})
    f = ev.frame
    f.loc[f.index[:5], "candidate_present"] = False
    f.loc[f.index[5:8], "candidate_error"] = "shed:down"
    f.loc[f.index[8:10], "candidate_fallback"] = True
    kinds = error_kinds(f, "candidate")
    assert kinds["missing"] == 5 and kinds["shed:down"] == 3 and kinds["fallback"] == 2
    assert kinds["RuntimeError"] == int((f["candidate_error"].iloc[10:] == "RuntimeError").sum()) > 0
    assert sum(kinds.values()) == int((~ok_mask(f, "candidate")).sum())


def test_constant_scores_are_rejected() -> None:
    d = _promotion(challenger={"strength": 0.0, "constant": 0.01})
    assert d.status == "reject" and d.deciding_check == "constant_scores"
    assert d.reason.startswith("constant scores")


def test_a_coarse_challenger_is_served_at_the_budget_with_ties_drawn_and_judged_on_quality() -> None:
    ev = make_evidence(challenger={"strength": 2.5})
    f = ev.frame
    # 81 distinct levels, the top one holding 20 % of events: no threshold alone flags the 5 % budget
    s = f["candidate_score"].astype(float)
    f["candidate_score"] = (s.rank(pct=True) * 100).clip(upper=80.0).round() / 100
    d = decide_promotion(ev, POLICY, expected_fraud_rate=RATE)
    op = d.check("operating_point")
    assert op.passed and op.value == pytest.approx(POLICY.alert_budget), op.reason
    point = d.evidence["operating_point"]
    assert point["candidate_threshold"] == 0.8 and point["candidate_tie_share"] == pytest.approx(
        0.25, abs=0.01
    )
    assert "100% of its flags drawn among the events tied at it" in op.reason
    # flattening its top fifth destroyed its ranking there: rejected on what it scores
    assert d.status == "reject" and d.deciding_check == "ap_shown_worse", d.reason


def test_a_better_ranker_with_a_tie_block_across_the_budget_is_promoted() -> None:
    """The 2026-12-07 CI run: a drift retrain that had learned the attack scored a cluster of it in
    one block of identical scores (a tree model's leaf), straddling the alert budget; no threshold
    flagged between 1 % and 3.6 % of events and the gate rejected it on ``operating_point``. With
    ties drawn it is compared at exactly the budget, and promoted on its ranking."""
    ev = make_evidence(champion={"strength": 1.5}, challenger={"strength": 3.0})
    f = ev.frame
    s = f["candidate_score"].astype(float)
    pct = s.rank(pct=True, method="first")
    block = (pct > 0.92) & (pct <= 0.99)  # 7 % of events, tied, from the top 1 % to the top 8 %
    f.loc[block, "candidate_score"] = float(s[block].median())
    tied = f["candidate_score"].to_numpy(dtype=float)
    # what the old rule saw: on score alone, 1 % or 8 %, nothing near the 5 % budget
    assert (tied > tied[block.to_numpy()][0]).mean() == pytest.approx(0.01, abs=0.001)
    d = decide_promotion(ev, POLICY, expected_fraud_rate=RATE)
    assert d.status == "promote", d.reason
    point = d.evidence["operating_point"]
    assert point["candidate_achieved"] == pytest.approx(POLICY.alert_budget)
    assert point["candidate_tie_share"] == pytest.approx(4 / 7, abs=0.01)
    q = d.evidence["quality"]
    assert q["capture_candidate"] > q["capture_incumbent"] and q["ap_delta"] > 0.1


def test_feature_parity_mismatch_is_rejected() -> None:
    d = _promotion(challenger={"strength": 2.5}, parity_break=0.02)
    assert d.status == "reject" and d.deciding_check == "feature_parity_mismatch"
    assert 0.01 < d.check("feature_parity_mismatch").value < 0.03  # type: ignore[operator]


def _drift(check: str, values: dict[str, float], threshold: float, max_share: float) -> DriftResult:
    cols = tuple(ColumnDrift(c, "wasserstein", v, threshold, v >= threshold) for c, v in values.items())
    share = sum(c.drifted for c in cols) / len(cols)
    return DriftResult(check, cols, share, max_share, share > max_share, 1000, 1000)


def test_feature_drift_beyond_bounds_is_rejected_and_score_drift_is_informational() -> None:
    drifted = _drift("feature_drift", {"a": 0.5, "b": 0.3, "c": 0.01}, 0.1, 0.5)
    d = _promotion(champion={"strength": 1.5}, challenger={"strength": 3.0}, drift=[drifted])
    assert d.status == "reject" and d.deciding_check == "feature_drift"
    assert "67% of 3 columns drifted > 50% (a, b)" in d.reason
    calm = _drift("feature_drift", {"a": 0.5, "b": 0.01, "c": 0.01}, 0.1, 0.5)
    score_ok = _drift("score_drift", {"score": 0.05}, 0.25, 0.0)
    d = _promotion(champion={"strength": 1.5}, challenger={"strength": 3.0}, drift=[calm, score_ok])
    assert d.status == "promote", d.reason
    # Raw-score drift never decides (a recalibrated better model has PSI >> 0.25): shown, passed.
    score_bad = _drift("score_drift", {"score": 0.6}, 0.25, 0.0)
    d = _promotion(champion={"strength": 1.5}, challenger={"strength": 3.0}, drift=score_bad)
    assert d.status == "promote", d.reason
    check = d.check("score_drift")
    assert check.passed and check.ran and check.threshold is None
    assert check.reason.startswith("informational: raw-score score_drift wasserstein 0.6")


def test_feature_drift_is_judged_against_the_champions_own_drift() -> None:
    """Live traffic moved away from both training sets (the attack wave that triggered the
    retrain): a challenger that fits it no worse than the champion, column by column, passes; one
    that fits more than half of the columns worse by more than the margin is rejected."""
    challenger = _drift("feature_drift", {"a": 0.5, "b": 0.3, "c": 0.01}, 0.1, 0.5)
    worse_champion = _drift("incumbent_feature_drift", {"a": 0.6, "b": 0.4, "c": 0.2}, 0.1, 0.5)
    d = _promotion(
        champion={"strength": 1.5}, challenger={"strength": 3.0}, drift=[challenger, worse_champion]
    )
    assert d.status == "promote", d.reason
    check = d.check("feature_drift")
    assert check.passed and check.value == 0.0
    assert check.reason.startswith("feature_drift: 0 of 3 columns fit live traffic worse")
    assert check.reason.endswith("drifted vs own training data 67%, champion's 100%")
    assert "incumbent_feature_drift" not in {c.name for c in d.checks}  # a yardstick, not a check
    # Further on a and b by more than 0.1: 2 of 3 columns worse > 50 %.
    closer_champion = _drift("incumbent_feature_drift", {"a": 0.2, "b": 0.01, "c": 0.01}, 0.1, 0.5)
    d = _promotion(
        champion={"strength": 1.5}, challenger={"strength": 3.0}, drift=[challenger, closer_champion]
    )
    assert d.status == "reject" and d.deciding_check == "feature_drift"
    assert "2 of 3 columns fit live traffic worse" in d.reason and "(a 0.5 vs 0.2, b 0.3 vs 0.01)" in d.reason
    assert d.check("feature_drift").details["worse_than_champion"] == [["a", 0.5, 0.2], ["b", 0.3, 0.01]]
    # Further by no more than the margin is noise, not a worse fit (demo run 8: 62 % drifted
    # against the champion's 56 %, no column further by more than 0.06).
    close = _drift("incumbent_feature_drift", {"a": 0.45, "b": 0.25, "c": 0.01}, 0.1, 0.5)
    d = _promotion(champion={"strength": 1.5}, challenger={"strength": 3.0}, drift=[challenger, close])
    assert d.check("feature_drift").passed, d.check("feature_drift").reason
    # A column the champion does not read is judged on its own.
    extra = _drift("feature_drift", {"a": 0.5, "new": 0.9, "c": 0.01}, 0.1, 0.5)
    d = _promotion(champion={"strength": 1.5}, challenger={"strength": 3.0}, drift=[extra, close])
    assert d.check("feature_drift").details["worse_than_champion"] == [["new", 0.9, None]]
    assert "new 0.9 vs not read" in d.check("feature_drift").reason


def test_too_little_evidence_waits_and_quality_is_not_run() -> None:
    d = _promotion(n=500, champion={"strength": 1.5}, challenger={"strength": 3.0})
    assert d.status == "wait" and d.deciding_check == "scored_events"
    d = _promotion(n=3000, fraud_rate=0.01, champion={"strength": 1.5}, challenger={"strength": 3.0})
    assert d.status == "wait" and d.deciding_check == "matured_frauds"
    for name in ("ap_shown_worse", "ap_non_inferiority"):
        c = d.check(name)
        assert not c.ran and c.state == "not run" and not c.passed and c.reason.startswith("not run")
    assert d.evidence["quality"] is None
    # At the evidence deadline a wait is a reject, "inconclusive", with the shortfall.
    d = _promotion(
        final=True, n=3000, fraud_rate=0.01, champion={"strength": 1.5}, challenger={"strength": 3.0}
    )
    assert d.status == "reject" and d.deciding_check == "matured_frauds"
    assert d.reason.startswith("inconclusive at the evidence deadline: matured labeled frauds")
    assert "requirement: 564 matured labeled frauds, have 26" in d.reason


def test_an_operational_failure_is_not_hidden_by_missing_labels() -> None:
    d = _promotion(n=3000, fraud_rate=0.01, challenger={"strength": 2.5, "error_rate": 0.2})
    assert d.status == "reject" and d.deciding_check == "error_rate"


def test_young_events_do_not_count_even_with_fraud_labels() -> None:
    """Fraud labels have arrived but the events are younger than the maturity: no quality evidence."""
    ev = make_evidence(
        champion={"strength": 1.5},
        challenger={"strength": 3.0},
        label_delay=dt.timedelta(days=5),
        label_as_of=T0 + dt.timedelta(days=6),
        maturity_hours=168,
    )
    assert ev.n_labeled > 200 and ev.n_evaluable == 0
    d = decide_promotion(ev, POLICY, expected_fraud_rate=RATE)
    assert d.status == "wait" and d.deciding_check == "matured_frauds"
    assert d.evidence["matured_frauds"] == 0


def test_check_result_states() -> None:
    assert CheckResult("x", 1.0, 2.0, True, "ok").state == "passed"
    assert CheckResult("x", 1.0, 2.0, False, "no").state == "failed"
    skipped = CheckResult("x", None, 2.0, False, "not run: why", ran=False)
    assert skipped.state == "not run"
    assert CheckResult.from_dict(json.loads(json.dumps(skipped.to_dict()))) == skipped


# -- probation ----------------------------------------------------------------------------------
def test_probation_healthy_new_champion_is_confirmed() -> None:
    ev = make_evidence(stage="probation", champion={"strength": 2.0}, challenger={"strength": 2.5})
    d = decide_probation(ev, POLICY)
    assert d.stage == "probation" and d.status == "confirm", d.reason
    rate = d.check("decline_rate")
    assert rate.passed and rate.value == pytest.approx(POLICY.alert_budget, abs=0.005)
    assert rate.details["band"] == pytest.approx([0.025, 0.075])
    assert d.check("ap_non_inferiority").passed and d.check("ap_shown_worse").passed


def test_decline_rate_needs_evidence_not_a_handful_of_declines() -> None:
    # Regression (CI): 4.5 % declines on 306 events rolled back a better model; a CS that wide
    # overlaps the budget band.
    few = make_evidence(n=306, stage="probation", challenger={"strength": 2.5, "flag_share": 0.11})
    c = decide_probation(few, POLICY).check("decline_rate")
    assert c.ran and c.passed and c.value is not None and c.value > 0.1, c.reason
    many = make_evidence(stage="probation", challenger={"strength": 2.5, "flag_share": 0.11})
    c = decide_probation(many, POLICY).check("decline_rate")
    assert not c.passed and "is above the budget band" in c.reason
    # Regression (CI): an attack the new champion caught ebbed after promotion, its served rate fell
    # to 0.1 % against a 3 % budget, and the better model was rolled back. Too few declines is a
    # stale threshold (reported), not harm: ranking and capture are the quality checks' job.
    low = make_evidence(stage="probation", challenger={"strength": 2.5, "flag_share": 0.005})
    d = decide_probation(low, POLICY)
    c = d.check("decline_rate")
    assert c.passed and c.details["below_budget"] and c.details["cs"][1] < c.details["band"][0]
    assert "re-match" in c.reason and d.status != "rollback", d.reason


def test_probation_degraded_new_champion_is_rolled_back() -> None:
    errors = make_evidence(stage="probation", challenger={"strength": 2.0, "error_rate": 0.05})
    d = decide_probation(errors, POLICY)
    assert d.status == "rollback" and d.deciding_check == "error_rate_increase"
    alerts = make_evidence(stage="probation", challenger={"strength": 2.0, "flag_share": 0.15})
    d = decide_probation(alerts, POLICY)
    assert d.status == "rollback" and d.deciding_check == "decline_rate"
    assert d.value == pytest.approx(0.15, abs=0.01) and d.threshold == pytest.approx(0.075)
    worse = make_evidence(stage="probation", champion={"strength": 3.0}, challenger={"strength": 1.0})
    d = decide_probation(worse, POLICY)
    assert d.status == "rollback" and d.deciding_check == "ap_shown_worse"
    assert d.value is not None and d.value < -POLICY.probation_max_ap_regression
    slow = make_evidence(stage="probation", challenger={"strength": 2.0, "latency_ms": 8.0})
    assert decide_probation(slow, POLICY).deciding_check == "p99_latency_ms"
    constant = make_evidence(
        stage="probation", challenger={"strength": 0.0, "constant": 0.5, "flag_share": 0.05}
    )
    assert decide_probation(constant, POLICY).deciding_check == "constant_scores"


def test_probation_budget_misses_are_latency_not_errors() -> None:
    """Only production has a per-request budget: a new champion's budget misses (answered by the
    old one) are not errors against an old champion in shadow, which has no budget (regression:
    2 misses in 1005 events on a loaded machine rolled back a model with ΔAP +0.10)."""
    slow = {"strength": 2.5, "error_rate": 0.01, "failure": "champion v2: timeout"}
    d = decide_probation(make_evidence(stage="probation", challenger=slow), POLICY)
    assert d.status == "confirm", d.reason
    check = d.check("error_rate_increase")
    assert check.value == 0.0 and check.details["candidate_budget_misses"] > 30
    assert "budget misses judged by latency" in check.reason
    broken = {"strength": 2.5, "error_rate": 0.01, "failure": "champion v2: nan"}
    d = decide_probation(make_evidence(stage="probation", challenger=broken), POLICY)
    assert d.status == "rollback" and d.deciding_check == "error_rate_increase"


def test_probation_quality_is_not_run_without_matured_labels() -> None:
    """Round 1 counted a skipped quality check as passed and confirmed a model that was never
    judged. Now: not run, wait; at the deadline the known-good old champion returns."""
    ev = make_evidence(stage="probation", fraud_rate=0.002, challenger={"strength": 1.0})
    d = decide_probation(ev, POLICY)
    assert d.status == "wait" and d.deciding_check == "ap_non_inferiority"
    for name in ("ap_shown_worse", "ap_non_inferiority"):
        assert d.check(name).state == "not run"
    assert d.evidence["quality"] is None
    d = decide_probation(ev, POLICY, final=True)
    assert d.status == "rollback" and "without judging quality" in d.reason
    # Judged but inconclusive at the deadline (not shown harmful): confirmed.
    close = make_evidence(stage="probation", champion={"strength": 2.0}, challenger={"strength": 1.85})
    strict = POLICY.model_copy(update={"probation_max_ap_regression": 0.01, "probation_detect_ap_drop": 0.1})
    d = decide_probation(close, strict)
    assert d.status == "wait" and d.check("ap_non_inferiority").ran, d.reason
    d = decide_probation(close, strict, final=True)
    assert d.status == "confirm" and d.reason.startswith("probation ended, not shown harmful")


def test_decision_row_matches_table_and_is_idempotent_per_run() -> None:
    from fraudops.warehouse.schema import GATE_DECISIONS

    d = _promotion(challenger={"strength": 2.5, "latency_ms": 12.0})
    kw = {"model_name": "fraud-detector", "challenger_version": "2", "champion_version": "1"}
    row = decision_row(d, dag_run_id="manual__1", **kw)
    assert set(row) == set(GATE_DECISIONS.column_names)
    assert row["decision_id"] == decision_row(d, dag_run_id="manual__1", **kw)["decision_id"]
    assert row["decision_id"] != decision_row(d, dag_run_id="manual__2", **kw)["decision_id"]
    evidence = json.loads(row["evidence"])
    assert evidence["deciding_check"] == "p99_latency_ms"
    assert {c["name"] for c in evidence["checks"]} >= {"error_rate", "p99_latency_ms", "ap_non_inferiority"}
    assert evidence["evidence"]["policy"]["version"] == "test.1"
    assert evidence["evidence"]["operating_point"]["budget"] == POLICY.alert_budget


def test_empty_evidence_waits() -> None:
    ev = make_evidence(n=200)
    ev.frame = ev.frame.iloc[:0]
    d = decide_promotion(ev, POLICY, expected_fraud_rate=RATE)
    assert d.status == "wait" and d.deciding_check == "scored_events"


# Regression: decide_probation judged its operational checks before the volume floor, so with no
# events the constant-score guard (std 0) and the latency check ("no latency measured") rolled a
# good model back at the first probation poll.


def test_empty_probation_evidence_waits() -> None:
    ev = make_evidence(n=200, stage="probation")
    ev.frame = ev.frame.iloc[:0]
    assert decide_probation(ev, POLICY).status == "wait"


def test_first_probation_poll_with_a_handful_of_events_waits() -> None:
    """The probation sensor polls from the promotion on: its first look sees a few events. Fewer
    than ``min_distinct_scores`` scores is not evidence of constant scores."""
    ev = make_evidence(n=8, stage="probation", challenger={"strength": 2.5})
    d = decide_probation(ev, POLICY)
    assert d.status == "wait", d.reason


def test_probation_past_its_length_waits_for_maturing_labels_then_rolls_back_unjudged() -> None:
    """Regression (fresh-clone make run): the stream ran behind, no probation event had matured at
    the wall-clock deadline, and a better champion was rolled back as unjudged. The deadline extends
    while no quality check can run, up to PROBATION_GRACE more; judged evidence ends it at once."""
    from fraudops.pipeline.release import PROBATION_GRACE, probation_look

    length = dt.timedelta(minutes=4)
    young = make_evidence(
        stage="probation",
        challenger={"strength": 2.5},
        label_delay=dt.timedelta(days=1),
        label_as_of=T0 + dt.timedelta(days=6),
        maturity_hours=168,
    )
    assert young.n_evaluable == 0
    early = probation_look(young, POLICY, elapsed=length / 2, length=length)
    assert early.status == "wait"
    extended = probation_look(young, POLICY, elapsed=length * 1.5, length=length)
    assert extended.status == "wait" and not extended.check("ap_non_inferiority").ran
    late = length * (1.0 + PROBATION_GRACE) + dt.timedelta(seconds=1)
    unjudged = probation_look(young, POLICY, elapsed=late, length=length)
    assert unjudged.status == "rollback" and "without judging quality" in unjudged.reason
    matured = make_evidence(stage="probation", champion={"strength": 2.0}, challenger={"strength": 2.05})
    judged = probation_look(matured, POLICY, elapsed=length, length=length)
    assert judged.status in ("confirm", "rollback") and judged.check("ap_non_inferiority").ran


def test_probation_confirms_only_after_the_minimum_exposure() -> None:
    """Quality shown fine on the first hours of traffic does not confirm a new champion that has
    not yet served a full cycle (100 h of events here): it waits, rollbacks still act at once, and
    a probation that ends before the exposure rolls back (never "passed")."""
    from fraudops.pipeline.release import PROBATION_GRACE, probation_look

    ev = make_evidence(stage="probation", champion={"strength": 2.0}, challenger={"strength": 3.0})
    assert decide_probation(ev, POLICY).status == "confirm"
    long = POLICY.model_copy(update={"probation_min_exposure_hours": 200.0})
    d = decide_probation(ev, long)
    assert d.status == "wait" and d.deciding_check == "exposure_hours", d.reason
    assert d.check("ap_non_inferiority").passed
    assert d.reason == "hours of production traffic served 99.98 < 200 required"
    d = decide_probation(ev, long, final=True)
    assert d.status == "rollback" and d.deciding_check == "exposure_hours"
    assert d.reason.startswith("probation ended before the new champion met enough traffic")
    # A harmful champion is rolled back without waiting for the exposure.
    bad = make_evidence(stage="probation", champion={"strength": 3.0}, challenger={"strength": 0.5})
    assert decide_probation(bad, long).status == "rollback"
    # The DAG's look extends the wall-clock length while exposure lags the event clock.
    length = dt.timedelta(minutes=4)
    assert probation_look(ev, long, elapsed=length * 1.5, length=length).status == "wait"
    late = length * (1.0 + PROBATION_GRACE) + dt.timedelta(seconds=1)
    assert probation_look(ev, long, elapsed=late, length=length).status == "rollback"


def test_decision_round_trips_through_json_with_its_vocabulary() -> None:
    import json

    from fraudops.vocabulary import Decision, Stage

    d = decide_promotion(make_evidence(challenger={"strength": 3.0}), POLICY)
    again = GateDecision.from_dict(json.loads(json.dumps(d.to_dict())))
    assert again == d and again.status is Decision.PROMOTE and again.stage is Stage.PROMOTION
    assert json.loads(json.dumps(d.to_dict()))["status"] == "promote"
