"""Helpers for tests that run a DAG defined in the test with ``dag.test()``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def serialize_to_db(dag: Any, empty_dir: Path) -> None:
    """dag.test() needs the DAG serialized in the metadata DB, and it only re-parses bundles (dags/):
    a DAG defined in a test is written there explicitly, under the dags-folder bundle."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()  # the bundle row must exist before its DAGs
    bag = DagBag(dag_folder=str(empty_dir))
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
