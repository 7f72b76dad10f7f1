"""Launcher of the BigQuery emulator with a bounded DuckDB: ``python -m fraudops.stack.bqemu start ...``.

Why: bqemulator opens its DuckDB database with DuckDB's defaults, and DuckDB's default memory limit
is 80 % of the machine's RAM. Under a long stream of small MERGE loads and queries, measured here,
the emulator's resident memory grew until the kernel's OOM killer took it (21 GB on a 24 GB machine
after ~25 minutes). The launcher passes ``memory_limit`` (``FRAUDOPS_BQ_MEMORY_LIMIT``, default
768MB; DuckDB spills to its temp directory beyond it) and ``threads`` (``FRAUDOPS_BQ_THREADS``,
default 2) to every ``duckdb.connect`` the emulator makes, then runs bqemulator's own CLI unchanged.

It also turns off the emulator's automatic time-travel snapshots (``FRAUDOPS_BQ_TIME_TRAVEL=0``,
the default): bqemulator copies the *whole* table (``CREATE TABLE snapshot AS SELECT *``) after
every write, so a stream of small MERGEs into a growing predictions table costs O(rows) time and
memory per write. fraudops never queries ``FOR SYSTEM_TIME AS OF``; user snapshots
(``CREATE SNAPSHOT TABLE``) still work.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _bounded_connect(original: Any, memory_limit: str, threads: str) -> Any:
    def connect(*args: Any, **kwargs: Any) -> Any:
        config = dict(kwargs.pop("config", None) or {})
        config.setdefault("memory_limit", memory_limit)
        config.setdefault("threads", threads)
        return original(*args, config=config, **kwargs)

    return connect


def _no_auto_snapshots(original: Any) -> Any:
    def capture(self: Any, project_id: str, dataset_id: str, table_id: str, *, kind: str = "AUTO") -> Any:
        if kind == "AUTO":
            return None  # documented as "nothing to snapshot"; callers carry on
        return original(self, project_id, dataset_id, table_id, kind=kind)

    return capture


def main() -> None:
    import duckdb

    duckdb.connect = _bounded_connect(
        duckdb.connect,
        os.environ.get("FRAUDOPS_BQ_MEMORY_LIMIT", "768MB"),
        os.environ.get("FRAUDOPS_BQ_THREADS", "2"),
    )
    if os.environ.get("FRAUDOPS_BQ_TIME_TRAVEL", "0") in ("0", "false", "no"):
        from bqemulator.versioning.snapshots import SnapshotManager

        SnapshotManager.capture = _no_auto_snapshots(SnapshotManager.capture)  # type: ignore[method-assign]
    from bqemulator.cli import main as emulator_main

    sys.argv[0] = "bqemulator"
    sys.exit(emulator_main())


if __name__ == "__main__":
    main()
