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


def config_from_connection(
    host: str | None, schema: str | None, extra: dict[str, Any], base: WarehouseConfig
) -> WarehouseConfig:
    """The connection's fields over ``base`` (the environment settings): host = emulator endpoint
    (empty string = real BigQuery), schema = dataset, extra = project / location / timeout_s."""
    return replace(
        base,
        endpoint=host if host is not None else base.endpoint,
        dataset=schema or base.dataset,
        project=extra.get("project", base.project),
        location=extra.get("location", base.location),
        timeout_s=float(extra.get("timeout_s", base.timeout_s)),
    )


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
        from airflow.sdk.exceptions import AirflowNotFoundException

        from fraudops.config import load_settings

        cfg = load_settings().warehouse
        try:
            conn = self.get_connection(self.warehouse_conn_id)
        except AirflowNotFoundException:
            self.log.info("connection %s not found; using environment settings", self.warehouse_conn_id)
            return cfg
        return config_from_connection(conn.host, conn.schema, conn.extra_dejson or {}, cfg)

    def get_warehouse(self) -> Warehouse:
        from fraudops.warehouse import Warehouse

        return Warehouse(self.get_config())

    def get_conn(self) -> Warehouse:
        return self.get_warehouse()
