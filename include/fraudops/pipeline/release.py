"""The release lifecycle behind ``fraud_release``: shadow → evidence → drift → gate → promote or
reject → probation → confirm or roll back. No Airflow imports: the DAG and ``fraudops release run``
call these same steps, each taking and returning the typed objects of
:mod:`fraudops.pipeline.release_types` (the DAG converts them at the XCom boundary only).

Alias moves go through :func:`fraudops.registry.move_alias` / :func:`retire_alias`, so every move
has its ``deployments`` row, exactly as moves from ``POST /deploy`` or ``fraudops deploy``.

Retry safety: every side effect is keyed by (run, step, alias, action, version). The audit row is
written first (``pending``), then the alias moves, then the row is marked ``applied``; a retried
or cleared task re-runs its step and finishes what is pending, skipping what is applied, so it ends
in the state of one clean run with one audit row per change. Version tags are set idempotently;
``gate_decisions`` rows have per-run ids. ``fraudops.faults.crash_point`` marks the
points right after each side effect where the tests kill the process. The
scoring service notices a move through its alias watcher; the steps that change what production or
the shadow pool runs then *wait until the service reports it* (``GET /version``), so "deployed"
means "serving", not "pointer moved".

Clocks: "deployed at" / "promoted at" are wall-clock instants (they bound ``served_at``); labels and
their maturity are judged in event time against :func:`fraudops.release.evidence.event_clock`
(the newest transaction), which is also right under the simulator's accelerated stream.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from fraudops.clients.scoring import (
    challenger_gone,
    challenger_running,
    champion_is,
    service_state,
    wait_for_service,
)
from fraudops.exceptions import ArtifactError, ConfigError, PermanentError, ServiceError
from fraudops.faults import crash_point
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
from fraudops.pipeline.retrain import RunContext
from fraudops.vocabulary import Action, Alias, Decision, Stage, challenger_alias

if TYPE_CHECKING:
    from fraudops.registry import AliasMove
    from fraudops.release.evidence import ShadowEvidence
    from fraudops.release.gates import GateDecision
    from fraudops.release.policy import GatePolicy
    from fraudops.warehouse import Warehouse

log = logging.getLogger(__name__)

CHAMPION: str = Alias.CHAMPION.value  # a plain str: it keys dicts that orjson writes
ACTOR = "fraud_release"
#: Extra share of ``probation_minutes`` a probation may run while its quality cannot be judged yet.
PROBATION_GRACE = 1.0
#: Seconds a prediction may take to reach the warehouse: the shadow row of an event lags its
#: production row (shadow queue, worker, collector, micro-batch, MERGE). Evidence windows end this
#: long before "now", else the newest production events would lack their shadow rows and count as
#: challenger errors.
SETTLE_S = 20.0
#: Gate checks that need no labels (see ``fraudops.release.gates``).
OPERATIONAL_CHECKS = frozenset(
    {
        "p99_latency_ms",
        "error_rate",
        "constant_scores",
        "feature_parity_mismatch",
        "feature_drift",
        "operating_point",
        "identical_ranking",
    }
)


def _flag(name: str, value: Any) -> bool:
    """A yes/no param from a form, a CLI or JSON: a bool, or true/false/1/0/yes/no as text."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


@dataclass(frozen=True)
class ReleaseParams:
    """What one release run does (the DAG's trigger form; every field has a safe default)."""

    #: Registered model; empty → settings (FRAUDOPS_MODEL_NAME).
    model_name: str = ""
    #: Challenger version; empty → the version in the triggering candidate Asset event.
    version: str = ""
    #: Overrides of :class:`~fraudops.release.policy.GatePolicy` fields (validated; unknown keys fail).
    policy: dict[str, Any] = field(default_factory=dict)
    #: Fraud rate used to size the scored-events requirement.
    expected_fraud_rate: float = 0.005
    #: How long the challenger may take to collect matured evidence before it is rejected as
    #: inconclusive. Chargebacks take weeks: 95 % of the simulator's fraud labels arrive within about
    #: 32 days, so the production default leaves room for the label maturity plus collection.
    shadow_timeout_minutes: float = 45 * 24 * 60.0
    #: Seconds between warehouse polls while waiting for evidence.
    poll_interval_s: float = 300.0
    #: Seconds the scoring service may take to report a deployment as serving.
    deploy_timeout_s: float = 300.0
    #: Probation deadline: the new champion is watched until the gate can judge it on matured
    #: labels, at most this long (then the final look decides; see ``decide_probation``). While
    #: no quality check could run yet (labels still maturing), the deadline extends by up to
    #: ``PROBATION_GRACE`` of this length before an unjudged champion is rolled back.
    probation_minutes: float = 45 * 24 * 60.0
    #: Seconds between probation checks (a degrading champion is rolled back within one of these).
    probation_poll_s: float = 60.0
    #: Scoring service base URL; empty → settings (FRAUDOPS_SCORING_HOST/PORT).
    scoring_url: str = ""
    #: A passed gate waits for a release manager's *Approve* before the promotion (Airflow's
    #: human-in-the-loop request, answered in Airflow or the console); *Abort* rejects.
    requires_approval: bool = False
    #: Minutes the release managers have to answer; no answer → reject.
    approval_timeout_minutes: float = 3 * 24 * 60.0
    #: Share of live traffic mirrored to this challenger (its booking's); None → the scoring
    #: service's default. Within the shadow pool's limits (FRAUDOPS_SHADOW_SAMPLE_RATE_MIN/_MAX).
    shadow_sample_rate: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.expected_fraud_rate < 1.0:
            raise ConfigError(f"expected_fraud_rate must be in (0, 1), got {self.expected_fraud_rate}")
        for name in (
            "shadow_timeout_minutes",
            "poll_interval_s",
            "deploy_timeout_s",
            "probation_poll_s",
            "approval_timeout_minutes",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0")
        if self.probation_minutes < 0:
            raise ConfigError("probation_minutes must be >= 0")
        if self.shadow_sample_rate is not None and not 0.0 < self.shadow_sample_rate <= 1.0:
            raise ConfigError(f"shadow_sample_rate must be in (0, 1], got {self.shadow_sample_rate}")
        if self.version and not str(self.version).isdigit():
            raise ConfigError(f"version must be a registry version number, got {self.version!r}")
        self.gate_policy()  # fail on bad overrides now, not half way through a release

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> ReleaseParams:
        raw = dict(raw or {})
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in known or value is None:
                continue
            if key == "policy":
                values[key] = json.loads(value) if isinstance(value, str) and value.strip() else (value or {})
            elif key in ("model_name", "version", "scoring_url"):
                values[key] = str(value)
            elif key == "requires_approval":
                values[key] = _flag(key, value)
            elif key == "shadow_sample_rate" and value == "":
                continue
            else:
                values[key] = float(value)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def gate_policy(self) -> GatePolicy:
        from pydantic import ValidationError

        from fraudops.release.policy import DEFAULT_POLICY, GatePolicy

        if not self.policy:
            return DEFAULT_POLICY
        try:
            return GatePolicy.from_dict({**DEFAULT_POLICY.to_dict(), **self.policy})
        except ValidationError as err:
            raise ConfigError(f"invalid policy override: {err}") from err


@dataclass
class ReleaseContext(RunContext):
    """Services and the folder of one release run (``<artifacts>/release/<run>``)."""

    AREA: ClassVar[str] = "release"

    @property
    def tracking_uri(self) -> str:
        return self.settings.mlflow.tracking_uri

    def scoring_url(self, params: ReleaseParams) -> str:
        return (params.scoring_url or self.settings.scoring.url).rstrip("/")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- 0. resolve ---------------------------------------------------------------------------------
def resolve(
    ctx: ReleaseContext, params: ReleaseParams, asset_extras: list[dict[str, Any]] | None = None
) -> Candidate:
    """Which version to release against which champion, under which policy and sample size, with
    which label maturity (the warehouse's label-delay curve, else the policy's)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from fraudops.registry import get_alias_version
    from fraudops.release.policy import required_sample

    name = params.model_name or ""
    version = params.version
    for extra in reversed(asset_extras or []):
        if not version and extra.get("version"):
            version = str(extra["version"])
            name = name or str(extra.get("model_name") or "")
    name = name or ctx.settings.mlflow.model_name
    if not version:
        raise PermanentError("no challenger version: set the `version` param or trigger from a candidate")
    try:
        MlflowClient(tracking_uri=ctx.tracking_uri, registry_uri=ctx.tracking_uri).get_model_version(
            name, version
        )
    except MlflowException as err:
        raise PermanentError(f"model {name!r} has no version {version}: {err}") from err
    champion = get_alias_version(name, CHAMPION, tracking_uri=ctx.tracking_uri)
    if champion is None:
        raise PermanentError(
            f"{name} has no champion to compare with; bootstrap one first (`fraudops up` does)"
        )
    if champion == version:
        raise PermanentError(f"{name} v{version} already is the champion")
    rate = params.shadow_sample_rate
    refusal = None if rate is None else ctx.settings.scoring.sample_rate_refusal(rate)
    if refusal is not None:
        raise PermanentError(f"shadow_sample_rate: {refusal}")
    policy = params.gate_policy()
    need = required_sample(policy, params.expected_fraud_rate)
    maturity = _maturity(ctx, policy)
    log.info(
        "release %s v%s vs champion v%s: planned %d scored events, %d matured labeled frauds; the gate "
        "looks from %d events and %d matured frauds on (policy %s); label maturity %.1f h (%s)",
        name,
        version,
        champion,
        need.min_scored_events,
        need.min_labeled_frauds,
        policy.min_scored_events_floor,
        policy.min_labeled_frauds_floor,
        policy.version,
        maturity.hours,
        maturity.note,
    )
    return Candidate(
        model_name=name,
        version=str(version),
        champion=str(champion),
        alias=challenger_alias(version),
        params=params.to_dict(),
        policy=policy.to_dict(),
        policy_fingerprint=policy.fingerprint,
        # The gate decides on confidence sequences, so it may look as soon as the floors are met.
        min_scored_events=int(policy.min_scored_events_floor),
        min_labeled_frauds=int(policy.min_labeled_frauds_floor),
        planned_scored_events=int(need.min_scored_events),
        planned_labeled_frauds=int(need.min_labeled_frauds),
        label_maturity_hours=float(maturity.hours),
        maturity=maturity.to_dict(),
    )


def _maturity(ctx: ReleaseContext, policy: GatePolicy) -> Any:
    """The label maturity the gates use: the warehouse's label-delay curve, else the policy's."""
    from fraudops.release.evidence import event_clock
    from fraudops.release.labels import effective_maturity

    return effective_maturity(ctx.wh(), policy, as_of=event_clock(ctx.wh()))


def params_of(cand: Candidate) -> ReleaseParams:
    """The run's effective params, fixed once by ``resolve`` and carried in the candidate."""
    return ReleaseParams.from_dict(cand.params)


def _key(ctx: ReleaseContext, step: str, alias: str, action: str, version: str | None) -> str:
    """Idempotency key of one alias change of one run's step: a retry or a cleared task re-runs
    the step with the same keys, so its audit rows (and moves) happen once."""
    return f"{ctx.run_key}|{step}|{alias}|{action}|{version or '-'}"


def _move(
    ctx: ReleaseContext, name: str, alias: str, version: str, action: str, reason: str, *, step: str
) -> AliasMove:
    """``move_alias`` as this DAG does it: intent first, audited in the run's warehouse, actor
    ``fraud_release``, idempotent per (run, step, alias, action, version)."""
    from fraudops.registry import move_alias

    return move_alias(
        ctx.wh(),
        model_name=name,
        alias=alias,
        version=version,
        action=action,
        actor=ACTOR,
        reason=reason[:500],
        tracking_uri=ctx.tracking_uri,
        idempotency_key=_key(ctx, step, alias, action, version),
    )


# -- 1. deploy_shadow ---------------------------------------------------------------------------
def deploy_shadow(ctx: ReleaseContext, params: ReleaseParams, cand: Candidate) -> ShadowDeployment:
    """Verify the bundle, point ``challenger-<v>`` at it (audited), wait until the pool runs it.

    A bundle that fails verification (or that the service refuses) never gets an alias: the result
    says ``ok: False`` with the reason, and the DAG goes straight to reject.
    """
    from fraudops.registry import download_artifact_dir

    name, version, alias = cand.model_name, cand.version, cand.alias
    try:
        download_artifact_dir(name, version, ctx.run_dir / "bundle", tracking_uri=ctx.tracking_uri)
    except ArtifactError as err:
        log.error("%s v%s rejected before shadow: %s", name, version, err)
        return ShadowDeployment(ok=False, reason=f"artifact verification failed: {err}", check="artifact")
    _move(
        ctx,
        name,
        alias,
        version,
        Action.SHADOW,
        f"shadow evaluation against champion v{cand.champion}",
        step="deploy_shadow",
    )
    crash_point("deploy_shadow:after_shadow_move")
    _set_rate(ctx, cand, params.shadow_sample_rate, "deploy_shadow")
    url = ctx.scoring_url(params)
    try:
        doc, waited = wait_for_service(
            url,
            challenger_running(alias, version, name, params.shadow_sample_rate),
            f"{alias} v{version} running",
            params.deploy_timeout_s,
        )
    except PermanentError as err:
        retire_alias(ctx, name, alias, f"refused by the scoring service: {err}", step="deploy_shadow")
        return ShadowDeployment(ok=False, reason=str(err), check="artifact")
    worker = doc["challengers"][alias]
    log.info("%s v%s scoring in shadow after %.1fs (pid %s)", name, version, waited, worker.get("pid"))
    return ShadowDeployment(
        ok=True,
        deployed_at=_now(),
        alias=alias,
        seconds_to_running=round(waited, 3),
        shadow_sample_rate=worker.get("sample_rate", doc.get("shadow_sample_rate")),
    )


def _set_rate(ctx: ReleaseContext, cand: Candidate, rate: float | None, step: str) -> None:
    """The challenger's own sample rate (None: the service's default, also clearing a rate left
    by an earlier release of the same version), audited once per run and step."""
    from fraudops.registry import set_sample_rate

    set_sample_rate(
        ctx.wh(),
        model_name=cand.model_name,
        alias=cand.alias,
        rate=rate,
        actor=ACTOR,
        reason="the release's sample rate (its booking's)" if rate is not None else "the service default",
        tracking_uri=ctx.tracking_uri,
        idempotency_key=_key(ctx, step, cand.alias, Action.SAMPLE_RATE, None if rate is None else repr(rate)),
    )


def retire_alias(
    ctx: ReleaseContext, model_name: str, alias: str, reason: str, *, step: str = "retire"
) -> str | None:
    """Remove ``alias`` with a ``retire`` audit row (intent first, once per run and step); returns
    the version it pointed to (None: absent)."""
    from fraudops.registry import retire_alias as registry_retire

    return registry_retire(
        ctx.wh(),
        model_name=model_name,
        alias=alias,
        actor=ACTOR,
        reason=reason[:500],
        tracking_uri=ctx.tracking_uri,
        idempotency_key=_key(ctx, step, alias, Action.RETIRE, None),
    )


def _retire_from_shadow(
    ctx: ReleaseContext, params: ReleaseParams, model_name: str, alias: str, reason: str, *, step: str
) -> str | None:
    """Retire ``alias`` and wait (bounded) until the scoring service has stopped its shadow worker,
    so the task ends with the pool the audit describes."""
    retired = retire_alias(ctx, model_name, alias, reason, step=step)
    crash_point(f"{step}:after_retire")
    if retired is not None:
        try:
            wait_for_service(ctx.scoring_url(params), challenger_gone(alias), f"{alias} stopped", 60.0)
        except ServiceError as err:  # the alias is gone; the service will follow on its next poll
            log.warning("%s", err)
    return retired


# -- 2/3/4. evidence, drift, decision -----------------------------------------------------------
def _evidence(
    ctx: ReleaseContext, cand: Candidate, deploy: ShadowDeployment, window: EvidenceWindow
) -> ShadowEvidence:
    from fraudops.release.evidence import collect_shadow_evidence

    return collect_shadow_evidence(
        ctx.wh(),
        model_name=cand.model_name,
        challenger_version=cand.version,
        champion_version=cand.champion,
        since=None,
        until=None,
        label_as_of=window.label_as_of,
        label_maturity_hours=cand.label_maturity_hours,
        served_since=deploy.since(),
        served_until=window.served_until,
    )


def _bundle_reference(
    ctx: ReleaseContext, cand: Candidate, version: str | None = None
) -> tuple[Any, list[str]]:
    """Training reference rows and feature names of the challenger's bundle (or ``version``'s)."""
    import pandas as pd

    from fraudops.registry import download_artifact_dir
    from fraudops.training.package import FEATURE_SPEC_FILE, REFERENCE_FILE, feature_names_from_spec

    version = str(version or cand.version)
    folder = ctx.run_dir / ("bundle" if version == cand.version else f"bundle-v{version}")
    bundle = folder / "bundle"
    if not (bundle / REFERENCE_FILE).exists():  # another worker ran deploy_shadow
        bundle = download_artifact_dir(cand.model_name, version, folder, tracking_uri=ctx.tracking_uri)
    names = feature_names_from_spec(json.loads((bundle / FEATURE_SPEC_FILE).read_text()))
    return pd.read_parquet(bundle / REFERENCE_FILE), names


def evidence_window(ctx: ReleaseContext) -> EvidenceWindow:
    """The evidence window now: served until the settle cutoff, labels as of the event clock."""
    from fraudops.release.evidence import event_clock

    return EvidenceWindow(
        served_until=_now() - dt.timedelta(seconds=SETTLE_S), label_as_of=event_clock(ctx.wh())
    )


def check_drift(
    ctx: ReleaseContext, params: ReleaseParams, cand: Candidate, deploy: ShadowDeployment, run_id: str
) -> DriftReport:
    """Evidently on the shadow window: challenger vs champion scores, live features vs the
    challenger's training reference (and production's vs the champion's, the gate's yardstick).
    Values → ``drift_metrics``, HTML → MLflow. Fixes the evidence
    window (``served_until``, ``label_as_of``) that ``decide`` then judges."""
    from fraudops.release.drift import drift_rows, record_drift, shadow_drift

    window = evidence_window(ctx)
    evidence = _evidence(ctx, cand, deploy, window)
    if evidence.n_candidate_scored == 0:
        log.warning("no shadow scores for %s v%s: nothing to compare", cand.model_name, cand.version)
        return DriftReport(window=window, drift=[], note="no shadow scores in the window")
    reference, names = _bundle_reference(ctx, cand)
    champion_reference, champion_names = _bundle_reference(ctx, cand, cand.champion)
    html = ctx.run_dir / "drift"
    results = shadow_drift(
        evidence,
        reference[names],
        names,
        cand.gate_policy(),
        html_dir=html,
        incumbent_reference=champion_reference,
        incumbent_feature_names=champion_names,
    )
    rows = [
        row
        for r in results
        for row in drift_rows(
            r,
            run_id=run_id,
            model_name=cand.model_name,
            model_version=cand.version,
            check=f"shadow_{r.check}",
            window_start=evidence.frame["event_time"].min().to_pydatetime(),
            window_end=evidence.frame["event_time"].max().to_pydatetime(),
        )
    ]
    record_drift(ctx.wh(), rows)
    mlflow_run = _log_release_run(
        ctx,
        cand,
        run_id,
        metrics={f"{r.check}_share": r.drift_share for r in results},
        docs={"drift.json": [r.to_dict() for r in results]},
        artifacts=html,
    )
    return DriftReport(window=window, drift=[r.to_dict() for r in results], mlflow_run_id=mlflow_run)


def _log_release_run(
    ctx: ReleaseContext,
    cand: Candidate,
    run_id: str,
    *,
    metrics: dict[str, float] | None = None,
    docs: dict[str, Any] | None = None,
    artifacts: Path | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """One MLflow run per release (found again by its tag), in the ``<experiment>-release`` experiment."""
    import math

    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(ctx.tracking_uri)
    experiment = mlflow.set_experiment(f"{ctx.settings.mlflow.experiment}-release")
    client = MlflowClient(tracking_uri=ctx.tracking_uri)
    found = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.release_run = '{run_id}'", max_results=1
    )
    run_kwargs: dict[str, Any] = (
        {"run_id": found[0].info.run_id}
        if found
        else {"run_name": f"release {cand.model_name} v{cand.version} vs v{cand.champion}"}
    )
    with mlflow.start_run(**run_kwargs) as run:
        mlflow.set_tags(
            {
                "release_run": run_id,
                "model_name": cand.model_name,
                "challenger_version": cand.version,
                "champion_version": cand.champion,
                "policy_fingerprint": cand.policy_fingerprint,
                **(tags or {}),
            }
        )
        clean = {k: float(v) for k, v in (metrics or {}).items() if v is not None and math.isfinite(v)}
        if clean:
            mlflow.log_metrics(clean)
        for name, doc in (docs or {}).items():
            mlflow.log_dict(doc, name)
        if artifacts is not None and artifacts.exists():
            mlflow.log_artifacts(str(artifacts), artifact_path="reports")
        return str(run.info.run_id)


def _forced_reject(reason: str, check: str, cand: Candidate, evidence: dict[str, Any]) -> GateDecision:
    from fraudops.release.checks import CheckResult
    from fraudops.release.gates import GateDecision

    policy = cand.gate_policy()
    return GateDecision(
        status=Decision.REJECT,
        stage=Stage.PROMOTION,
        checks=(CheckResult(check, None, None, False, reason),),
        reason=reason,
        policy_version=policy.version,
        policy_fingerprint=policy.fingerprint,
        evidence=evidence,
        deciding_check=check,
    )


#: The check a release fails when the champion it is compared with no longer serves.
INCUMBENT_CHANGED = "incumbent_changed"


def _incumbent_changed(ctx: ReleaseContext, cand: Candidate, evidence: dict[str, Any]) -> GateDecision | None:
    """A reject when ``champion`` no longer names the version this release is compared with.

    The evidence compares the challenger with ``cand.champion`` on the same events; once another
    actor moves the champion (a rollback of an earlier release, an operator's rollback or promotion)
    that comparison says nothing about the model the challenger would replace, so the release must
    not promote on it. None while the champion is still the one fixed by ``resolve``.
    """
    from fraudops.registry import get_alias_version

    current = get_alias_version(cand.model_name, CHAMPION, tracking_uri=ctx.tracking_uri)
    if current == cand.champion:
        return None
    now = f"v{current}" if current is not None else "no version"
    reason = (
        f"champion moved from v{cand.champion} to {now} during this release: the evidence compares "
        f"v{cand.version} with v{cand.champion}, which no longer serves; start a new release of "
        f"v{cand.version} against the current champion"
    )
    return _forced_reject(reason, INCUMBENT_CHANGED, cand, {**evidence, "current_champion": current})


def _served_point(decision: GateDecision) -> tuple[float | None, float]:
    """The threshold matched to the alert budget on the decision's traffic (None: not reported,
    then the bundle's own ``decision_threshold`` is served) and the share of events tied at it
    that it declines."""
    point = (decision.evidence or {}).get("operating_point") or {}
    value, tie = point.get("candidate_threshold"), point.get("candidate_tie_share")
    if not (isinstance(value, int | float) and not isinstance(value, bool) and value == value):
        return None, 1.0
    if isinstance(tie, int | float) and not isinstance(tie, bool) and 0.0 < tie <= 1.0:
        return float(value), float(tie)
    return float(value), 1.0


def decide(
    ctx: ReleaseContext,
    params: ReleaseParams,
    cand: Candidate,
    deploy: ShadowDeployment,
    waited: ShadowWait | None,
    drift: DriftReport | None,
    run_id: str,
) -> DecisionSummary:
    """The promotion gate on the evidence ``check_drift`` fixed; recorded in gate_decisions.

    The gate decides on confidence sequences, so looking again as evidence grows does not inflate
    its error: this step looks every ``poll_interval_s`` until the gate decides or the evidence
    deadline passes; the last look is ``final`` (the gate then turns a *wait* into an
    inconclusive reject itself).
    """
    from dataclasses import replace

    from fraudops.release.drift import DriftResult
    from fraudops.release.gates import decide_promotion
    from fraudops.release.recording import record_decision

    if not deploy.ok:
        decision = _forced_reject(deploy.reason, deploy.check or "artifact", cand, {})
    else:
        assert drift is not None
        results = [DriftResult.from_dict(d) for d in drift.drift]
        deadline = deploy.since() + dt.timedelta(minutes=params.shadow_timeout_minutes)
        timed_out = waited is not None and not waited.ready
        window = drift.window
        while True:
            final = timed_out or _now() >= deadline
            moved = _incumbent_changed(ctx, cand, {})
            if moved is not None:
                decision = moved
                break
            evidence = _evidence(ctx, cand, deploy, window)
            decision = decide_promotion(
                evidence,
                cand.gate_policy(),
                results or None,
                expected_fraud_rate=params.expected_fraud_rate,
                final=final,
            )
            if decision.status == Decision.PROMOTE:
                # The champion may have moved while the evidence was read.
                decision = _incumbent_changed(ctx, cand, decision.evidence or {}) or decision
            if decision.status != Decision.WAIT or final:
                break
            log.info("gate for %s v%s: wait (%s)", cand.model_name, cand.version, decision.reason)
            time.sleep(params.poll_interval_s)
            window = evidence_window(ctx)
        if decision.status == Decision.REJECT and decision.deciding_check not in (
            OPERATIONAL_CHECKS | {INCUMBENT_CHANGED}
        ):
            # Inconclusive at the deadline: an operational failure already visible in the partial
            # sample (e.g. a slow challenger, throttled by the shadow pool, that could not score
            # enough events) is the root cause to report; the gate reports the missing volume.
            failed = next(
                (c for c in decision.checks if c.ran and not c.passed and c.name in OPERATIONAL_CHECKS), None
            )
            if failed is not None and "inconclusive" in decision.reason:
                decision = replace(decision, reason=failed.reason, deciding_check=failed.name)
    row = record_decision(
        ctx.wh(),
        decision,
        model_name=cand.model_name,
        challenger_version=cand.version,
        champion_version=cand.champion,
        dag_run_id=run_id,
    )
    quality = (decision.evidence or {}).get("quality") or {}
    metrics = {
        f"gate_{k}": quality[k]
        for k in (
            "ap_candidate",
            "ap_incumbent",
            "ap_delta",
            "capture_candidate",
            "capture_incumbent",
            "fpr_candidate",
            "fpr_incumbent",
            "money_caught_candidate",
            "money_caught_incumbent",
        )
        if isinstance(quality.get(k), int | float)
    }
    served, tie_share = _served_point(decision)
    _log_release_run(
        ctx,
        cand,
        run_id,
        metrics={**metrics, **({"gate_served_threshold": served} if served is not None else {})},
        docs={"promotion_decision.json": decision.to_dict()},
        tags={"gate_status": decision.status, "gate_reason": decision.reason[:250]},
    )
    _tag_version(ctx, cand, {"gate_status": decision.status, "gate_reason": decision.reason[:250]})
    log.info("gate for %s v%s: %s (%s)", cand.model_name, cand.version, decision.status, decision.reason)
    evidence_doc = decision.evidence or {}
    return DecisionSummary(
        status=decision.status,
        reason=decision.reason,
        deciding_check=decision.deciding_check,
        decision_id=str(row["decision_id"]),
        n_events=evidence_doc.get("n_events"),
        n_evaluable_frauds=evidence_doc.get("n_evaluable_frauds"),
        quality=quality or None,
        served_threshold=served,
        served_tie_share=tie_share,
    )


def _tag_version(
    ctx: ReleaseContext, cand: Candidate, tags: dict[str, str], version: str | None = None
) -> None:
    from fraudops.registry import set_version_tag

    for key, value in tags.items():
        set_version_tag(cand.model_name, version or cand.version, key, value, tracking_uri=ctx.tracking_uri)


# -- 5. promote / reject ------------------------------------------------------------------------
def promote(
    ctx: ReleaseContext, params: ReleaseParams, cand: Candidate, decision: DecisionSummary
) -> Promotion:
    """``champion`` → challenger, served at the threshold matched to the budget; the old champion
    keeps scoring in shadow for the probation.

    Retry-safe: every alias change is recorded (intent first) under this run's keys, so a re-run
    after any partial progress finishes the same changes once. The old champion is the one this
    run's champion move replaced (its audit row), else the champion now: after the move, the
    alias names the new version, which must not be taken for the old one.
    """
    from fraudops.registry import deployment_id_for, find_deployment

    name, version = cand.model_name, cand.version
    done = find_deployment(
        ctx.wh(), deployment_id_for(_key(ctx, "promote", CHAMPION, Action.PROMOTE, version))
    )
    if done is not None and done.get("previous_version"):
        old = str(done["previous_version"])
    else:
        # Not moved by this run yet: the gate compared the challenger with ``cand.champion``, which
        # must still be the champion it replaces (another release's rollback or an operator may
        # have moved it since the gate decided).
        stale = _incumbent_changed(
            ctx, cand, {"overruled": {"status": decision.status, "reason": decision.reason}}
        )
        if stale is not None:
            _withdraw(ctx, params, cand, decision, stale)
        old = cand.champion
    url = ctx.scoring_url(params)
    old_alias = challenger_alias(old)
    if find_deployment(ctx.wh(), deployment_id_for(_key(ctx, REFUSED_STEP, CHAMPION, Action.ROLLBACK, old))):
        # An earlier attempt of this step found the service refusing the bundle: finish putting
        # the registry back (idempotent) and fail the same way, without promoting again.
        refusals = _service_doc(url).get("rejected") or {}
        why = refusals.get(f"{CHAMPION}@{version}") or "see the first attempt"
        err = PermanentError(f"the scoring service refused {name} v{version} as champion: {why}")
        _restore_refused(ctx, cand, old, old_alias, str(err))
        raise err
    # Old champion into shadow first, so probation has its scores from the first promoted request.
    _move(
        ctx,
        name,
        old_alias,
        old,
        Action.SHADOW,
        f"probation of v{version}: previous champion keeps scoring in shadow",
        step="promote",
    )
    crash_point("promote:after_old_champion_shadow")
    # The threshold travels with the version (a tag the scoring service reads with the bundle), set
    # before the champion moves so the first promoted request is served at it.
    from fraudops.registry import SERVED_THRESHOLD_TAG, SERVED_TIE_SHARE_TAG

    if decision.served_threshold is not None:
        _tag_version(
            ctx,
            cand,
            {
                SERVED_THRESHOLD_TAG: repr(float(decision.served_threshold)),
                SERVED_TIE_SHARE_TAG: repr(float(decision.served_tie_share)),
            },
        )
    _move(ctx, name, CHAMPION, version, Action.PROMOTE, f"gate passed: {decision.reason}", step="promote")
    crash_point("promote:after_champion_move")
    retire_alias(ctx, name, cand.alias, f"promoted to {CHAMPION}", step="promote")
    crash_point("promote:after_challenger_retire")
    promoted = find_deployment(
        ctx.wh(), deployment_id_for(_key(ctx, "promote", CHAMPION, Action.PROMOTE, version))
    )
    promoted_at = _as_utc(promoted["deployed_at"]) if promoted and promoted.get("deployed_at") else _now()
    try:
        _, waited = wait_for_service(
            url, champion_is(version, name), f"champion v{version}", params.deploy_timeout_s
        )
    except PermanentError as err:
        _restore_refused(ctx, cand, old, old_alias, str(err))
        raise
    wait_for_service(
        url, challenger_running(old_alias, old, name), f"{old_alias} running", params.deploy_timeout_s
    )
    _tag_version(ctx, cand, {"release_status": Stage.PROBATION})
    log.info(
        "%s v%s is champion (serving after %.1fs at threshold %s); v%s in shadow for probation",
        name,
        version,
        waited,
        decision.served_threshold if decision.served_threshold is not None else "of the bundle",
        old,
    )
    return Promotion(
        promoted_at=promoted_at,
        old_champion=old,
        old_alias=old_alias,
        seconds_to_serving=round(waited, 3),
        served_threshold=decision.served_threshold,
        served_tie_share=decision.served_tie_share,
    )


def _overrule(
    ctx: ReleaseContext, cand: Candidate, decision: DecisionSummary, by: GateDecision
) -> DecisionSummary:
    """Record ``by`` (a reject) next to the gate's recorded decision: the same DAG run, a newer
    row, so the gate's evidence stays visible; tag the version. Idempotent (a retry records once)."""
    from fraudops.release.recording import record_decision, withdrawal_id

    wh = ctx.wh()
    gate_row = wh.query(
        f"SELECT dag_run_id FROM `{wh.table_id('gate_decisions')}` WHERE decision_id = @id",
        {"id": decision.decision_id},
    )
    overruled = withdrawal_id(decision.decision_id)
    record_decision(
        wh,
        by,
        model_name=cand.model_name,
        challenger_version=cand.version,
        champion_version=cand.champion,
        dag_run_id=gate_row[0]["dag_run_id"] if gate_row else None,
        decision_id=overruled,
    )
    _tag_version(ctx, cand, {"gate_status": by.status, "gate_reason": by.reason[:250]})
    return DecisionSummary(
        status=Decision.REJECT,
        reason=by.reason,
        deciding_check=by.deciding_check,
        decision_id=overruled,
        n_events=decision.n_events,
        n_evaluable_frauds=decision.n_evaluable_frauds,
        quality=decision.quality,
    )


def _withdraw(
    ctx: ReleaseContext,
    params: ReleaseParams,
    cand: Candidate,
    decision: DecisionSummary,
    stale: GateDecision,
) -> NoReturn:
    """The gate passed but its champion no longer serves: record the reject next to the gate's
    promotion, retire the challenger like ``reject`` does, and fail the step with the reason.
    Idempotent: a retry records and retires the same way, once."""
    summary = _overrule(ctx, cand, decision, stale)
    crash_point("promote:after_withdrawn_decision")
    reject(ctx, params, cand, summary)
    log.error("%s v%s not promoted: %s", cand.model_name, cand.version, stale.reason)
    raise PermanentError(f"not promoted: {stale.reason}")


#: The check an approval request answered with *Abort* (or not answered in time) is recorded under.
ABORTED = "release_manager"


def abort(
    ctx: ReleaseContext,
    params: ReleaseParams,
    cand: Candidate,
    decision: DecisionSummary,
    approval: dict[str, Any],
) -> ReleaseOutcome:
    """The gate passed, the release asked for approval and got *Abort* (or no answer in time):
    record the reject with who decided next to the gate's promotion, then ``reject``."""
    who = approval.get("by")
    reason = (
        f"aborted by release manager {who}" + (f" at {approval['at']}" if approval.get("at") else "")
        if who
        else str(approval.get("why") or "not approved")
    )
    reason += f" (the gate had passed: {decision.reason})"
    summary = _overrule(ctx, cand, decision, _forced_reject(reason, ABORTED, cand, {"approval": approval}))
    crash_point("abort:after_recorded")
    return reject(ctx, params, cand, summary)


#: The step key of the moves that undo a promotion the scoring service refused.
REFUSED_STEP = "promote_refused"


def _restore_refused(ctx: ReleaseContext, cand: Candidate, old: str, old_alias: str, why: str) -> None:
    """The service refused the new champion's bundle and still serves ``old``: put the registry
    back where production is (champion → ``old``, its shadow alias retired), so both say the same
    thing. Audited and idempotent under this run's keys."""
    name = cand.model_name
    _move(ctx, name, CHAMPION, old, Action.ROLLBACK, why, step=REFUSED_STEP)
    retire_alias(ctx, name, old_alias, "restored as champion", step=REFUSED_STEP)
    _tag_version(ctx, cand, {"release_status": "refused_by_service"})
    log.error("%s; champion alias restored to v%s", why, old)


def _service_doc(url: str) -> dict[str, Any]:
    """``/version`` of the service, or {} when it cannot be reached (for messages only)."""
    try:
        return service_state(url)
    except ServiceError:
        return {}


def _as_utc(value: Any) -> dt.datetime:
    from fraudops.release.progress import as_utc

    return as_utc(value)


def reject(
    ctx: ReleaseContext, params: ReleaseParams, cand: Candidate, decision: DecisionSummary | None
) -> ReleaseOutcome:
    """Retire the challenger alias (audited); the evidence stays in gate_decisions and MLflow."""
    reason = (decision.reason if decision is not None else "") or "rejected"
    retired = _retire_from_shadow(
        ctx, params, cand.model_name, cand.alias, f"rejected: {reason}"[:500], step="reject"
    )
    _tag_version(ctx, cand, {"release_status": "rejected"})
    return ReleaseOutcome(status="rejected", reason=reason, alias_retired=retired is not None)


# -- 6. probation -------------------------------------------------------------------------------
def probation_check(
    ctx: ReleaseContext, params: ReleaseParams, cand: Candidate, promo: Promotion
) -> ProbationOutcome:
    """One look at the new champion in production vs the old one in shadow since the promotion.

    Done once the gate decides (``confirm`` or ``rollback``). Probation lasts until the gate can
    judge the new champion on matured labels; the look at or after ``promoted_at +
    probation_minutes`` is ``final`` and the gate decides what that means.
    """
    from fraudops.release.evidence import collect_production_window, event_clock

    evidence = collect_production_window(
        ctx.wh(),
        model_name=cand.model_name,
        new_champion_version=cand.version,
        old_champion_version=promo.old_champion,
        since=None,
        until=None,
        label_as_of=event_clock(ctx.wh()),
        label_maturity_hours=cand.label_maturity_hours,
        served_since=promo.promoted_at,
        served_until=_now() - dt.timedelta(seconds=SETTLE_S),
    )
    decision = probation_look(
        evidence,
        cand.gate_policy(),
        elapsed=_now() - promo.promoted_at,
        length=dt.timedelta(minutes=params.probation_minutes),
        expected_fraud_rate=params.expected_fraud_rate,
    )
    return ProbationOutcome(
        done=decision.status != Decision.WAIT,
        status=decision.status,
        reason=decision.reason,
        n_events=int(evidence.n_events),
        decision=decision.to_dict(),
    )


def probation_look(
    evidence: ShadowEvidence,
    policy: GatePolicy,
    *,
    elapsed: dt.timedelta,
    length: dt.timedelta,
    expected_fraud_rate: float | None = None,
) -> GateDecision:
    """``decide_probation`` at ``elapsed`` into a probation of ``length``.

    The look at or after ``length`` is final, unless no quality check could run yet or the new
    champion has not served ``probation_min_exposure_hours`` of event time: the length is wall-clock
    time, labels and exposure grow on the event clock, which may run behind (a lagging stream, a
    slow label feed), so such a champion gets up to ``PROBATION_GRACE`` × ``length`` more before the
    final look rolls it back.
    """
    from fraudops.release.gates import decide_probation

    decision = decide_probation(evidence, policy, final=False, expected_fraud_rate=expected_fraud_rate)
    if decision.status != Decision.WAIT or elapsed < length:
        return decision
    judged = any(c.ran for c in decision.checks if c.name in ("ap_shown_worse", "ap_non_inferiority"))
    exposed = all(c.passed for c in decision.checks if c.name == "exposure_hours")
    if not (judged and exposed) and elapsed < length * (1.0 + PROBATION_GRACE):
        log.info(
            "probation past its length (%s) but %s: extending",
            length,
            "quality not yet judgeable" if not judged else "too little traffic served yet",
        )
        return decision
    return decide_probation(evidence, policy, final=True, expected_fraud_rate=expected_fraud_rate)


def finish_probation(
    ctx: ReleaseContext,
    params: ReleaseParams,
    cand: Candidate,
    promo: Promotion,
    outcome: ProbationOutcome,
    run_id: str,
) -> ReleaseOutcome:
    """Record the probation decision; roll back (and wait until production serves the old champion)
    or confirm (retire the old champion from shadow). Retry-safe like ``promote``."""
    from dataclasses import replace

    from fraudops.release.gates import GateDecision
    from fraudops.release.recording import record_decision

    decision = GateDecision.from_dict(outcome.decision)
    if decision.status != outcome.status:
        decision = replace(decision, status=outcome.status, reason=outcome.reason)
    record_decision(
        ctx.wh(),
        decision,
        model_name=cand.model_name,
        challenger_version=cand.version,
        champion_version=promo.old_champion,
        dag_run_id=run_id,
    )
    _log_release_run(
        ctx,
        cand,
        run_id,
        docs={"probation_decision.json": decision.to_dict()},
        tags={"probation_status": decision.status, "probation_reason": decision.reason[:250]},
    )
    name, old = cand.model_name, promo.old_champion
    url = ctx.scoring_url(params)
    if decision.status == Decision.ROLLBACK:
        t0 = time.monotonic()
        _move(
            ctx, name, CHAMPION, old, Action.ROLLBACK, f"probation failed: {decision.reason}", step="rollback"
        )
        crash_point("rollback:after_champion_move")
        retire_alias(ctx, name, promo.old_alias, "restored as champion", step="rollback")
        crash_point("rollback:after_retire")
        wait_for_service(url, champion_is(old), f"champion v{old}", params.deploy_timeout_s)
        seconds = time.monotonic() - t0
        _tag_version(ctx, cand, {"release_status": "rolled_back"})
        log.error(
            "rolled back %s v%s → v%s (%s); serving after %.1fs",
            name,
            cand.version,
            old,
            decision.reason,
            seconds,
        )
        return ReleaseOutcome(
            status="rolled_back", reason=decision.reason, serving=old, seconds_to_serving=round(seconds, 3)
        )
    _retire_from_shadow(
        ctx, params, name, promo.old_alias, f"probation of v{cand.version} passed", step="confirm"
    )
    _tag_version(ctx, cand, {"release_status": "confirmed"})
    return ReleaseOutcome(status="confirmed", reason=decision.reason, serving=cand.version)


# -- the shadow wait, without Airflow (the CLI; the DAG defers the same counts to its trigger) -----
def shadow_target(cand: Candidate) -> Any:
    """What the challenger must have before the gate looks: the candidate's floors of scored
    events and matured labeled frauds (``ProgressTarget``)."""
    from fraudops.release.progress import ProgressTarget

    return ProgressTarget(min_scored=cand.min_scored_events, min_matured_frauds=cand.min_labeled_frauds)


def early_floor(cand: Candidate) -> int:
    """Scored events at which the shadow wait takes its one early look (:func:`early_look`): the
    gate's own volume floor (never beyond the candidate's planned sample)."""
    return min(cand.gate_policy().min_scored_events_floor, cand.min_scored_events)


def early_look(ctx: ReleaseContext, cand: Candidate, deploy: ShadowDeployment) -> tuple[str, str] | None:
    """The gate on the shadow evidence so far, before any label has matured: ``(check, reason)`` of
    the label-free check that already rejects the challenger (slow, erroring, constant scores,
    feature parity, an unattainable operating point, a copy of the champion), or None.

    The shadow wait takes this look once, at :func:`early_floor` scored events: a broken challenger
    is then rejected in minutes instead of holding its shadow slot until labels mature (days in
    production). It is the promotion gate itself (``decide_promotion``, without drift, which
    ``check_drift`` measures after the wait), so nothing is judged here that the gate would not
    judge at its first look; quality is never judged early (no matured labels).
    """
    from fraudops.release.gates import decide_promotion

    evidence = _evidence(ctx, cand, deploy, evidence_window(ctx))
    decision = decide_promotion(evidence, cand.gate_policy())
    if decision.status == Decision.REJECT and decision.deciding_check in OPERATIONAL_CHECKS:
        log.info("early look at %s v%s: %s", cand.model_name, cand.version, decision.reason)
        return str(decision.deciding_check), decision.reason
    return None


def shadow_look(
    ctx: ReleaseContext, cand: Candidate, deploy: ShadowDeployment, *, early: bool = False
) -> ShadowWait:
    """One look at the challenger's shadow progress (``ready`` once :func:`shadow_target` is met),
    with the shortfall and the ETA as the reason, like the DAG's sensor; ``incumbent_changed`` once
    the champion the release compares with no longer serves. With ``early``, a look that finds the
    :func:`early_floor` reached also takes the :func:`early_look` (``early_reject`` when it fails).
    """
    from fraudops.registry import champion_moved
    from fraudops.release.progress import eta_of, is_satisfied, shadow_progress, status_line

    target = shadow_target(cand)
    progress = shadow_progress(
        ctx.wh(),
        model_name=cand.model_name,
        version=cand.version,
        since=deploy.since(),
        maturity_hours=cand.label_maturity_hours,
        settle_s=SETTLE_S,
    )
    moved = champion_moved(ctx.wh(), cand.model_name, cand.champion)
    if moved is not None:
        return ShadowWait(ready=False, reason=moved[1], progress=progress.to_dict(), incumbent_changed=True)
    ready, _ = is_satisfied(progress, target)
    if early and not ready and progress.scored + progress.errors >= early_floor(cand):
        failed = early_look(ctx, cand, deploy)
        if failed is not None:
            return ShadowWait(
                ready=False, reason=failed[1], progress=progress.to_dict(), early_reject=failed[0]
            )
    hours = eta_of(progress, target, cand.label_maturity_hours)
    return ShadowWait(
        ready=ready, reason=status_line(progress, target, hours), progress=progress.to_dict(), eta_hours=hours
    )


# -- following a release (the console) -------------------------------------------------------------
def follow(warehouse: Warehouse, cand: Candidate, deploy: ShadowDeployment | None) -> dict[str, Any]:
    """What a user following the release sees: the challenger's progress against what the gate
    needs (the same counts, target and ETA as the shadow wait's look), an hourly series for the
    plot, and the latest gate decisions on this version. Read-only."""
    from fraudops.release.progress import eta_of, is_satisfied, progress_series, shadow_progress, status_line

    target = shadow_target(cand)
    out: dict[str, Any] = {
        "model_name": cand.model_name,
        "version": cand.version,
        "champion": cand.champion,
        "needs": {
            "scored": cand.min_scored_events,
            "matured_frauds": cand.min_labeled_frauds,
            "planned_scored": cand.planned_scored_events,
            "planned_matured_frauds": cand.planned_labeled_frauds,
            "label_maturity_hours": cand.label_maturity_hours,
        },
        "shadow": None if deploy is None else deploy.to_xcom(),
        "progress": None,
        "eta_hours": None,
        "status": "waiting for its shadow deployment" if deploy is None else deploy.reason or "",
        "series": [],
    }
    if deploy is not None and deploy.ok and deploy.deployed_at is not None:
        progress = shadow_progress(
            warehouse,
            model_name=cand.model_name,
            version=cand.version,
            since=deploy.since(),
            maturity_hours=cand.label_maturity_hours,
            settle_s=SETTLE_S,
        )
        hours = eta_of(progress, target, cand.label_maturity_hours)
        out.update(
            progress=progress.to_dict(),
            eta_hours=hours,
            ready=is_satisfied(progress, target)[0],
            status=status_line(progress, target, hours),
            series=progress_series(
                warehouse,
                model_name=cand.model_name,
                version=cand.version,
                since=deploy.since(),
                settle_s=SETTLE_S,
            ),
        )
    rows = warehouse.query(
        f"SELECT stage, status, reason, decided_at FROM `{warehouse.table_id('gate_decisions')}` "
        "WHERE model_name = @m AND challenger_version = @v ORDER BY decided_at DESC LIMIT 5",
        {"m": cand.model_name, "v": cand.version},
    )
    out["decisions"] = [{**r, "decided_at": _as_utc(r["decided_at"]).isoformat()} for r in rows]
    return out
