"""
### fraud_release — shadow → evidence in BigQuery → Evidently → gate → promote or reject → probation

Starts when `fraud_retrain` registers a candidate (the `fraudops_candidate` Asset), or from the
trigger form with a model version. Shadow capacity is the `shadow_slots` pool: releases queue there
instead of overloading the scoring service's shadow pool.

1. **resolve** the challenger version, the champion and the gate policy (defaults + form overrides);
   the sample size follows from the precision the policy wants.
2. **deploy_shadow**: verify the bundle, point `challenger-<v>` at it (audited in `deployments`),
   wait until the scoring service's shadow pool reports it running. A bundle that fails
   verification never gets an alias and goes straight to reject.
3. **wait_for_shadow_metrics**: deferrable sensor (triggerer, no worker slot) until the challenger
   has scored the gate's floor of events and matured labeled frauds (label maturity from the
   warehouse's label-delay curve); its log and result read "matured labeled frauds 41 of 120
   needed; scored 3,100 of 5,000; ETA ~2.3 h event time"; on timeout → reject with the shortfall;
   it ends early once the champion the release compares with no longer serves, or when its one
   early look (at the gate's floor of events, before labels mature) finds a label-free check
   failing (slow, erroring, constant scores, unattainable alert budget): the gate rejects on it.
4. **check_drift**: Evidently — challenger vs champion scores on the same events, live features vs
   the challenger's training reference; values to `drift_metrics`, HTML reports to MLflow.
5. **decide_promotion**: the versioned policy (latency, errors, constant scores, feature parity,
   drift, both models at the same alert budget, ΔAP and harm guards on confidence sequences over
   matured labels) → `gate_decisions`; branch. It looks at every `poll_interval_s` until the gate
   decides (looking again does not inflate its error), then a *wait* at the deadline is a reject.
   A champion that moved since `resolve` (another release, a rollback) is a reject at once:
   evidence against a model that no longer serves cannot promote.
6. **approve_release**: the gate's branch; when the release sets `requires_approval` and the gate
   passed, Airflow's human-in-the-loop request to the release managers first (Required Actions in
   the UI, the HITL REST API, the fraudops console): *Approve* → promote, *Abort* or no answer within
   `approval_timeout_minutes` → reject, recorded with who decided.
7. **promote**: tag the challenger with its `served_threshold` (matched to the alert budget on the
   window's traffic), `champion` → challenger, the old champion keeps scoring in shadow (if the
   champion moved after the gate passed: a reject is recorded, the challenger retired, the task
   fails with the reason); **reject**:
   retire the challenger alias, keep the evidence.
8. **probation**: the new champion (served at the threshold matched to the budget) in production
   vs the old one in reverse shadow, checked every `probation_poll_s` until the gate can judge it on
   matured labels; **rollback** restores the old champion (and waits until production serves it),
   **confirm** retires it.

Domain logic: `fraudops.pipeline.release` (no Airflow imports); `fraudops release run` runs the same
steps. XCom carries the typed objects of `fraudops.pipeline.release_types` as small JSON dicts.
Every side effect is retry-safe: a task killed after its alias move and then retried or cleared
ends in the state of one clean run, with one `deployments` row per change.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Param, dag, task
from fraudops_airflow.approval import ReleaseApprovalOperator
from fraudops_airflow.assets import CANDIDATE
from fraudops_airflow.params import airflow_params
from fraudops_airflow.sensors import ProbationSensor, ShadowMetricsSensor
from fraudops_airflow.tasks import effective_params, run_key, run_step

from fraudops.pipeline.knobs import RELEASE

DAG_ID = "fraud_release"
#: Airflow Variable (JSON) with values for params left empty (see effective_params).
PROFILE = "fraudops_release_defaults"
NONE_FAILED = "none_failed_min_one_success"
#: Seconds before "now" where evidence ends (= fraudops.pipeline.release.SETTLE_S; kept literal so
#: parsing this file imports nothing from the domain package).
SETTLE_S = 20.0


def _ctx(run_id: str | None) -> Any:
    from fraudops.pipeline.release import ReleaseContext

    return ReleaseContext(run_key(run_id, DAG_ID))


def _cand(xcom: dict[str, Any]) -> Any:
    """The run's typed candidate (its params are the effective ones, fixed once by ``resolve``)."""
    from fraudops.pipeline.release_types import Candidate

    return Candidate.from_xcom(xcom)


@dag(
    dag_id=DAG_ID,
    schedule=[CANDIDATE],
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=2,
    doc_md=__doc__,
    tags=["fraudops", "release"],
    default_args={"retries": 2, "retry_delay": dt.timedelta(seconds=20), "owner": "fraud-ml"},
    params={
        # Empty (null / "") = the `fraudops_release_defaults` Variable's value, else the code
        # default (fraudops.pipeline.release.ReleaseParams): Asset-started runs follow the profile.
        "version": Param(
            "",
            type="string",
            pattern=r"^[0-9]*$",
            description="Challenger; empty = from the candidate Asset.",
        ),
        "policy": Param(
            None, type=["null", "object"], description='GatePolicy overrides, e.g. {"max_p99_latency_ms": 8}.'
        ),
        **airflow_params(RELEASE),
    },
)
def fraud_release() -> None:
    # Each task: typed objects in (X.from_xcom), the same step function `fraudops release run`
    # calls, typed object out (.to_xcom()). No release rule lives here or in a template.
    @task
    def resolve(
        params: dict[str, Any] | None = None, run_id: str | None = None, **context: Any
    ) -> dict[str, Any]:
        from fraudops.pipeline import release
        from fraudops.pipeline.release import ReleaseParams

        events = context.get("triggering_asset_events") or {}
        extras = [dict(e.extra or {}) for evs in events.values() for e in evs]
        effective = run_step(ReleaseParams.from_dict, effective_params(params, PROFILE))
        return run_step(release.resolve, _ctx(run_id), effective, extras).to_xcom()

    @task(pool="shadow_slots")
    def deploy_shadow(cand: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
        from fraudops.pipeline import release

        c = _cand(cand)
        return run_step(release.deploy_shadow, _ctx(run_id), release.params_of(c), c).to_xcom()

    @task.branch
    def shadow_started(deploy: dict[str, Any]) -> list[str]:
        from fraudops.pipeline.release_types import ShadowDeployment

        # decide_promotion is downstream either way (it records an artifact rejection too).
        ok = ShadowDeployment.from_xcom(deploy).ok
        return ["wait_for_shadow_metrics", "decide_promotion"] if ok else ["decide_promotion"]

    @task
    def check_drift(
        cand: dict[str, Any], deploy: dict[str, Any], run_id: str | None = None
    ) -> dict[str, Any]:
        from fraudops.pipeline import release
        from fraudops.pipeline.release_types import ShadowDeployment

        c = _cand(cand)
        d = ShadowDeployment.from_xcom(deploy)
        return run_step(
            release.check_drift, _ctx(run_id), release.params_of(c), c, d, run_id or "manual"
        ).to_xcom()

    @task(trigger_rule=NONE_FAILED)
    def decide_promotion(
        cand: dict[str, Any], deploy: dict[str, Any], run_id: str | None = None, ti: Any = None
    ) -> str:
        from fraudops.pipeline import release
        from fraudops.pipeline.release_types import DriftReport, ShadowDeployment, ShadowWait

        c = _cand(cand)
        waited = ti.xcom_pull(task_ids="wait_for_shadow_metrics")
        drift = ti.xcom_pull(task_ids="check_drift")
        decision = run_step(
            release.decide,
            _ctx(run_id),
            release.params_of(c),
            c,
            ShadowDeployment.from_xcom(deploy),
            ShadowWait.from_xcom(waited) if waited else None,
            DriftReport.from_xcom(drift) if drift else None,
            run_id or "manual",
        )
        ti.xcom_push(key="decision", value=decision.to_xcom())
        return str(decision.status)

    @task
    def promote(cand: dict[str, Any], run_id: str | None = None, ti: Any = None) -> dict[str, Any]:
        from fraudops.pipeline import release
        from fraudops.pipeline.release_types import DecisionSummary

        c = _cand(cand)
        decision = DecisionSummary.from_xcom(ti.xcom_pull(task_ids="decide_promotion", key="decision"))
        return run_step(release.promote, _ctx(run_id), release.params_of(c), c, decision).to_xcom()

    @task
    def reject(cand: dict[str, Any], run_id: str | None = None, ti: Any = None) -> dict[str, Any]:
        from fraudops.pipeline import release
        from fraudops.pipeline.release_types import DecisionSummary

        c = _cand(cand)
        raw = ti.xcom_pull(task_ids="decide_promotion", key="decision")
        decision = DecisionSummary.from_xcom(raw) if raw else None
        approval = ti.xcom_pull(task_ids="approve_release", key="approval") or {}
        if decision is not None and approval.get("asked"):
            # The gate passed, a release manager said Abort (or nobody answered in time).
            return run_step(
                release.abort, _ctx(run_id), release.params_of(c), c, decision, approval
            ).to_xcom()
        return run_step(release.reject, _ctx(run_id), release.params_of(c), c, decision).to_xcom()

    @task.branch
    def probation_outcome(outcome: dict[str, Any]) -> str:
        from fraudops.pipeline.release_types import ProbationOutcome
        from fraudops.vocabulary import Decision

        return "rollback" if ProbationOutcome.from_xcom(outcome).status == Decision.ROLLBACK else "confirm"

    def _finish(
        cand: dict[str, Any], promo: dict[str, Any], outcome: dict[str, Any], run_id: str | None
    ) -> dict[str, Any]:
        from fraudops.pipeline import release
        from fraudops.pipeline.release_types import ProbationOutcome, Promotion

        c = _cand(cand)
        return run_step(
            release.finish_probation,
            _ctx(run_id),
            release.params_of(c),
            c,
            Promotion.from_xcom(promo),
            ProbationOutcome.from_xcom(outcome),
            run_id or "manual",
        ).to_xcom()

    @task
    def confirm(
        cand: dict[str, Any], promo: dict[str, Any], outcome: dict[str, Any], run_id: str | None = None
    ) -> dict[str, Any]:
        return _finish(cand, promo, outcome, run_id)

    @task
    def rollback(
        cand: dict[str, Any], promo: dict[str, Any], outcome: dict[str, Any], run_id: str | None = None
    ) -> dict[str, Any]:
        return _finish(cand, promo, outcome, run_id)

    # Task calls return XComArgs that Airflow resolves to the upstream task's dict at run time
    # (the tasks are annotated with what they receive then): the wiring holds them as Any.
    cand: Any = resolve()
    deployed: Any = deploy_shadow(cand)
    started = shadow_started(deployed)
    # Waits for the candidate's floors (scored events, matured labeled frauds at the effective
    # label maturity); from there on decide_promotion looks at every poll (confidence sequences)
    # until the gate decides or the deadline passes.
    waited = ShadowMetricsSensor(
        task_id="wait_for_shadow_metrics",
        pool="shadow_slots",
        candidate=cand,
        deployment=deployed,
        settle_s=SETTLE_S,  # the same cutoff as the evidence check_drift/decide_promotion use
        retries=1,
    )
    drift = check_drift(cand, deployed)
    decided = decide_promotion(cand, deployed)
    started >> [waited, decided]
    waited >> drift >> decided
    # The go/no-go: the gate's branch, or (requires_approval) Airflow's human-in-the-loop request
    # to the release managers first.
    approval = ReleaseApprovalOperator(task_id="approve_release", candidate=cand)
    promo: Any = promote(cand)
    rejected = reject(cand)
    decided >> approval >> [promo, rejected]
    watch = ProbationSensor(task_id="probation", candidate=cand, promotion=promo)
    watched: Any = watch.output
    outcome = probation_outcome(watched)
    confirm(cand, promo, watched) << outcome
    rollback(cand, promo, watched) << outcome


fraud_release()
