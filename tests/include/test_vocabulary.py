"""One vocabulary: enum members are the strings the warehouse, MLflow and XCom keep."""

from __future__ import annotations

import json

from fraudops.vocabulary import (
    Action,
    Alias,
    Decision,
    DeploymentState,
    Stage,
    challenger_alias,
    is_challenger_alias,
)


def test_members_are_the_stored_strings() -> None:
    assert (
        Decision.PROMOTE == "promote"
        and f"{Decision.ROLLBACK}" == "rollback"
        and str(Stage.PROBATION) == "probation"
    )
    assert (
        json.dumps({"status": Decision.WAIT, "alias": Alias.CHAMPION})
        == '{"status": "wait", "alias": "champion"}'
    )
    assert [a.value for a in Action] == ["bootstrap", "shadow", "promote", "rollback", "retire", "confirm"]
    assert [s.value for s in DeploymentState] == ["pending", "applied"]
    assert challenger_alias(7) == "challenger-7" and is_challenger_alias("challenger-7")
    assert not is_challenger_alias(Alias.CHAMPION)


def test_xcom_stores_the_value() -> None:
    from airflow.sdk.serde import deserialize, serialize

    from fraudops.pipeline.release_types import ProbationOutcome
    from fraudops.registry import ACTIONS

    assert serialize(Decision.CONFIRM) == "confirm" and deserialize(serialize(Decision.CONFIRM)) == "confirm"
    assert tuple(a.value for a in Action) == ACTIONS
    outcome = ProbationOutcome(done=True, status="rollback", reason="r", decision={})
    assert outcome.status is Decision.ROLLBACK
    assert ProbationOutcome.from_xcom(json.loads(json.dumps(outcome.to_xcom()))).status is Decision.ROLLBACK
