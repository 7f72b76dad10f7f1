"""The platform's words, one definition each: registry aliases, gate stages and decisions,
deployment actions and states.

They are ``StrEnum`` members, so they compare equal to the strings stored in the warehouse
(``gate_decisions.status``, ``deployments.action``), in MLflow (alias names) and in XCom (Airflow's
serde stores an enum as its value): code writes ``Decision.PROMOTE``, the tables keep ``"promote"``.
This module imports nothing from the package, so every layer may use it.
"""

from __future__ import annotations

from enum import StrEnum


class Alias(StrEnum):
    """Registry aliases with a fixed name; challengers get ``challenger_alias(version)``."""

    CHAMPION = "champion"


#: Prefix of a challenger's alias: ``challenger-<version>`` (one per version in shadow).
CHALLENGER_PREFIX = "challenger-"


def challenger_alias(version: str | int) -> str:
    return f"{CHALLENGER_PREFIX}{version}"


def is_challenger_alias(alias: str) -> bool:
    return alias.startswith(CHALLENGER_PREFIX)


class Stage(StrEnum):
    """Which gate decides: the challenger in shadow, or the new champion on probation."""

    PROMOTION = "promotion"
    PROBATION = "probation"


class Decision(StrEnum):
    """A gate's outcome (``gate_decisions.status``). ``WAIT`` means: look again later."""

    PROMOTE = "promote"
    REJECT = "reject"
    CONFIRM = "confirm"
    ROLLBACK = "rollback"
    WAIT = "wait"


class Action(StrEnum):
    """What a ``deployments`` row did to an alias."""

    BOOTSTRAP = "bootstrap"
    SHADOW = "shadow"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    RETIRE = "retire"
    CONFIRM = "confirm"
    #: A challenger's share of live traffic changed (the alias stays where it is).
    SAMPLE_RATE = "sample_rate"


class DeploymentState(StrEnum):
    """A ``deployments`` row is written as an intent first, then marked applied."""

    PENDING = "pending"
    APPLIED = "applied"


class ConsoleRole(StrEnum):
    """Who may do what in the model console and its API (each role may do what the ones before it
    may): read; upload, book and schedule one's own releases; approve, abort, roll back and change
    others' bookings."""

    VIEWER = "viewer"
    DATA_SCIENTIST = "data_scientist"
    RELEASE_MANAGER = "release_manager"

    def may(self, needed: ConsoleRole) -> bool:
        order = list(ConsoleRole)
        return order.index(self) >= order.index(needed)
