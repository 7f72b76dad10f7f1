"""Airflow trigger-form fields from the platform's typed knobs (``fraudops.pipeline.knobs``)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param

from fraudops.pipeline.knobs import Knob


def airflow_params(knobs: tuple[Knob, ...]) -> dict[str, Param]:
    """One ``Param`` per knob, empty by default (= the deployment profile's value, else the code
    default), with the knob's JSON-schema type, bounds and help: for a DAG's ``params=``."""
    out: dict[str, Param] = {}
    for knob in knobs:
        schema: dict[str, Any] = knob.schema()
        out[knob.name] = Param(knob.empty, description=knob.help, **schema)
    return out
