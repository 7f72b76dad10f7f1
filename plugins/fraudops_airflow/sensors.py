"""Sensors: wait for the warehouse to hold enough evidence before a release decision.

``ShadowMetricsSensor`` waits until a challenger scoring in shadow has scored ``min_scored`` events,
``min_labeled`` of them with matured labels and ``min_labeled_frauds`` frauds among those. Labels
take days, so by default it defers to ``ShadowMetricsTrigger`` and holds no worker slot while waiting.

Its XCom is a small dict the release DAG branches on:

* ``{"ready": True, "progress": {...}, "reason": "..."}`` when the target is met;
* ``{"ready": False, "progress": {...}, "reason": "timeout: only N of M labeled ..."}`` when
  ``timeout`` passes and ``soft_timeout=True`` (the default): the run goes on to *reject* with the
  reason recorded, instead of failing — running out of evidence is a release outcome, not an
  infrastructure failure. With ``soft_timeout=False`` a timeout raises ``AirflowSensorTimeout``
  (and the usual ``soft_fail`` / ``never_fail`` semantics apply).

A warehouse error that outlives the trigger's retries raises ``AirflowException`` (task retries apply).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from fraudops_airflow.triggers import ShadowMetricsTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

    from fraudops.release.progress import ProgressTarget, ShadowProgress

#: Extra time the triggerer allows beyond ``timeout`` so the trigger's own (soft) timeout event
#: arrives before Airflow's hard deferral timeout; the hard one only catches a stuck trigger.
_DEFER_GRACE_S = 600.0


class ShadowMetricsSensor(BaseSensorOperator):
    """Wait until a challenger has scored enough events with matured labels.

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
    """

    template_fields: Sequence[str] = (
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
    )
    ui_color = "#f0e4ec"

    def __init__(
        self,
        *,
        model_name: str,
        version: str,
        since: str | dt.datetime,
        min_scored: int | str = 0,
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
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poll_interval, timeout=timeout, **kwargs)
        self.settle_s = settle_s
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
        self._last_progress: ShadowProgress | None = None
        self._last_reason = "no successful poll yet"

    # -- helpers ----------------------------------------------------------------------------------
    def _target(self) -> ProgressTarget:
        """The rendered minimums as a validated target; bad values fail without retry."""
        from fraudops.release.progress import ProgressTarget

        try:
            return ProgressTarget(
                min_scored=int(self.min_scored),
                min_labeled=int(self.min_labeled),
                min_labeled_frauds=int(self.min_labeled_frauds),
                min_matured=int(self.min_matured),
            )
        except (TypeError, ValueError) as err:
            raise AirflowFailException(f"invalid shadow progress target: {err}") from err

    def _maturity(self) -> float | None:
        if self.maturity_hours in (None, ""):
            return None
        try:
            return float(self.maturity_hours)
        except (TypeError, ValueError) as err:
            raise AirflowFailException(f"invalid maturity_hours {self.maturity_hours!r}") from err

    def _since_iso(self) -> str:
        from fraudops.release.progress import as_utc

        try:
            return as_utc(self.since).isoformat()
        except (TypeError, ValueError) as err:
            raise AirflowFailException(f"invalid `since` {self.since!r}: {err}") from err

    def _timeout_result(self, progress: dict[str, Any] | None, reason: str) -> dict[str, Any]:
        self.log.warning("%s v%s not ready before timeout: %s", self.model_name, self.version, reason)
        return {"ready": False, "progress": progress, "reason": f"timeout: {reason}"}

    # -- non-deferrable mode ----------------------------------------------------------------------
    def poke(self, context: Context) -> PokeReturnValue:
        from fraudops.exceptions import WarehouseUnavailable
        from fraudops.release.progress import is_satisfied, shadow_progress
        from fraudops_airflow.hooks import WarehouseHook

        target = self._target()
        hook = WarehouseHook(warehouse_conn_id=self.warehouse_conn_id)
        try:
            progress = shadow_progress(
                hook.get_warehouse(),
                model_name=str(self.model_name),
                version=str(self.version),
                since=self._since_iso(),
                mode=self.prediction_mode,
                maturity_hours=self._maturity(),
                settle_s=self.settle_s,
            )
        except WarehouseUnavailable as err:
            # An outage is "not known yet", not a verdict: keep poking until the timeout.
            self.log.warning("warehouse unavailable, will poke again: %s", err)
            return PokeReturnValue(is_done=False)
        ready, reason = is_satisfied(progress, target)
        self._last_progress, self._last_reason = progress, reason
        self.log.info("%s v%s %s: %s", self.model_name, self.version, "ready" if ready else "waiting", reason)
        if not ready:
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(
            is_done=True, xcom_value={"ready": True, "progress": progress.to_dict(), "reason": reason}
        )

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
        self._apply_overrides()
        target = self._target()
        since = self._since_iso()
        if not self.deferrable:
            try:
                return super().execute(context)
            except AirflowSensorTimeout:
                if not self.soft_timeout:
                    raise
                last = self._last_progress.to_dict() if self._last_progress else None
                return self._timeout_result(last, self._last_reason)

        timeout_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.timeout)
        self.defer(
            trigger=ShadowMetricsTrigger(
                model_name=str(self.model_name),
                version=str(self.version),
                since=since,
                min_scored=target.min_scored,
                min_labeled=target.min_labeled,
                min_labeled_frauds=target.min_labeled_frauds,
                timeout_at=timeout_at.isoformat(),
                warehouse_conn_id=self.warehouse_conn_id,
                poll_interval=self.poll_interval,
                prediction_mode=self.prediction_mode,
                max_failed_polls=self.max_failed_polls,
                min_matured=target.min_matured,
                maturity_hours=self._maturity(),
                settle_s=self.settle_s,
            ),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=self.timeout + max(_DEFER_GRACE_S, 2 * self.poll_interval)),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: an error event raises, a timeout is soft (or raises), success returns."""
        if not event:
            raise AirflowException("ShadowMetricsSensor resumed without a trigger event")
        status = event.get("status")
        if status == "success":
            self.log.info("%s v%s ready: %s", self.model_name, self.version, event.get("reason"))
            return {"ready": True, "progress": event.get("progress"), "reason": event.get("reason", "")}
        if status == "timeout":
            reason = str(event.get("reason") or "target not met")
            if self.soft_timeout:
                return self._timeout_result(event.get("progress"), reason)
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
    :param poll_seconds: seconds between checks, e.g. ``{{ params.probation_poll_s }}``. (templated)
    """

    template_fields: Sequence[str] = ("candidate", "promotion", "poll_seconds")
    ui_color = "#e4f0ec"

    def __init__(
        self,
        *,
        candidate: Any,
        promotion: Any,
        poll_seconds: float | str = 60.0,
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
            self.poke_interval = float(self.poll_seconds)
        except (TypeError, ValueError) as err:
            raise AirflowFailException(f"invalid probation poll interval {self.poll_seconds!r}") from err
        return super().execute(context)

    def poke(self, context: Context) -> PokeReturnValue:
        from fraudops.exceptions import WarehouseUnavailable
        from fraudops.pipeline.release import ReleaseContext, ReleaseParams, probation_check
        from fraudops_airflow.tasks import run_key

        params = ReleaseParams.from_dict(self.candidate["params"])
        ctx = ReleaseContext(run_key(context["run_id"], self.dag_id))
        try:
            outcome = probation_check(ctx, params, self.candidate, self.promotion)
        except WarehouseUnavailable as err:
            self.log.warning("warehouse unavailable, will check again: %s", err)
            return PokeReturnValue(is_done=False)
        self.log.info(
            "probation of v%s: %s after %s events (%s)",
            self.candidate["version"],
            outcome["status"],
            outcome["n_events"],
            outcome["reason"],
        )
        return PokeReturnValue(is_done=bool(outcome["done"]), xcom_value=outcome)
