"""The warehouse: BigQuery (or its local emulator) through one client and one schema."""

from __future__ import annotations

from fraudops.warehouse.client import Warehouse, make_client
from fraudops.warehouse.schema import TABLES, Column, TableSpec, get_table_spec

__all__ = ["TABLES", "Column", "TableSpec", "Warehouse", "get_table_spec", "make_client"]
