"""Hooks that turn Airflow connections into fraudops configuration objects.

The connection ``fraudops_warehouse`` (from airflow_settings.yaml locally, a secrets backend in
production) says where the warehouse is: ``host`` is the REST endpoint of a BigQuery emulator (empty
for real BigQuery), ``schema`` the dataset, ``extra.project`` / ``extra.location`` the rest. When the
connection does not exist the environment settings apply, so ``dag.test()`` works without one.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.hook import BaseHook

if TYPE_CHECKING:
    from fraudops.config import WarehouseConfig
    from fraudops.warehouse import Warehouse


class WarehouseHook(BaseHook):
    """Builds a ``fraudops.warehouse.Warehouse`` from an Airflow connection."""

    conn_name_attr = "warehouse_conn_id"
    default_conn_name = "fraudops_warehouse"
    conn_type = "generic"
    hook_name = "fraudops warehouse"

    def __init__(self, *, warehouse_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.warehouse_conn_id = warehouse_conn_id

    def get_config(self) -> WarehouseConfig:
        from airflow.exceptions import AirflowNotFoundException

        from fraudops.config import load_settings

        cfg = load_settings().warehouse
        try:
            conn = self.get_connection(self.warehouse_conn_id)
        except AirflowNotFoundException:
            self.log.info("connection %s not found; using environment settings", self.warehouse_conn_id)
            return cfg
        extra = conn.extra_dejson or {}
        return replace(
            cfg,
            endpoint=conn.host if conn.host is not None else cfg.endpoint,
            dataset=conn.schema or cfg.dataset,
            project=extra.get("project", cfg.project),
            location=extra.get("location", cfg.location),
        )

    def get_warehouse(self) -> Warehouse:
        from fraudops.warehouse import Warehouse

        return Warehouse(self.get_config())

    def get_conn(self) -> Warehouse:
        return self.get_warehouse()
