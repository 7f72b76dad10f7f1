"""Glue between Airflow task context and fraudops' plain step functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from airflow.sdk.exceptions import AirflowFailException

T = TypeVar("T")


def run_step(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a domain step; a ``PermanentError`` fails the task without retries (a retry can't help)."""
    from fraudops.exceptions import PermanentError

    try:
        return fn(*args, **kwargs)
    except PermanentError as err:
        raise AirflowFailException(f"{type(err).__name__}: {err}") from err


def run_key(context_run_id: str | None, dag_id: str) -> str:
    """A stable folder name for a DAG run: retries and re-runs of a task reuse the same folder."""
    return f"{dag_id}__{context_run_id or 'manual'}"


def effective_params(params: dict[str, Any] | None, variable: str) -> dict[str, Any]:
    """DAG params over a deployment profile: the JSON Airflow Variable ``variable`` gives the values
    for every param left empty (None or ""), e.g. the local demo's faster cadence; params set on the
    trigger form win. Runs started by an Asset or the schedule get the profile (or code defaults)."""
    from airflow.sdk import Variable

    profile = Variable.get(variable, default=None, deserialize_json=True) or {}
    if not isinstance(profile, dict):
        raise AirflowFailException(f"Airflow Variable {variable!r} must be a JSON object")
    given = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
    return {**profile, **given}
