"""Triggers: waits that run in the triggerer's event loop instead of holding a worker slot.

``ShadowMetricsTrigger`` polls ``fraudops.release.progress.shadow_progress`` until a challenger has
scored enough events with matured labels. It carries only primitives (connection id, strings,
numbers), so it survives serialisation to the metadata DB and a triggerer restart; the warehouse
configuration is rebuilt from the Airflow connection inside the trigger.

Events (exactly one per run):

* ``{"status": "success", "progress": {...}, "reason": "..."}`` — the target is met.
* ``{"status": "timeout", "progress": {...} | None, "reason": "matured labeled frauds 41 of 120
  needed; scored 3,100 of 5,000; ETA ~2.3 h event time", "eta_hours": 2.3, ...}`` —
  ``timeout_at`` passed first. The trigger does not decide what a timeout means; the sensor does.
* ``{"status": "error", "message": "..."}`` — the wait cannot go on.

Failure policy: a warehouse *outage* (``WarehouseUnavailable``: connection refused, timeouts, 5xx)
is retried — each poll already retries within the client's ``timeout_s``, and the trigger tolerates
``max_failed_polls`` consecutive failed polls (``poll_interval`` apart) before giving up with an error
event, so a short emulator restart or BigQuery blip does not fail a multi-day wait. Any other error
(bad SQL, missing table, bad arguments) is a broken contract that a retry cannot fix: error event at
once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from fraudops.config import WarehouseConfig

CLASSPATH = "fraudops_airflow.triggers.ShadowMetricsTrigger"


class ShadowMetricsTrigger(BaseTrigger):
    """Fires once the challenger's shadow progress meets the target, or ``timeout_at`` passes.

    :param model_name: registered model name in the predictions table.
    :param version: challenger model version.
    :param since: count predictions served at or after this instant (ISO 8601; naive means UTC).
    :param min_scored: minimum distinct events scored.
    :param min_labeled: minimum scored events with a label known now.
    :param min_labeled_frauds: minimum labelled frauds among them.
    :param timeout_at: ISO 8601 instant after which a ``timeout`` event fires (None: wait forever).
    :param warehouse_conn_id: Airflow connection (see ``WarehouseHook``); missing → env settings.
    :param poll_interval: seconds between polls.
    :param prediction_mode: ``shadow`` (challenger) or ``production``.
    :param max_failed_polls: consecutive polls that may fail with a warehouse outage before giving up.
    :param min_matured: minimum scored events older than ``maturity_hours`` in event time.
    :param maturity_hours: label maturity (needed for ``min_matured``).
    :param settle_s: leave out predictions served in the last seconds (still being written).
    :param min_matured_frauds: minimum matured labeled frauds (needs ``maturity_hours``).
    """

    def __init__(
        self,
        *,
        model_name: str,
        version: str,
        since: str,
        min_scored: int = 0,
        min_labeled: int = 0,
        min_labeled_frauds: int = 0,
        timeout_at: str | None = None,
        warehouse_conn_id: str = "fraudops_warehouse",
        poll_interval: float = 60.0,
        prediction_mode: str = "shadow",
        max_failed_polls: int = 3,
        min_matured: int = 0,
        maturity_hours: float | None = None,
        settle_s: float = 0.0,
        min_matured_frauds: int = 0,
    ) -> None:
        super().__init__()
        self.min_matured_frauds = int(min_matured_frauds)
        self.settle_s = float(settle_s)
        self.min_matured = int(min_matured)
        self.maturity_hours = None if maturity_hours is None else float(maturity_hours)
        self.model_name = model_name
        self.version = str(version)
        self.since = since
        self.min_scored = int(min_scored)
        self.min_labeled = int(min_labeled)
        self.min_labeled_frauds = int(min_labeled_frauds)
        self.timeout_at = timeout_at
        self.warehouse_conn_id = warehouse_conn_id
        self.poll_interval = float(poll_interval)
        self.prediction_mode = prediction_mode
        self.max_failed_polls = int(max_failed_polls)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            CLASSPATH,
            {
                "model_name": self.model_name,
                "version": self.version,
                "since": self.since,
                "min_scored": self.min_scored,
                "min_labeled": self.min_labeled,
                "min_labeled_frauds": self.min_labeled_frauds,
                "timeout_at": self.timeout_at,
                "warehouse_conn_id": self.warehouse_conn_id,
                "poll_interval": self.poll_interval,
                "prediction_mode": self.prediction_mode,
                "max_failed_polls": self.max_failed_polls,
                "min_matured": self.min_matured,
                "maturity_hours": self.maturity_hours,
                "settle_s": self.settle_s,
                "min_matured_frauds": self.min_matured_frauds,
            },
        )

    async def _warehouse_config(self) -> WarehouseConfig:
        """Connection → WarehouseConfig through ``config_from_connection`` (shared with the hook).

        Async lookup (``aget_connection``): a sync lookup from the triggerer's event loop can deadlock
        against the supervisor comms. ``extra.timeout_s`` bounds each warehouse call.
        """
        from airflow.sdk.bases.hook import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        from fraudops.config import load_settings
        from fraudops_airflow.hooks import config_from_connection

        cfg = load_settings().warehouse
        try:
            conn = await BaseHook.aget_connection(self.warehouse_conn_id)
        except AirflowNotFoundException:
            self.log.info("connection %s not found; using environment settings", self.warehouse_conn_id)
            return cfg
        return config_from_connection(conn.host, conn.schema, (await conn.aextra_dejson()) or {}, cfg)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from fraudops.exceptions import WarehouseUnavailable
        from fraudops.release.progress import (
            ProgressTarget,
            ShadowProgress,
            as_utc,
            eta,
            is_satisfied,
            shadow_progress,
            status_line,
        )
        from fraudops.warehouse import Warehouse

        try:
            target = ProgressTarget(
                min_scored=self.min_scored,
                min_labeled=self.min_labeled,
                min_labeled_frauds=self.min_labeled_frauds,
                min_matured=self.min_matured,
                min_matured_frauds=self.min_matured_frauds,
            )
            deadline = as_utc(self.timeout_at) if self.timeout_at else None
            since = as_utc(self.since)
            warehouse = Warehouse(await self._warehouse_config())
        except Exception as err:
            yield TriggerEvent({"status": "error", "message": f"{type(err).__name__}: {err}"})
            return

        progress: ShadowProgress | None = None
        reason = "no successful poll yet"
        eta_hours: float | None = None
        failed_polls = 0
        while True:
            try:
                progress = await asyncio.to_thread(
                    shadow_progress,
                    warehouse,
                    model_name=self.model_name,
                    version=self.version,
                    since=since,
                    mode=self.prediction_mode,
                    maturity_hours=self.maturity_hours,
                    settle_s=self.settle_s,
                )
            except WarehouseUnavailable as err:
                failed_polls += 1
                if failed_polls >= self.max_failed_polls:
                    yield TriggerEvent(
                        {
                            "status": "error",
                            "message": f"warehouse unavailable for {failed_polls} polls in a row: {err}",
                        }
                    )
                    return
                self.log.warning(
                    "warehouse unavailable (poll %s of %s may fail): %s",
                    failed_polls,
                    self.max_failed_polls,
                    err,
                )
            except Exception as err:
                yield TriggerEvent({"status": "error", "message": f"{type(err).__name__}: {err}"})
                return
            else:
                failed_polls = 0
                ready, _ = is_satisfied(progress, target)
                eta_hours = eta(
                    progress,
                    target,
                    first_event_time=progress.first_event_time,
                    now_event_time=progress.last_event_time,
                    maturity_hours=self.maturity_hours,
                )
                reason = status_line(progress, target, eta_hours)
                if ready:
                    self.log.info("%s v%s ready: %s", self.model_name, self.version, reason)
                    yield TriggerEvent(
                        {"status": "success", "progress": progress.to_dict(), "reason": reason}
                    )
                    return
                self.log.info("%s v%s not ready: %s", self.model_name, self.version, reason)

            now = dt.datetime.now(dt.UTC)
            if deadline is not None and now >= deadline:
                yield TriggerEvent(
                    {
                        "status": "timeout",
                        "progress": progress.to_dict() if progress else None,
                        "reason": reason,
                        "eta_hours": eta_hours,
                        "timeout_at": deadline.isoformat(),
                    }
                )
                return
            delay = self.poll_interval
            if deadline is not None:
                delay = max(0.0, min(delay, (deadline - now).total_seconds()))
            await asyncio.sleep(delay)
