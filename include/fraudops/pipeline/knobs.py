"""The user-facing parameters of the retrain and release runs, one definition each.

A :class:`Knob` names a field of ``RetrainParams`` / ``ReleaseParams`` with its type, bounds and help;
the Airflow trigger form (``fraudops_airflow.params.airflow_params``: ``Param``s from ``schema()``)
and the CLI options (``fraudops train``,
``fraudops release run``) are derived from it, so the form, the command line and the run's dataclass
cannot disagree on a type again (the CLI once took ``--label-maturity-days`` as an integer while
the form and the dataclass took days as a number). ``tests/include/pipeline/test_knobs.py``
checks every knob against its dataclass field.

Kept light and Airflow-free: the DAG files import this at parse time; click is imported when a
command is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_JSON_TYPE = {bool: "boolean", int: "integer", float: "number", str: "string"}


@dataclass(frozen=True)
class Knob:
    """One parameter: empty (None, or "" for text) means "the profile's value, else the code default"."""

    name: str
    kind: type
    help: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in _JSON_TYPE:
            raise TypeError(f"knob {self.name}: kind must be bool, int, float or str, got {self.kind!r}")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def schema(self) -> dict[str, Any]:
        """JSON-schema keywords of the trigger-form field (Airflow ``Param``)."""
        doc: dict[str, Any] = {}
        if self.kind is str and not self.choices:
            doc["type"] = "string"
        else:
            doc["type"] = ["null", _JSON_TYPE[self.kind]]
        if self.choices:
            doc["enum"] = [None, *self.choices]
        for key, value in (
            ("minimum", self.minimum),
            ("maximum", self.maximum),
            ("exclusiveMinimum", self.exclusive_minimum),
            ("exclusiveMaximum", self.exclusive_maximum),
        ):
            if value is not None:
                doc[key] = value
        return doc

    @property
    def empty(self) -> Any:
        return "" if self.kind is str and not self.choices else None

    def cli_option(self) -> Callable[[F], F]:
        import click

        kind: Any = click.Choice(list(self.choices)) if self.choices else self.kind
        lo = self.minimum if self.minimum is not None else self.exclusive_minimum
        hi = self.maximum if self.maximum is not None else self.exclusive_maximum
        if self.kind in (int, float) and (lo is not None or hi is not None):
            range_type: Any = click.IntRange if self.kind is int else click.FloatRange
            kind = range_type(
                lo,
                hi,
                min_open=self.exclusive_minimum is not None,
                max_open=self.exclusive_maximum is not None,
            )
        return click.option(self.flag, type=kind, default=None, help=self.help)


RETRAIN: tuple[Knob, ...] = (
    Knob("window_days", int, "Training window (days).", minimum=1, maximum=180),
    Knob(
        "label_maturity_days",
        float,
        "Days labels need to arrive (the window ends that long before as_of).",
        minimum=0,
        maximum=90,
    ),
    Knob("history_days", int, "Feature history before the window (days).", minimum=1, maximum=90),
    Knob("as_of", str, "'Now' for the run (ISO 8601); empty = the newest transaction."),
    Knob("model_family", str, "Candidate family.", choices=("lightgbm", "logreg")),
    Knob("n_estimators", int, "Boosting rounds.", minimum=10, maximum=5000),
    Knob("learning_rate", float, "Boosting learning rate.", exclusive_minimum=0, maximum=1),
    Knob("num_leaves", int, "Leaves per tree.", minimum=2, maximum=1024),
    Knob("min_child_samples", int, "Minimum rows per leaf.", minimum=1),
    Knob("min_rows", int, "Validation: minimum rows in the window.", minimum=1),
    Knob(
        "search_minutes",
        float,
        "Hyper-parameter search budget (Optuna on forward-chaining folds, a label-maturity gap "
        "between each fold's training rows and its validation block); 0 = train the parameters above.",
        minimum=0,
        maximum=240,
    ),
    Knob(
        "risk_delay",
        str,
        "Label delay of the delayed terminal/merchant risk features: auto = read off the label-delay "
        "curve of the training data; none = without them.",
        choices=("auto", "none", "1d", "3d", "7d", "14d"),
    ),
)

RELEASE: tuple[Knob, ...] = (
    Knob("model_name", str, "Registered model; empty = FRAUDOPS_MODEL_NAME."),
    Knob(
        "expected_fraud_rate",
        float,
        "Fraud rate that sizes the planned sample.",
        exclusive_minimum=0,
        exclusive_maximum=1,
    ),
    Knob(
        "shadow_timeout_minutes",
        float,
        "Evidence deadline (then reject as inconclusive).",
        exclusive_minimum=0,
    ),
    Knob("poll_interval_s", float, "Seconds between evidence looks.", exclusive_minimum=0),
    Knob(
        "deploy_timeout_s",
        float,
        "Seconds the scoring service may take to serve a deployment.",
        exclusive_minimum=0,
    ),
    Knob("probation_minutes", float, "Probation length (then the final look).", minimum=0),
    Knob("probation_poll_s", float, "Seconds between probation looks.", exclusive_minimum=0),
    Knob("scoring_url", str, "Scoring service base URL; empty = settings."),
    Knob(
        "requires_approval",
        bool,
        "A passed gate waits for a release manager's Approve (Airflow human-in-the-loop) before promoting.",
    ),
    Knob(
        "approval_timeout_minutes",
        float,
        "Minutes a release manager has to answer (then reject).",
        exclusive_minimum=0,
    ),
    Knob(
        "shadow_sample_rate",
        float,
        "Share of live traffic mirrored to the challenger; empty = the scoring service's default.",
        exclusive_minimum=0,
        maximum=1,
    ),
)


def cli_options(knobs: tuple[Knob, ...]) -> Callable[[F], F]:
    """A decorator adding one click option per knob (``--window-days``, ...), default None."""

    def decorate(func: F) -> F:
        for knob in reversed(knobs):
            func = knob.cli_option()(func)
        return func

    return decorate
