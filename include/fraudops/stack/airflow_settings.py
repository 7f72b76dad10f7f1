"""Apply an Astro-style ``airflow_settings.yaml`` (connections, variables, pools) to Airflow's DB.

Run as ``python -m fraudops.stack.airflow_settings FILE`` with Airflow's environment (the module
imports Airflow, which reads AIRFLOW_HOME at import time). Idempotent: existing entries are
updated in place. ``${VAR}`` and ``${VAR:-default}`` in values are expanded from the environment
so the file commits no secrets and no machine-specific ports.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(value: Any) -> Any:
    if isinstance(value, str):
        return _VAR.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v) for v in value]
    return value


def load(path: Path) -> dict[str, list[dict[str, Any]]]:
    import yaml

    raw = yaml.safe_load(path.read_text()) or {}
    section = expand(raw.get("airflow") or {})
    return {k: list(section.get(k) or []) for k in ("connections", "variables", "pools")}


def apply(path: Path) -> str:
    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    cfg = load(path)
    with create_session() as session:
        for c in cfg["connections"]:
            extra = c.get("conn_extra")
            conn = Connection(
                conn_id=c["conn_id"],
                conn_type=c.get("conn_type") or "generic",
                host=c.get("conn_host") or None,
                schema=c.get("conn_schema") or None,
                login=c.get("conn_login") or None,
                password=c.get("conn_password") or None,
                port=int(c["conn_port"]) if c.get("conn_port") not in (None, "") else None,
                extra=json.dumps(extra) if isinstance(extra, dict) else extra,
            )
            existing = session.query(Connection).filter(Connection.conn_id == conn.conn_id).one_or_none()
            if existing is not None:
                session.delete(existing)
                session.flush()
            session.add(conn)
        for p in cfg["pools"]:
            Pool.create_or_update_pool(
                name=p["pool_name"],
                slots=int(p.get("pool_slot", 1)),
                description=p.get("pool_description") or "",
                include_deferred=bool(p.get("include_deferred", False)),
                session=session,
            )
    for v in cfg["variables"]:
        value = v.get("variable_value")
        Variable.set(
            v["variable_name"],
            value if isinstance(value, str) else json.dumps(value),
            description=v.get("variable_description"),
        )
    return (
        f"airflow settings applied: {len(cfg['connections'])} connections, "
        f"{len(cfg['variables'])} variables, {len(cfg['pools'])} pools"
    )


if __name__ == "__main__":
    print(apply(Path(sys.argv[1])))
