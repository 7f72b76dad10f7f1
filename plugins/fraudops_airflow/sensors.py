"""Sensors: wait for the warehouse to hold enough evidence before a release decision.

``ShadowMetricsSensor`` waits until a challenger scoring in shadow has scored enough events and
enough *matured labeled frauds* (scored events labelled fraud and older than the label maturity).
In the release DAG it gets the run's typed candidate and shadow deployment (XComs of ``resolve``
and ``deploy_shadow``) and derives everything from them when it runs: model, version, since,
``min_scored`` (= ``candidate.min_scored_events``), ``min_matured_frauds`` (=
``candidate.min_labeled_frauds``), the effective label maturity, timeout and poll interval. No
rules live in Jinja. Labels take days, so by default it defers to ``ShadowMetricsTrigger`` and
holds no worker slot while waiting.

Its XCom is a ``ShadowWait`` (``fraudops.pipeline.release_types``) the release DAG branches on:

* ``{"ready": True, "progress": {...}, "reason": "...", "eta_hours": 0.0}`` when the target is met;
* ``{"ready": False, "progress": {...}, "reason": "champion moved from v1 to v0 during the shadow
  test"}`` as soon as ``champion`` (the candidate's) no longer serves: the release's evidence can no
  longer lead to a promotion, so the run goes on to the gate, which rejects it at once;
* ``{"ready": False, "progress": {...}, "reason": "challenger p99 latency 212 ms > 50 ms",
  "early_reject": "p99_latency_ms"}`` when the early look (release mode: one look at the gate's floor
  of events sent, before labels mature, ``fraudops.pipeline.release.early_look``) finds a label-free
  check failing: the gate rejects on it without holding the shadow slot for days;
* ``{"ready": False, "progress": {...}, "reason": "timeout: matured labeled frauds 41 of 120
  needed; scored 3,100 of 5,000; ETA ~2.3 h event time", "eta_hours": 2.3}`` when
  ``timeout`` passes and ``soft_timeout=True`` (the default): the run goes on to *reject* with the
  reason recorded, instead of failing — running out of evidence is a release outcome, not an
  infrastructure failure. With ``soft_timeout=False`` a timeout raises ``AirflowSensorTimeout``
  (and the usual ``soft_fail`` / ``never_fail`` semantics apply).

A warehouse error that outlives the trigger's retries raises ``AirflowException`` (task retries apply).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from fraudops_airflow.triggers import ShadowMetricsTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

    from fraudops.pipeline.release_types import Candidate, ShadowDeployment
    from fraudops.release.progress import ProgressTarget, ShadowProgress, ShadowQuery

#: Extra time the triggerer allows beyond ``timeout`` so the trigger's own (soft) timeout event
#: arrives before Airflow's hard deferral timeout; the hard one only catches a stuck trigger.
_DEFER_GRACE_S = 600.0


class ShadowMetricsSensor(BaseSensorOperator):
    """Wait until a challenger has scored enough events with matured labels.

    Either ``candidate`` + ``deployment`` (the release DAG: everything else is derived from them),
    or the explicit values below (other callers and tests).

    :param candidate: the release's ``Candidate`` (XCom of ``resolve``). (templated)
    :param deployment: the ``ShadowDeployment`` (XCom of ``deploy_shadow``). (templated)
    :param model_name: registered model name. (templated)
    :param version: challenger model version. (templated)
    :param since: count predictions served from this instant, e.g. when it was deployed to shadow
        (ISO 8601 or datetime; naive means UTC). (templated)
    :param min_scored: minimum distinct events scored. (templated)
    :param min_labeled: minimum scored events with a known label. (templated)
    :param min_labeled_frauds: minimum labelled frauds among those. (templated)
    :param warehouse_conn_id: connection for ``WarehouseHook`` (missing → environment settings).
    :param poll_interval: seconds between warehouse polls (also the poke interval).
    :param deferrable: wait in the triggerer (default) instead of a worker.
    :param timeout: seconds (or timedelta) to wait before giving up.
    :param soft_timeout: on timeout return ``{"ready": False, "reason": "timeout: ..."}`` instead of
        failing.
    :param prediction_mode: ``shadow`` (default) or ``production`` rows of the predictions table.
    :param max_failed_polls: consecutive warehouse outages the trigger tolerates before failing.
    :param min_matured: minimum scored events past ``maturity_hours`` (event time). (templated)
    :param maturity_hours: label maturity in hours; needed for ``min_matured``. (templated)
    :param settle_s: leave out predictions served in the last seconds (still being written).
    :param timeout_minutes: templated override of ``timeout``, in minutes.
    :param poll_seconds: templated override of ``poll_interval``.
    :param min_matured_frauds: minimum matured labeled frauds (needs ``maturity_hours``). (templated)
    :param champion: end the wait early once the audited champion is no longer this version
        (the candidate's champion in the release DAG). (templated)
    :param early_look: with a candidate, take the gate's one label-free look when the gate's floor
        of events has been sent to the challenger (``fraudops.pipeline.release.early_look``), and end
        the wait at once if the challenger is already broken (``early_reject``).
    """

    template_fields: Sequence[str] = (
        "candidate",
        "deployment",
        "min_matured_frauds",
        "model_name",
        "version",
        "since",
        "min_scored",
        "min_labeled",
        "min_labeled_frauds",
        "min_matured",
        "maturity_hours",
        "timeout_minutes",
        "poll_seconds",
        "champion",
    )
    ui_color = "#f0e4ec"

    def __init__(
        self,
        *,
        candidate: Any = None,
        deployment: Any = None,
        model_name: str = "",
        version: str = "",
        since: str | dt.datetime | None = None,
        min_scored: int | str = 0,
        min_matured_frauds: int | str = 0,
        min_labeled: int | str = 0,
        min_labeled_frauds: int | str = 0,
        warehouse_conn_id: str = "fraudops_warehouse",
        poll_interval: float = 300.0,
        deferrable: bool = True,
        timeout: float | dt.timedelta = 7 * 24 * 3600.0,
        soft_timeout: bool = True,
        prediction_mode: str = "shadow",
        max_failed_polls: int = 3,
        timeout_minutes: float | str | None = None,
        poll_seconds: float | str | None = None,
        min_matured: int | str = 0,
        maturity_hours: float | str | None = None,
        settle_s: float = 0.0,
        champion: str | None = None,
        early_look: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poll_interval, timeout=timeout, **kwargs)
        self.candidate = candidate
        self.deployment = deployment
        self.min_matured_frauds = min_matured_frauds
        self.settle_s = settle_s
        self.champion = champion
        self.min_matured = min_matured
        self.maturity_hours = maturity_hours
        #: Templated overrides of ``timeout`` (minutes) and ``poll_interval`` (seconds), e.g. from
        #: a DAG's trigger-form params; applied when the task runs.
        self.timeout_minutes = timeout_minutes
        self.poll_seconds = poll_seconds
        self.model_name = model_name
        self.version = version
        self.since = since
        self.min_scored = min_scored
        self.min_labeled = min_labeled
        self.min_labeled_frauds = min_labeled_frauds
        self.warehouse_conn_id = warehouse_conn_id
        self.poll_interval = float(poll_interval)
        self.deferrable = deferrable
        self.soft_timeout = soft_timeout
        self.prediction_mode = prediction_mode
        self.max_failed_polls = max_failed_polls
        self.early_look = early_look
        self._last_progress: ShadowProgress | None = None
        self._last_reason = "no successful poll yet"
        self._last_eta: float | None = None
        self._cand: Candidate | None = None
        self._deploy: ShadowDeployment | None = None
        self._early_done = False

    # -- helpers ----------------------------------------------------------------------------------
    def _from_release(self) -> None:
        """Derive the wait from the typed candidate and deployment (the release DAG's way)."""
        if self.candidate is None:
            return
        from pydantic import ValidationError

        from fraudops.pipeline.release import params_of
        from fraudops.pipeline.release_types import Candidate, ShadowDeployment

        try:
            cand = Candidate.from_xcom(self.candidate)
            deploy = ShadowDeployment.from_xcom(self.deployment)
            since = deploy.since()
        except (ValidationError, TypeError, ValueError) as err:
            raise AirflowFailException(f"invalid release candidate/deployment: {err}") from err
        params = params_of(cand)
        self._cand, self._deploy = cand, deploy
        self.model_name, self.version, self.since = cand.model_name, cand.version, since
        self.min_scored = cand.min_scored_events
        self.min_matured_frauds = cand.min_labeled_frauds
        self.maturity_hours = cand.label_maturity_hours
        self.champion = cand.champion
        self.timeout_minutes = params.shadow_timeout_minutes
        self.poll_seconds = params.poll_interval_s

    def _target(self) -> ProgressTarget:
        """The rendered minimums as a validated target; bad values fail without retry."""
        from fraudops.release.progress import ProgressTarget

        try:
            return ProgressTarget(
                min_scored=int(self.min_scored),
                min_labeled=int(self.min_labeled),
                min_labeled_frauds=int(self.min_labeled_frauds),
                min_matured=int(self.min_matured),
                min_matured_frauds=int(self.min_matured_frauds),
            )
        except (TypeError, ValueError) as err:
            raise AirflowFailException(f"invalid shadow progress target: {err}") from err

    def _query(self, target: ProgressTarget) -> ShadowQuery:
        """Which rows count, validated against ``target``; bad values fail without retry."""
        from fraudops.release.progress import ShadowQuery

        if self.since in (None, ""):
            raise AirflowFailException("`since` is required (or a candidate and deployment)")
        since = self.since if isinstance(self.since, str) else self.since.isoformat()
        try:
            query = ShadowQuery(
                model_name=str(self.model_name),
                version=str(self.version),
                since=since,
                mode=self.prediction_mode,
                maturity_hours=None if self.maturity_hours in (None, "") else float(self.maturity_hours),
                settle_s=float(self.settle_s),
            )
            query.check(target)
        except (TypeError, ValueError) as err:
            raise AirflowFailException(f"invalid shadow wait: {err}") from err
        return query

    def _timeout_result(
        self, progress: dict[str, Any] | None, reason: str, eta_hours: float | None = None
    ) -> dict[str, Any]:
        from fraudops.pipeline.release_types import ShadowWait

        self.log.warning("%s v%s not ready before timeout: %s", self.model_name, self.version, reason)
        return ShadowWait(
            ready=False, progress=progress, reason=f"timeout: {reason}", eta_hours=eta_hours
        ).to_xcom()

    # -- non-deferrable mode ----------------------------------------------------------------------
    def poke(self, context: Context) -> PokeReturnValue:
        from fraudops.exceptions import WarehouseUnavailable
        from fraudops.pipeline.release_types import ShadowWait
        from fraudops.registry import champion_moved
        from fraudops.release.progress import eta_of, is_satisfied, status_line
        from fraudops_airflow.hooks import WarehouseHook

        target = self._target()
        query = self._query(target)
        hook = WarehouseHook(warehouse_conn_id=self.warehouse_conn_id)
        try:
            progress = query.progress(hook.get_warehouse())
        except WarehouseUnavailable as err:
            # An outage is "not known yet", not a verdict: keep poking until the timeout.
            self.log.warning("warehouse unavailable, will poke again: %s", err)
            return PokeReturnValue(is_done=False)
        ready, _ = is_satisfied(progress, target)
        eta_hours = eta_of(progress, target, query.maturity_hours)
        reason = status_line(progress, target, eta_hours)
        self._last_progress, self._last_reason, self._last_eta = progress, reason, eta_hours
        moved = None
        if self.champion not in (None, ""):
            moved = champion_moved(hook.get_warehouse(), query.model_name, str(self.champion))
        if moved is not None:
            self.log.warning("%s v%s: %s", self.model_name, self.version, moved[1])
            stop = ShadowWait(
                ready=False, progress=progress.to_dict(), reason=moved[1], incumbent_changed=True
            )
            return PokeReturnValue(is_done=True, xcom_value=stop.to_xcom())
        self.log.info("%s v%s %s: %s", self.model_name, self.version, "ready" if ready else "waiting", reason)
        if not ready and self._early_due(progress.scored + progress.errors):
            self._early_done = True
            early = self._early_result(context, progress.to_dict())
            if early is not None:
                return PokeReturnValue(is_done=True, xcom_value=early)
        if not ready:
            return PokeReturnValue(is_done=False)
        result = ShadowWait(ready=True, progress=progress.to_dict(), reason=reason, eta_hours=0.0)
        return PokeReturnValue(is_done=True, xcom_value=result.to_xcom())

    # -- the early look (release mode) -------------------------------------------------------------
    def _early_floor(self) -> int:
        from fraudops.pipeline.release import early_floor

        return early_floor(self._cand) if self._cand is not None and self.early_look else 0

    def _early_due(self, sent: int) -> bool:
        floor = self._early_floor()
        return floor > 0 and not self._early_done and sent >= floor

    def _early_result(self, context: Context, progress: dict[str, Any] | None) -> dict[str, Any] | None:
        """The early look (``fraudops.pipeline.release.early_look``): the ``ShadowWait`` that ends the
        wait when a label-free check already rejects the challenger, else None. A warehouse outage
        skips the look (the wait goes on; the gate still judges everything at its first look)."""
        from fraudops.exceptions import WarehouseUnavailable
        from fraudops.pipeline.release import ReleaseContext, early_look
        from fraudops.pipeline.release_types import ShadowWait
        from fraudops_airflow.tasks import run_key

        assert self._cand is not None and self._deploy is not None
        ctx = ReleaseContext(run_key(context["run_id"], self.dag_id))
        try:
            failed = early_look(ctx, self._cand, self._deploy)
        except WarehouseUnavailable as err:
            self.log.warning("early look skipped, warehouse unavailable: %s", err)
            return None
        if failed is None:
            self.log.info(
                "%s v%s: early look passed; waiting for matured labels", self.model_name, self.version
            )
            return None
        self.log.warning("%s v%s rejected early on %s: %s", self.model_name, self.version, *failed)
        return ShadowWait(ready=False, progress=progress, reason=failed[1], early_reject=failed[0]).to_xcom()

    # -- both modes -------------------------------------------------------------------------------
    def _apply_overrides(self) -> None:
        try:
            if self.timeout_minutes not in (None, ""):
                self.timeout = float(self.timeout_minutes) * 60.0
            if self.poll_seconds not in (None, ""):
                self.poll_interval = self.poke_interval = float(self.poll_seconds)
        except (TypeError, ValueError) as err:
            raise AirflowFailException(f"invalid sensor timing: {err}") from err

    def execute(self, context: Context) -> Any:
        self._from_release()
        self._apply_overrides()
        target = self._target()
        query = self._query(target)
        if not self.deferrable:
            try:
                return super().execute(context)
            except AirflowSensorTimeout:
                if not self.soft_timeout:
                    raise
                last = self._last_progress.to_dict() if self._last_progress else None
                return self._timeout_result(last, self._last_reason, self._last_eta)

        from fraudops.release.progress import ProgressTarget

        timeout_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.timeout)
        floor = self._early_floor()
        if floor > 0:
            # Two deferrals: to the early look's floor of sent events, then to the full target.
            self._defer(query, ProgressTarget(min_seen=floor), timeout_at, "early_look_complete")
        self._defer(query, target, timeout_at, "execute_complete")

    def _defer(
        self, query: ShadowQuery, target: ProgressTarget, timeout_at: dt.datetime, method: str
    ) -> NoReturn:
        left = max(0.0, (timeout_at - dt.datetime.now(dt.UTC)).total_seconds())
        self.defer(
            trigger=ShadowMetricsTrigger(
                query=query.to_dict(),
                target=target.to_dict(),
                timeout_at=timeout_at.isoformat(),
                warehouse_conn_id=self.warehouse_conn_id,
                poll_interval=self.poll_interval,
                max_failed_polls=self.max_failed_polls,
                champion=None if self.champion in (None, "") else str(self.champion),
            ),
            method_name=method,
            kwargs={"timeout_at": timeout_at.isoformat()},
            timeout=dt.timedelta(seconds=left + max(_DEFER_GRACE_S, 2 * self.poll_interval)),
        )

    def early_look_complete(
        self, context: Context, event: dict[str, Any] | None = None, timeout_at: str | None = None
    ) -> dict[str, Any]:
        """Resume at the early look's floor: a broken challenger ends the wait (``early_reject``);
        otherwise defer again to the full target, with the same deadline."""
        if not event or event.get("status") != "success":
            return self.execute_complete(context, event)
        from fraudops.release.progress import as_utc

        self._from_release()
        self._apply_overrides()
        stop = self._early_result(context, event.get("progress"))
        if stop is not None:
            return stop
        target = self._target()
        deadline = (
            as_utc(timeout_at) if timeout_at else dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.timeout)
        )
        self._defer(self._query(target), target, deadline, "execute_complete")

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, timeout_at: str | None = None
    ) -> dict[str, Any]:
        """Resume after the trigger: an error event raises, a timeout is soft (or raises), success returns."""
        if not event:
            raise AirflowException("ShadowMetricsSensor resumed without a trigger event")
        from fraudops.pipeline.release_types import ShadowWait

        status = event.get("status")
        if status == "success":
            self.log.info("%s v%s ready: %s", self.model_name, self.version, event.get("reason"))
            return ShadowWait(
                ready=True, progress=event.get("progress"), reason=event.get("reason", ""), eta_hours=0.0
            ).to_xcom()
        if status == "incumbent_changed":
            reason = str(event.get("reason") or "champion moved")
            self.log.warning("%s v%s: %s", self.model_name, self.version, reason)
            return ShadowWait(
                ready=False, progress=event.get("progress"), reason=reason, incumbent_changed=True
            ).to_xcom()
        if status == "timeout":
            reason = str(event.get("reason") or "target not met")
            if self.soft_timeout:
                return self._timeout_result(event.get("progress"), reason, event.get("eta_hours"))
            raise AirflowSensorTimeout(f"shadow metrics not ready by {event.get('timeout_at')}: {reason}")
        raise AirflowException(f"shadow metrics wait failed: {event.get('message', event)}")


class ProbationSensor(BaseSensorOperator):
    """Watch a newly promoted champion until its probation is decided.

    Each poke runs :func:`fraudops.pipeline.release.probation_check` (the new champion's production
    rows vs the old champion scoring in shadow since the promotion, through ``decide_probation``)
    and is done at the first ``rollback`` or when the probation period is over. Between pokes it
    gives its worker slot back (``mode="reschedule"``). The XCom is the outcome dict
    (``status`` confirm/rollback, ``reason``, ``decision``).

    :param candidate: the release's resolved candidate (XCom of ``resolve``). (templated)
    :param promotion: the promotion result (XCom of ``promote``). (templated)
    :param poll_seconds: seconds between checks; None = the candidate's ``probation_poll_s``. (templated)
    """

    template_fields: Sequence[str] = ("candidate", "promotion", "poll_seconds")
    ui_color = "#e4f0ec"

    def __init__(
        self,
        *,
        candidate: Any,
        promotion: Any,
        poll_seconds: float | str | None = None,
        timeout: float = 50 * 24 * 3600.0,
        mode: str = "reschedule",
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=60.0, timeout=timeout, mode=mode, **kwargs)
        self.candidate = candidate
        self.promotion = promotion
        self.poll_seconds = poll_seconds

    def execute(self, context: Context) -> Any:
        try:
            if self.poll_seconds in (None, ""):
                from fraudops.pipeline.release import params_of
                from fraudops.pipeline.release_types import Candidate

                self.poke_interval = params_of(Candidate.from_xcom(self.candidate)).probation_poll_s
            else:
                self.poke_interval = float(self.poll_seconds)
        except (TypeError, ValueError) as err:
            raise AirflowFailException(f"invalid probation poll interval {self.poll_seconds!r}") from err
        return super().execute(context)

    def poke(self, context: Context) -> PokeReturnValue:
        from fraudops.exceptions import WarehouseUnavailable
        from fraudops.pipeline.release import ReleaseContext, params_of, probation_check
        from fraudops.pipeline.release_types import Candidate, Promotion
        from fraudops_airflow.tasks import run_key

        cand = Candidate.from_xcom(self.candidate)
        promo = Promotion.from_xcom(self.promotion)
        ctx = ReleaseContext(run_key(context["run_id"], self.dag_id))
        try:
            outcome = probation_check(ctx, params_of(cand), cand, promo)
        except WarehouseUnavailable as err:
            self.log.warning("warehouse unavailable, will check again: %s", err)
            return PokeReturnValue(is_done=False)
        self.log.info(
            "probation of v%s: %s after %s events (%s)",
            cand.version,
            outcome.status,
            outcome.n_events,
            outcome.reason,
        )
        return PokeReturnValue(is_done=outcome.done, xcom_value=outcome.to_xcom())
