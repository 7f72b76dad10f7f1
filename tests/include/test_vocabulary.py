"""One vocabulary: enum members are the strings the warehouse, MLflow and XCom keep."""

from __future__ import annotations

import json
from typing import Any

from fraudops.vocabulary import (
    Action,
    Alias,
    Decision,
    DeploymentState,
    Stage,
    challenger_alias,
    is_challenger_alias,
)


def _as_str(value: str) -> str:
    return value


def test_members_are_the_stored_strings() -> None:
    assert (
        _as_str(Decision.PROMOTE) == "promote"
        and f"{Decision.ROLLBACK}" == "rollback"
        and str(Stage.PROBATION) == "probation"
    )
    assert (
        json.dumps({"status": Decision.WAIT, "alias": Alias.CHAMPION})
        == '{"status": "wait", "alias": "champion"}'
    )
    assert [a.value for a in Action] == [
        "bootstrap",
        "shadow",
        "promote",
        "rollback",
        "retire",
        "confirm",
        "sample_rate",
    ]
    assert [s.value for s in DeploymentState] == ["pending", "applied"]
    assert challenger_alias(7) == "challenger-7" and is_challenger_alias("challenger-7")
    assert not is_challenger_alias(Alias.CHAMPION)


def test_xcom_stores_the_value() -> None:
    from airflow.sdk.serde import deserialize, serialize

    from fraudops.pipeline.release_types import ProbationOutcome
    from fraudops.registry import ACTIONS

    stored: Any = serialize(Decision.CONFIRM)
    assert stored == "confirm" and deserialize(stored) == "confirm"
    assert tuple(a.value for a in Action) == ACTIONS
    outcome = ProbationOutcome.model_validate(
        {"done": True, "status": "rollback", "reason": "r", "decision": {}}
    )
    assert outcome.status is Decision.ROLLBACK
    assert ProbationOutcome.from_xcom(json.loads(json.dumps(outcome.to_xcom()))).status is Decision.ROLLBACK
