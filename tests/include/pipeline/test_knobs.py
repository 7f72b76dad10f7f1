"""One definition per parameter: the trigger forms, the CLI options and the run dataclasses agree."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner
from fraudops_airflow.params import airflow_params

from fraudops.pipeline.knobs import RELEASE, RETRAIN, Knob
from fraudops.pipeline.release import ReleaseParams
from fraudops.pipeline.retrain import RetrainParams

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("knobs", "cls"), [(RETRAIN, RetrainParams), (RELEASE, ReleaseParams)])
def test_every_knob_is_a_field_of_the_same_type(knobs: tuple[Knob, ...], cls: type) -> None:
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    for knob in knobs:
        assert knob.name in types, f"{knob.name} is not a {cls.__name__} field"
        # A field without a code default (None: decided at run time) is the knob's kind or None.
        kind = knob.kind.__name__
        assert types[knob.name] in (kind, f"{kind} | None"), (knob.name, types[knob.name], knob.kind)
        default = getattr(cls(), knob.name)
        if knob.choices:
            assert default in knob.choices
        if knob.kind is not str and default is not None:
            lo = knob.minimum if knob.minimum is not None else knob.exclusive_minimum
            hi = knob.maximum if knob.maximum is not None else knob.exclusive_maximum
            assert (lo is None or default >= lo) and (hi is None or default <= hi), (knob.name, default)


def test_the_dag_forms_are_derived_from_the_knobs() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    for dag_id, knobs in (("fraud_retrain", RETRAIN), ("fraud_release", RELEASE)):
        params = bag.dags[dag_id].params
        for knob in knobs:
            param = params.get_param(knob.name)
            assert (
                param.value == knob.empty and param.schema == knob.schema() and param.description == knob.help
            )
    assert set(airflow_params(RELEASE)) | {"version", "policy"} == set(bag.dags["fraud_release"].params)


def test_cli_takes_the_same_types_and_bounds() -> None:
    """Regression: --label-maturity-days was an integer on the command line (0.5 days refused)."""
    from fraudops.cli import main

    runner = CliRunner()
    bad = runner.invoke(main, ["train", "--window-days", "0"])
    assert bad.exit_code == 2 and "0 is not in the range 1<=x<=180" in bad.output
    bad = runner.invoke(main, ["train", "--learning-rate", "0"])
    assert bad.exit_code == 2 and "x<=1" in bad.output
    bad = runner.invoke(main, ["train", "--model-family", "xgboost"])
    assert bad.exit_code == 2 and "'xgboost' is not one of 'lightgbm', 'logreg'" in bad.output
    bad = runner.invoke(main, ["release", "run", "3", "--expected-fraud-rate", "1"])
    assert bad.exit_code == 2 and "0<x<1" in bad.output
    helptext = runner.invoke(main, ["train", "--help"]).output
    assert "--label-maturity-days FLOAT RANGE" in helptext


def test_the_cli_refuses_a_release_that_needs_an_approver() -> None:
    """An approval is a release manager's answer in Airflow; the command line has none to ask."""
    from fraudops.cli import main

    bad = CliRunner().invoke(main, ["release", "run", "3", "--requires-approval", "true"])
    assert bad.exit_code == 2 and "runs in Airflow's fraud_release" in bad.output, bad.output
    bad = CliRunner().invoke(main, ["release", "run", "3", "--requires-approval", "perhaps"])
    assert bad.exit_code == 2 and "is not a valid boolean" in bad.output, bad.output
