"""ShadowMetricsTrigger and ShadowMetricsSensor against the real BigQuery emulator.

The trigger is driven directly with asyncio (as the triggerer would), and the sensor runs deferred
inside a small DAG with ``dag.test()``, which in Airflow 3.3 runs the trigger inline in the same
process and resumes the task with ``execute_complete``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from airflow_dags import serialize_to_db
from fraudops_airflow.triggers import ShadowMetricsTrigger

MODEL = "fraud-detector"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pred(txn: str, served_at: dt.datetime, version: str = "7") -> dict[str, Any]:
    return {
        "transaction_id": txn,
        "model_name": MODEL,
        "model_version": version,
        "mode": "shadow",
        "score": 0.3,
        "latency_ms": 1.0,
        "event_time": served_at.isoformat(),
        "served_at": served_at.isoformat(),
    }


def _label(txn: str, fraud: bool, label_time: dt.datetime) -> dict[str, Any]:
    return {
        "transaction_id": txn,
        "event_time": (label_time - dt.timedelta(days=1)).isoformat(),
        "label_time": label_time.isoformat(),
        "is_fraud": fraud,
    }


def _insert(warehouse: Any, table: str, rows: list[dict[str, Any]]) -> None:
    errors = warehouse.client.insert_rows_json(warehouse.table_id(table), rows)
    assert not errors, errors


def _seed_ready(warehouse: Any, n: int = 4) -> None:
    """n scored shadow events, each twice (a replayed batch), all labelled, one fraud."""
    t = _now() - dt.timedelta(minutes=5)
    preds = [_pred(f"s{i}", t) for i in range(n)]
    _insert(warehouse, "predictions", preds + preds)
    _insert(warehouse, "labels", [_label(f"s{i}", i == 0, t) for i in range(n)])


def _connection_env(monkeypatch: pytest.MonkeyPatch, conn_id: str, cfg: Any, **extra: Any) -> None:
    """An Airflow connection in JSON form through the environment (no metadata DB needed)."""
    conn = {
        "conn_type": "generic",
        "host": cfg.endpoint,
        "schema": cfg.dataset,
        "extra": {"project": cfg.project, "location": cfg.location, **extra},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def _trigger(conn_id: str, *, mode: str = "shadow", **kwargs: Any) -> ShadowMetricsTrigger:
    from fraudops.release.progress import ProgressTarget, ShadowQuery

    query = ShadowQuery(
        model_name=MODEL, version="7", since=(_now() - dt.timedelta(hours=1)).isoformat(), mode=mode
    )
    target = ProgressTarget(min_scored=3, min_labeled=2, min_labeled_frauds=1)
    args: dict[str, Any] = {
        "query": query.to_dict(),
        "target": target.to_dict(),
        "warehouse_conn_id": conn_id,
        "poll_interval": 0.3,
    }
    args.update(kwargs)
    return ShadowMetricsTrigger(**args)


def test_trigger_serialize_round_trip() -> None:
    trigger = _trigger("wh_x", timeout_at="2026-12-01T00:00:00+00:00", mode="production", max_failed_polls=5)
    classpath, kwargs = trigger.serialize()
    assert classpath == "fraudops_airflow.triggers.ShadowMetricsTrigger"
    json.dumps(kwargs)  # primitives only: it is stored in the metadata DB
    from airflow.sdk._shared.module_loading import import_string

    again = import_string(classpath)(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert kwargs["timeout_at"] == "2026-12-01T00:00:00+00:00" and kwargs["max_failed_polls"] == 5
    assert kwargs["query"]["mode"] == "production" and kwargs["target"]["min_scored"] == 3


@pytest.mark.parametrize(
    ("query", "target", "message"),
    [
        ({"mode": "replay"}, {}, "mode must be 'shadow' or 'production'"),
        ({"since": "yesterday"}, {}, "Invalid isoformat string"),
        ({"maturity_hours": -1.0}, {}, "maturity_hours must be >= 0"),
        ({}, {"min_scored": -5}, "must be a non-negative integer"),
        ({}, {"min_matured_frauds": 10}, "need maturity_hours"),
        ({"unknown": 1}, {}, "unexpected keyword argument 'unknown'"),
    ],
)
def test_trigger_with_a_bad_spec_fires_one_error_event(
    query: dict[str, Any], target: dict[str, Any], message: str
) -> None:
    """A spec that cannot be waited on (hand-edited in the metadata DB, or from an older release)
    ends the wait with an error event naming the problem; nothing polls."""
    trigger = _trigger("wh_bad")
    _, kwargs = trigger.serialize()
    kwargs["query"] = {**kwargs["query"], **query}
    kwargs["target"] = {**kwargs["target"], **target}
    bad = ShadowMetricsTrigger(**kwargs)

    async def first() -> Any:
        return await asyncio.wait_for(anext(bad.run()), timeout=30)

    event = asyncio.run(first())
    assert event.payload["status"] == "error" and message in event.payload["message"], event.payload


@pytest.mark.integration
def test_trigger_waits_until_enough_labeled(warehouse: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _connection_env(monkeypatch, "wh_wait", warehouse.cfg)
    t = _now() - dt.timedelta(minutes=5)
    _insert(warehouse, "predictions", [_pred("a0", t), _pred("a1", t)])
    _insert(warehouse, "labels", [_label("a0", True, t)])

    async def scenario() -> Any:
        trigger = _trigger("wh_wait", timeout_at=(_now() + dt.timedelta(minutes=2)).isoformat())
        pending = asyncio.ensure_future(anext(trigger.run()))
        await asyncio.sleep(2.0)  # several polls: 2 scored, 1 labeled → not ready
        assert not pending.done()
        await asyncio.to_thread(_insert, warehouse, "predictions", [_pred("a2", t), _pred("a1", t)])
        await asyncio.to_thread(_insert, warehouse, "labels", [_label("a1", False, t)])
        return await asyncio.wait_for(pending, timeout=30)

    event = asyncio.run(scenario())
    assert event.payload["status"] == "success", event.payload
    progress = event.payload["progress"]
    assert (progress["scored"], progress["scored_with_label"], progress["labeled_frauds"]) == (3, 2, 1)


@pytest.mark.integration
def test_trigger_times_out_with_reason(warehouse: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _connection_env(monkeypatch, "wh_timeout", warehouse.cfg)
    _insert(warehouse, "predictions", [_pred("b0", _now() - dt.timedelta(minutes=1))])
    trigger = _trigger("wh_timeout", timeout_at=(_now() + dt.timedelta(seconds=1)).isoformat())

    async def first() -> Any:
        return await asyncio.wait_for(anext(trigger.run()), timeout=30)

    event = asyncio.run(first())
    assert event.payload["status"] == "timeout", event.payload
    assert (
        event.payload["reason"] == "scored 1 of 3 needed; labeled 0 of 2; labeled frauds 0 of 1; ETA unknown"
    )
    assert event.payload["eta_hours"] is None  # one event: no rate to extrapolate yet
    assert event.payload["progress"]["scored"] == 1


@pytest.mark.integration
def test_trigger_error_when_warehouse_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    from fraudops.config import WarehouseConfig
    from fraudops.stack.process import free_port

    dead = WarehouseConfig(project="p", dataset="d", endpoint=f"http://127.0.0.1:{free_port()}")
    _connection_env(monkeypatch, "wh_dead", dead, timeout_s=0.5)
    trigger = _trigger("wh_dead", poll_interval=0.1, max_failed_polls=2)

    async def first() -> Any:
        return await asyncio.wait_for(anext(trigger.run()), timeout=30)

    event = asyncio.run(first())
    assert event.payload["status"] == "error"
    assert "unavailable for 2 polls" in event.payload["message"]


def _champion_row(warehouse: Any, version: str, action: str = "rollback") -> None:
    """An audited champion move, as ``move_alias`` (another release's rollback, an operator) records it."""
    from fraudops.registry import record_deployment

    record_deployment(
        warehouse,
        model_name=MODEL,
        alias="champion",
        version=version,
        previous_version=None,
        action=action,
        actor="test",
        reason="test",
    )


@pytest.mark.integration
def test_trigger_ends_the_wait_when_the_champion_moves(
    warehouse: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release compares its challenger with the champion fixed when it started; once another
    champion serves (a rollback of an earlier release), more evidence cannot lead to a promotion,
    so the wait ends with ``incumbent_changed`` instead of holding the shadow slot until the target
    or the timeout."""
    _connection_env(monkeypatch, "wh_moved", warehouse.cfg)
    _champion_row(warehouse, "6", action="promote")
    _insert(warehouse, "predictions", [_pred("m0", _now() - dt.timedelta(minutes=1))])

    async def scenario() -> Any:
        trigger = _trigger(
            "wh_moved", champion="6", timeout_at=(_now() + dt.timedelta(minutes=2)).isoformat()
        )
        pending = asyncio.ensure_future(anext(trigger.run()))
        await asyncio.sleep(2.0)  # several polls with champion v6 still serving: not done
        assert not pending.done()
        await asyncio.to_thread(_champion_row, warehouse, "5")
        return await asyncio.wait_for(pending, timeout=30)

    event = asyncio.run(scenario())
    assert event.payload["status"] == "incumbent_changed", event.payload
    assert event.payload["champion"] == "5"
    assert event.payload["reason"] == "champion moved from v6 to v5 during the shadow test"
    assert event.payload["progress"]["scored"] == 1


@pytest.mark.integration
def test_trigger_without_audit_rows_or_champion_does_not_watch(
    warehouse: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No audited champion (a model set up outside the platform) or no ``champion`` given: the
    wait is about the evidence only and succeeds as before."""
    _connection_env(monkeypatch, "wh_unwatched", warehouse.cfg)
    _seed_ready(warehouse)

    async def first(**kwargs: Any) -> Any:
        return await asyncio.wait_for(anext(_trigger("wh_unwatched", **kwargs).run()), timeout=30)

    assert asyncio.run(first(champion="6")).payload["status"] == "success"
    _champion_row(warehouse, "5")
    assert asyncio.run(first()).payload["status"] == "success"
    assert asyncio.run(first(champion="6")).payload["status"] == "incumbent_changed"


# -- the sensor, deferred, in a DAG run by dag.test() ----------------------------------------------


def _run_sensor_dag(dag_id: str, tmp_path: Path, **sensor_kwargs: Any) -> tuple[Any, dict[str, Any]]:
    from airflow.sdk import DAG, task
    from fraudops_airflow.sensors import ShadowMetricsSensor

    with DAG(dag_id=dag_id, schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) as dag:
        wait = ShadowMetricsSensor(
            task_id="wait_for_shadow_metrics",
            model_name=MODEL,
            version="{{ params.version }}",
            since="{{ params.since }}",
            min_scored="{{ params.min_scored }}",
            min_labeled=2,
            min_labeled_frauds=1,
            poll_interval=0.3,
            deferrable=True,
            **sensor_kwargs,
        )

        @task
        def decide(result: dict[str, Any]) -> dict[str, Any]:
            return {"seen": result}

        waited: Any = wait.output  # an XComArg, the sensor's dict when decide runs
        wait >> decide(waited)

    serialize_to_db(dag, tmp_path)
    run = dag.test(
        run_conf={
            "version": "7",
            "since": (_now() - dt.timedelta(hours=1)).isoformat(),
            "min_scored": 3,
        }
    )
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "success", states
    seen = run.get_task_instance("decide").xcom_pull(task_ids="decide")
    return run, seen["seen"]


@pytest.fixture()
def env_warehouse(warehouse: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """No `fraudops_warehouse` connection in the test DB: the env settings point at this dataset."""
    monkeypatch.setenv("FRAUDOPS_BQ_PROJECT", warehouse.cfg.project)
    monkeypatch.setenv("FRAUDOPS_BQ_DATASET", warehouse.cfg.dataset)
    monkeypatch.setenv("FRAUDOPS_BQ_ENDPOINT", warehouse.cfg.endpoint)
    return warehouse


@pytest.mark.integration
def test_sensor_deferred_success_in_dag_test(airflow_db: Path, env_warehouse: Any, tmp_path: Path) -> None:
    _seed_ready(env_warehouse)
    _, result = _run_sensor_dag("shadow_sensor_success", tmp_path, timeout=60)
    assert result["ready"] is True, result
    assert (result["progress"]["scored"], result["progress"]["scored_with_label"]) == (4, 4)


@pytest.mark.integration
def test_sensor_soft_timeout_in_dag_test(airflow_db: Path, env_warehouse: Any, tmp_path: Path) -> None:
    _insert(env_warehouse, "predictions", [_pred("c0", _now() - dt.timedelta(minutes=1))])
    _, result = _run_sensor_dag("shadow_sensor_soft_timeout", tmp_path, timeout=1.5)
    assert result["ready"] is False
    assert result["reason"].startswith("timeout: scored 1 of 3 needed"), result
    assert result["progress"]["scored"] == 1


# -- execute_complete and poke(), without a DAG run -------------------------------------------------


def _sensor(**kwargs: Any) -> Any:
    from fraudops_airflow.sensors import ShadowMetricsSensor

    args: dict[str, Any] = {
        "task_id": "wait_for_shadow_metrics",
        "model_name": MODEL,
        "version": "7",
        "since": _now() - dt.timedelta(hours=1),
        "min_scored": 3,
        "min_labeled": 2,
        "min_labeled_frauds": 1,
    }
    args.update(kwargs)
    return ShadowMetricsSensor(**args)


def test_execute_complete_contract() -> None:
    from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout

    sensor = _sensor()
    assert set(sensor.template_fields) >= {"model_name", "version", "since", "min_scored"}
    with pytest.raises(AirflowException, match="boom"):
        sensor.execute_complete({}, {"status": "error", "message": "boom"})
    with pytest.raises(AirflowException):
        sensor.execute_complete({}, None)
    ok = sensor.execute_complete({}, {"status": "success", "progress": {"scored": 3}, "reason": "r"})
    assert ok["ready"] is True and ok["progress"] == {"scored": 3}
    soft = sensor.execute_complete(
        {}, {"status": "timeout", "progress": None, "reason": "only 1 of 3 scored"}
    )
    assert soft == {
        "ready": False,
        "progress": None,
        "reason": "timeout: only 1 of 3 scored",
        "eta_hours": None,
        "incumbent_changed": False,
        "early_reject": None,
    }
    moved = sensor.execute_complete(
        {}, {"status": "incumbent_changed", "champion": "5", "progress": None, "reason": "champion moved"}
    )
    assert moved == {
        "ready": False,
        "progress": None,
        "reason": "champion moved",
        "eta_hours": None,
        "incumbent_changed": True,
        "early_reject": None,
    }
    with pytest.raises(AirflowSensorTimeout, match="only 1 of 3 scored"):
        _sensor(soft_timeout=False).execute_complete(
            {}, {"status": "timeout", "reason": "only 1 of 3 scored", "timeout_at": "x"}
        )


@pytest.mark.integration
def test_poke_non_deferrable(env_warehouse: Any) -> None:
    sensor = _sensor(deferrable=False)
    first = sensor.poke({})
    assert not first and first.xcom_value is None
    _seed_ready(env_warehouse)
    done = sensor.poke({})
    assert done.is_done and done.xcom_value["ready"] is True
    assert done.xcom_value["progress"]["labeled_frauds"] == 1


@pytest.mark.integration
def test_poke_stops_when_the_champion_moves(env_warehouse: Any) -> None:
    sensor = _sensor(deferrable=False, champion="6")
    _champion_row(env_warehouse, "6", action="promote")
    assert not sensor.poke({})
    _champion_row(env_warehouse, "5")
    done = sensor.poke({})
    assert done.is_done and done.xcom_value["ready"] is False
    assert done.xcom_value["reason"] == "champion moved from v6 to v5 during the shadow test"
    assert done.xcom_value["incumbent_changed"] is True


def test_sensor_derives_the_wait_from_the_release_candidate() -> None:
    """In the release DAG the sensor gets the typed candidate and deployment, no Jinja rules."""
    from fraudops_airflow.sensors import ShadowMetricsSensor

    from fraudops.pipeline.release import ReleaseParams
    from fraudops.pipeline.release_types import Candidate, ShadowDeployment

    deployed_at = _now() - dt.timedelta(hours=2)
    cand = Candidate(
        model_name=MODEL,
        version="7",
        champion="6",
        alias="challenger-7",
        params=ReleaseParams(shadow_timeout_minutes=90, poll_interval_s=7).to_dict(),
        policy={},
        policy_fingerprint="f",
        min_scored_events=5000,
        min_labeled_frauds=120,
        planned_scored_events=20000,
        planned_labeled_frauds=400,
        label_maturity_hours=36.5,
    )
    deploy = ShadowDeployment(ok=True, deployed_at=deployed_at, alias="challenger-7")
    sensor = ShadowMetricsSensor(
        task_id="wait_for_shadow_metrics", candidate=cand.to_xcom(), deployment=deploy.to_xcom()
    )
    sensor._from_release()
    sensor._apply_overrides()
    target = sensor._target()
    query = sensor._query(target)
    assert (query.model_name, query.version, query.mode) == (MODEL, "7", "shadow")
    assert query.since == deployed_at.isoformat()
    assert (target.min_scored, target.min_matured_frauds, target.min_labeled) == (5000, 120, 0)
    assert query.maturity_hours == 36.5
    assert sensor.timeout == 90 * 60.0 and sensor.poke_interval == 7.0
    assert sensor.champion == "6"  # the wait ends early once v6 no longer serves


def _release_sensor(**kwargs: Any) -> Any:
    from fraudops_airflow.sensors import ShadowMetricsSensor

    from fraudops.pipeline.release import ReleaseParams
    from fraudops.pipeline.release_types import Candidate, ShadowDeployment

    cand = Candidate(
        model_name=MODEL,
        version="7",
        champion="6",
        alias="challenger-7",
        params=ReleaseParams(shadow_timeout_minutes=90, poll_interval_s=7).to_dict(),
        policy={"min_scored_events_floor": 2000},
        policy_fingerprint="f",
        min_scored_events=5000,
        min_labeled_frauds=120,
        label_maturity_hours=36.5,
    )
    deploy = ShadowDeployment(ok=True, deployed_at=_now() - dt.timedelta(hours=2), alias="challenger-7")
    return ShadowMetricsSensor(
        task_id="wait_for_shadow_metrics", candidate=cand.to_xcom(), deployment=deploy.to_xcom(), **kwargs
    )


def test_the_release_sensor_looks_once_at_the_gates_floor_then_waits_for_labels(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two deferrals: to the gate's floor of events sent (``min_seen``), where the early look runs in
    the worker, then to the full target with the same deadline. A broken challenger ends the wait
    there (``early_reject``); a healthy one waits for matured labels; a timeout at the floor is the
    usual soft timeout. Each resume is a fresh operator, as Airflow builds it."""
    from airflow.sdk.exceptions import TaskDeferred

    from fraudops.pipeline import release
    from fraudops.release.progress import ProgressTarget

    monkeypatch.setenv("FRAUDOPS_STATE_DIR", str(tmp_path))
    looks: list[str] = []
    verdict: dict[str, tuple[str, str] | None] = {"v": None}

    def early_look(ctx: Any, cand: Any, deploy: Any) -> tuple[str, str] | None:
        looks.append(f"{ctx.run_key} v{cand.version} since {deploy.since().isoformat()}")
        return verdict["v"]

    monkeypatch.setattr(release, "early_look", early_look)
    context: Any = {"run_id": "manual__x"}
    with pytest.raises(TaskDeferred) as first:
        _release_sensor().execute(context)
    assert first.value.method_name == "early_look_complete"
    trigger = first.value.trigger
    assert ProgressTarget.from_dict(trigger.target) == ProgressTarget(min_seen=2000)
    assert trigger.champion == "6" and trigger.poll_interval == 7.0
    assert first.value.kwargs is not None
    deadline = first.value.kwargs["timeout_at"]
    assert trigger.timeout_at == deadline
    assert dt.timedelta(minutes=89) < dt.datetime.fromisoformat(deadline) - _now() <= dt.timedelta(minutes=90)
    assert not looks  # nothing looked at before the floor

    at_floor = {"status": "success", "progress": {"scored": 1990, "errors": 10}, "reason": "sent 2,000"}
    with pytest.raises(TaskDeferred) as second:
        _release_sensor().early_look_complete(context, at_floor, timeout_at=deadline)
    assert len(looks) == 1 and looks[0].startswith("adhoc_airflow__manual__x v7 since ")  # no DAG here
    assert second.value.method_name == "execute_complete"
    full = ProgressTarget.from_dict(second.value.trigger.target)
    assert (full.min_scored, full.min_matured_frauds, full.min_seen) == (5000, 120, 0)
    assert second.value.trigger.timeout_at == deadline  # the same deadline, not a fresh one

    verdict["v"] = ("constant_scores", "constant scores (1 distinct values < 10)")
    out = _release_sensor().early_look_complete(context, at_floor, timeout_at=deadline)
    assert out["ready"] is False and out["early_reject"] == "constant_scores"
    assert out["reason"] == "constant scores (1 distinct values < 10)"
    assert out["progress"] == at_floor["progress"] and len(looks) == 2

    timed_out = {"status": "timeout", "progress": None, "reason": "sent 40 of 2,000 needed"}
    out = _release_sensor().early_look_complete(context, timed_out, timeout_at=deadline)
    assert out["ready"] is False and out["reason"] == "timeout: sent 40 of 2,000 needed"
    assert out["early_reject"] is None and len(looks) == 2
    # without a candidate (other callers) or with early_look=False: one deferral, as before
    with pytest.raises(TaskDeferred) as only:
        _release_sensor(early_look=False).execute(context)
    assert only.value.method_name == "execute_complete"
