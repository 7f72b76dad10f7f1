"""Triggers: waits that run in the triggerer's event loop instead of holding a worker slot.

``ShadowMetricsTrigger`` polls a ``ShadowQuery`` (``fraudops.release.progress``: which rows count)
until they meet a ``ProgressTarget`` (how many scored events and matured labeled frauds). The
sensor builds both, once, and the trigger carries them as ``to_dict()`` (primitives only), so it
survives serialisation to the metadata DB and a triggerer restart; the warehouse configuration is
rebuilt from the Airflow connection inside the trigger.

Events (exactly one per run):

* ``{"status": "success", "progress": {...}, "reason": "..."}`` — the target is met.
* ``{"status": "timeout", "progress": {...} | None, "reason": "matured labeled frauds 41 of 120
  needed; scored 3,100 of 5,000; ETA ~2.3 h event time", "eta_hours": 2.3, ...}`` —
  ``timeout_at`` passed first. The trigger does not decide what a timeout means; the sensor does.
* ``{"status": "incumbent_changed", "champion": "1", "progress": {...} | None, "reason": "..."}`` —
  ``champion`` was given and the audit trail (``deployments``, what the scoring service serves) names
  another champion: the evidence being gathered compares the challenger with a model that no
  longer serves, so waiting longer cannot lead to a promotion.
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

    :param query: which rows count, ``ShadowQuery.to_dict()`` (model, version, since, mode,
        maturity, settle time).
    :param target: how much is enough, ``ProgressTarget.to_dict()``.
    :param timeout_at: ISO 8601 instant after which a ``timeout`` event fires (None: wait forever).
    :param warehouse_conn_id: Airflow connection (see ``WarehouseHook``); missing → env settings.
    :param poll_interval: seconds between polls.
    :param max_failed_polls: consecutive polls that may fail with a warehouse outage before giving up.
    :param champion: the champion version the release compares with (None: not watched).
    """

    def __init__(
        self,
        *,
        query: dict[str, Any],
        target: dict[str, Any],
        timeout_at: str | None = None,
        warehouse_conn_id: str = "fraudops_warehouse",
        poll_interval: float = 60.0,
        max_failed_polls: int = 3,
        champion: str | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # BaseTrigger.__init__ has no annotations
        self.query = dict(query)
        self.target = dict(target)
        self.timeout_at = timeout_at
        self.warehouse_conn_id = warehouse_conn_id
        self.poll_interval = float(poll_interval)
        self.max_failed_polls = int(max_failed_polls)
        self.champion = None if champion is None else str(champion)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            CLASSPATH,
            {
                "query": self.query,
                "target": self.target,
                "timeout_at": self.timeout_at,
                "warehouse_conn_id": self.warehouse_conn_id,
                "poll_interval": self.poll_interval,
                "max_failed_polls": self.max_failed_polls,
                "champion": self.champion,
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
        from fraudops.registry import champion_moved
        from fraudops.release.progress import (
            ProgressTarget,
            ShadowProgress,
            ShadowQuery,
            as_utc,
            eta_of,
            is_satisfied,
            status_line,
        )
        from fraudops.warehouse import Warehouse

        try:
            query = ShadowQuery.from_dict(self.query)
            target = ProgressTarget.from_dict(self.target)
            query.check(target)
            deadline = as_utc(self.timeout_at) if self.timeout_at else None
            warehouse = Warehouse(await self._warehouse_config())
        except Exception as err:
            yield TriggerEvent({"status": "error", "message": f"{type(err).__name__}: {err}"})
            return
        who = f"{query.model_name} v{query.version}"

        progress: ShadowProgress | None = None
        reason = "no successful poll yet"
        eta_hours: float | None = None
        failed_polls = 0
        while True:
            try:
                progress = await asyncio.to_thread(query.progress, warehouse)
                moved = None
                if self.champion is not None:
                    moved = await asyncio.to_thread(
                        champion_moved, warehouse, query.model_name, self.champion
                    )
                if moved is not None:
                    serving, why = moved
                    self.log.warning("%s: %s", who, why)
                    event = {"status": "incumbent_changed", "champion": serving, "reason": why}
                    yield TriggerEvent({**event, "progress": progress.to_dict()})
                    return
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
                eta_hours = eta_of(progress, target, query.maturity_hours)
                reason = status_line(progress, target, eta_hours)
                if ready:
                    self.log.info("%s ready: %s", who, reason)
                    yield TriggerEvent(
                        {"status": "success", "progress": progress.to_dict(), "reason": reason}
                    )
                    return
                self.log.info("%s not ready: %s", who, reason)

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
