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
