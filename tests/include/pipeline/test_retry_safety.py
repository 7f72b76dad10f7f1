"""Retry safety of the side-effecting release steps (issue #17, item 6).

For each step (deploy_shadow, promote, reject, confirm, rollback) and a point right after one of its
side effects, the step runs in a child process that SIGKILLs itself there
(``FRAUDOPS_CRASH_AT``, see fraudops.faults), then runs three more times normally, as a
retried or cleared Airflow task would. The registry aliases, the version tags the release sets, the
``deployments`` rows (alias, version, previous version, action, state) and the ``gate_decisions``
rows must equal those of one clean run of the same step on a fresh model.

Real MLflow server and BigQuery emulator (session fixtures). The scoring service is only observed by
these steps (``wait_for_service`` polls ``/version`` until it reports what the registry says), so a
small HTTP server answers ``/version`` from the registry aliases, as the real service's alias watcher
would after its next poll: the real service needs a warm feature store and a trained world (the
release e2e tests run it), too slow for a per-crash-point test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from bundles import tiny_bundle

pytestmark = [pytest.mark.integration, pytest.mark.retry_safety]

DRIVER = Path(__file__).with_name("retry_driver.py")
RETRIES = 3
#: Models whose name starts with this are refused as champion by the service view below.
REFUSING = "retry-refused"
REFUSAL = "LatencyBudgetError: single-row p99 latency 3.0756 ms exceeds the budget of 2 ms, on 5 loads"


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def registered_run(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One real bundle registered once; every test model's versions point at its run."""
    from mlflow.tracking import MlflowClient

    from fraudops.registry import register_artifact

    bundle = tiny_bundle(tmp_path_factory.mktemp("retry-bundle") / "bundle")
    reg = register_artifact(bundle, tracking_uri=mlflow_server, model_name="retry-base", experiment="retry")
    mv = MlflowClient(tracking_uri=mlflow_server).get_model_version("retry-base", reg.version)
    source = str(mv.source)
    # MLflow 3: a version's source is its logged model (models:/m-<id>), named again by model_id.
    model_id = source.removeprefix("models:/") if source.startswith("models:/m-") else ""
    return {"source": source, "run_id": str(reg.run_id), "model_id": model_id}


class _RegistryView(BaseHTTPRequestHandler):
    """``GET /m/<model>/version``: champion and running challengers as the registry aliases say."""

    tracking_uri = ""

    def do_GET(self) -> None:
        from mlflow.tracking import MlflowClient

        parts = self.path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "m" or parts[2] != "version":
            self.send_error(404)
            return
        aliases = MlflowClient(tracking_uri=self.tracking_uri).get_registered_model(parts[1]).aliases or {}
        champion, rejected = aliases.get("champion"), {}
        if parts[1].startswith(REFUSING) and champion not in (None, "1"):
            # A service that refused the new champion's bundle (as the real one does when its
            # load-time verification fails) and keeps serving v1.
            rejected = {f"champion@{champion}": REFUSAL}
            champion = "1"
        doc = {
            "champion": {"version": champion} if champion else None,
            "challengers": {
                a: {"version": v, "state": "running", "pid": 0}
                for a, v in aliases.items()
                if a.startswith("challenger-")
            },
            "rejected": rejected,
            "shadow_sample_rate": 1.0,
        }
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def service_view(mlflow_server: str) -> Iterator[str]:
    handler = type("View", (_RegistryView,), {"tracking_uri": mlflow_server})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


# -- world ----------------------------------------------------------------------------------------
def _model(
    registered_run: dict[str, str], uri: str, wh: Any, step: str, prefix: str = "retry", versions: int = 2
) -> str:
    """A fresh model with v1 champion and v2 challenger, in the state the step starts from."""
    from mlflow.tracking import MlflowClient

    from fraudops.registry import move_alias

    name = f"{prefix}-{step}-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(name)
    for _ in range(versions):
        client.create_model_version(
            name,
            registered_run["source"],
            run_id=registered_run["run_id"],
            model_id=registered_run["model_id"] or None,
        )

    def move(alias: str, version: str, action: str) -> None:
        move_alias(
            wh, model_name=name, alias=alias, version=version, action=action, actor="test", tracking_uri=uri
        )

    move("champion", "1", "bootstrap")
    if step in ("promote", "reject", "abort"):
        move("challenger-2", "2", "shadow")
    if step in ("confirm", "rollback"):
        move("challenger-1", "1", "shadow")
        move("champion", "2", "promote")
    return name


def _inputs(name: str, step: str, url: str) -> dict[str, Any]:
    import datetime as dt

    from fraudops.pipeline.release import ReleaseParams
    from fraudops.pipeline.release_types import (
        Candidate,
        DecisionSummary,
        ProbationOutcome,
        Promotion,
    )
    from fraudops.release.gates import GateDecision
    from fraudops.release.policy import DEFAULT_POLICY
    from fraudops.vocabulary import Decision, Stage

    params = ReleaseParams(model_name=name, version="2", scoring_url=f"{url}/m/{name}", deploy_timeout_s=30)
    cand = Candidate(
        model_name=name,
        version="2",
        champion="1",
        alias="challenger-2",
        params=params.to_dict(),
        policy=DEFAULT_POLICY.to_dict(),
        policy_fingerprint=DEFAULT_POLICY.fingerprint,
        min_scored_events=DEFAULT_POLICY.min_scored_events_floor,
        min_labeled_frauds=DEFAULT_POLICY.min_labeled_frauds_floor,
        label_maturity_hours=DEFAULT_POLICY.label_maturity_hours,
    )
    out: dict[str, Any] = {"candidate": cand.to_xcom()}
    if step == "abort":  # the gate passed; a release manager said Abort
        out["decision"] = DecisionSummary(
            status=Decision.PROMOTE, reason="all checks passed", decision_id=f"d3-{name}"
        ).to_xcom()
        out["approval"] = {"asked": True, "choice": "Abort", "by": "rita", "at": "2026-12-06T21:00:00+00:00"}
    if step == "promote":
        out["decision"] = DecisionSummary(
            status=Decision.PROMOTE,
            reason="all checks passed",
            decision_id=f"d1-{name}",
            served_threshold=0.3712,
            served_tie_share=0.42,
        ).to_xcom()
    if step == "reject":
        out["decision"] = DecisionSummary(
            status=Decision.REJECT, reason="ΔAP shown worse", decision_id=f"d2-{name}"
        ).to_xcom()
    if step in ("confirm", "rollback"):
        promoted = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
        out["promotion"] = Promotion(
            promoted_at=promoted, old_champion="1", old_alias="challenger-1"
        ).to_xcom()
        status = Decision.CONFIRM if step == "confirm" else Decision.ROLLBACK
        reason = "all probation checks passed" if step == "confirm" else "error rate increase 0.04 > 0.01"
        decision = GateDecision(
            status=status,
            stage=Stage.PROBATION,
            checks=(),
            reason=reason,
            policy_version=DEFAULT_POLICY.version,
            policy_fingerprint=DEFAULT_POLICY.fingerprint,
            evidence={"n_events": 500},
            deciding_check=None if step == "confirm" else "error_rate_increase",
        )
        out["outcome"] = ProbationOutcome(
            done=True, status=status, reason=reason, n_events=500, decision=decision.to_dict()
        ).to_xcom()
    return out


def _state(name: str, uri: str, wh: Any) -> dict[str, Any]:
    """Everything a release step changes, without ids, timestamps or the model name."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    tags = {
        str(mv.version): {
            k: t
            for k, t in (mv.tags or {}).items()
            if k in {"release_status", "served_threshold", "served_tie_share", "gate_status"}
        }
        for mv in client.search_model_versions(f"name = '{name}'")
    }
    deployments = wh.query(
        f"SELECT alias, model_version, previous_version, action, state FROM `{wh.table_id('deployments')}` "
        "WHERE model_name = @n",
        {"n": name},
    )
    decisions = wh.query(
        f"SELECT stage, status, reason, challenger_version, champion_version FROM "
        f"`{wh.table_id('gate_decisions')}` WHERE model_name = @n",
        {"n": name},
    )
    return {
        "aliases": dict(client.get_registered_model(name).aliases or {}),
        "tags": tags,
        "deployments": Counter(tuple(r.values()) for r in deployments),
        "gate_decisions": Counter(tuple(r.values()) for r in decisions),
    }


def _stable(result: Any) -> dict[str, Any]:
    volatile = {"deployed_at", "promoted_at", "seconds_to_running", "seconds_to_serving"}
    return {k: v for k, v in result.to_xcom().items() if k not in volatile}


def _kill_at(crash_at: str, step: str, run_key: str, run_id: str, inputs: dict[str, Any]) -> None:
    """Run ``step`` in a child that SIGKILLs itself at ``crash_at``, right after a side effect."""
    job = json.dumps({"step": step, "run_key": run_key, "run_id": run_id, "inputs": inputs})
    child = subprocess.run(
        [sys.executable, str(DRIVER), job],
        env={**os.environ, "FRAUDOPS_CRASH_AT": crash_at, "PYTHONPATH": str(DRIVER.parent)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert child.returncode == -9, f"not killed at {crash_at}: rc {child.returncode}\n{child.stderr[-3000:]}"


CASES = [
    ("deploy_shadow", "deploy_shadow:after_shadow_move"),
    ("promote", "shadow:challenger-1:after_move"),  # old champion in shadow, champion not moved yet
    ("promote", "promote:champion:after_intent"),  # intent recorded, alias not moved
    ("promote", "promote:after_champion_move"),
    ("reject", "reject:after_retire"),
    ("abort", "abort:after_recorded"),  # the abort recorded, the challenger still in shadow
    ("abort", "reject:after_retire"),
    ("confirm", "confirm:after_retire"),
    ("rollback", "rollback:after_champion_move"),
]


@pytest.mark.parametrize(("step", "crash_at"), CASES, ids=[c[1] for c in CASES])
def test_killed_step_retried_three_times_ends_like_one_clean_run(
    step: str,
    crash_at: str,
    fraudops_env: Path,
    registered_run: dict[str, str],
    service_view: str,
) -> None:
    from retry_driver import run_step

    from fraudops.config import load_settings
    from fraudops.warehouse import Warehouse

    settings = load_settings()
    uri = settings.mlflow.tracking_uri
    wh = Warehouse(settings.warehouse)

    clean_name = _model(registered_run, uri, wh, step)
    clean = run_step(
        step, f"fraud_release__clean-{clean_name}", "clean", _inputs(clean_name, step, service_view), wh
    )
    expected = _state(clean_name, uri, wh)

    name = _model(registered_run, uri, wh, step)
    run_key, run_id = f"fraud_release__crash-{name}", "crash"
    inputs = _inputs(name, step, service_view)
    _kill_at(crash_at, step, run_key, run_id, inputs)
    results = [run_step(step, run_key, run_id, inputs, wh) for _ in range(RETRIES)]

    assert _state(name, uri, wh) == expected
    assert all(_stable(r) == _stable(clean) for r in results), (clean, results)
    if step == "abort":
        (_stage, status, reason, *_), *_ = expected["gate_decisions"]
        assert status == "reject" and reason.startswith("aborted by release manager rita at "), reason
        assert expected["aliases"] == {"champion": "1"}, expected["aliases"]
    # Nothing is left pending, and each change has exactly one row.
    assert all(state == "applied" for (*_, state) in expected["deployments"])
    assert all(n == 1 for key, n in expected["deployments"].items() if key[3] != "bootstrap")


def test_promote_refused_by_the_service_puts_the_registry_back_and_fails_fast(
    fraudops_env: Path, registered_run: dict[str, str], service_view: str
) -> None:
    """The service refuses the new champion's bundle and keeps serving v1: ``promote`` fails at
    once with the service's reason (not after its deploy timeout) and moves the champion alias back
    to v1, so the registry says what production serves; a retry of the step ends the same way."""
    import time

    from retry_driver import run_step

    from fraudops.config import load_settings
    from fraudops.exceptions import PermanentError
    from fraudops.warehouse import Warehouse

    settings = load_settings()
    uri = settings.mlflow.tracking_uri
    wh = Warehouse(settings.warehouse)
    name = _model(registered_run, uri, wh, "promote", prefix=REFUSING)
    inputs = _inputs(name, "promote", service_view)  # deploy timeout 30 s
    states = []
    for attempt in range(2):
        t0 = time.monotonic()
        with pytest.raises(PermanentError, match=r"refused .* v2 as champion: "):
            run_step("promote", f"fraud_release__refused-{name}", "refused", inputs, wh)
        assert time.monotonic() - t0 < 20, f"attempt {attempt}: waited for the deploy timeout"
        states.append(_state(name, uri, wh))
    state = states[0]
    assert states[1] == state
    assert state["aliases"] == {"champion": "1"}, state["aliases"]
    assert state["tags"]["2"].get("release_status") == "refused_by_service", state["tags"]
    moves = {(alias, version, action) for (alias, version, _prev, action, _st) in state["deployments"]}
    assert ("champion", "2", "promote") in moves and ("champion", "1", "rollback") in moves, moves
    assert all(st == "applied" for (*_, st) in state["deployments"])


@pytest.mark.parametrize("crash_at", [None, "promote:after_withdrawn_decision", "reject:after_retire"])
def test_promote_against_a_champion_that_no_longer_serves_is_withdrawn(
    crash_at: str | None, fraudops_env: Path, registered_run: dict[str, str], service_view: str
) -> None:
    """The gate compared v2 with champion v1 and said promote; before ``promote`` ran, another
    release's rollback (or an operator) made v3 the champion. Promoting on that evidence would
    replace v3 with a model never compared with it: the step records a reject in place of the
    promotion (same decision id), retires challenger-2, leaves the champion alone and fails with
    the reason. Killed after any of those and retried, it ends the same, with one row each."""
    from mlflow.tracking import MlflowClient
    from retry_driver import run_step

    from fraudops.config import load_settings
    from fraudops.exceptions import PermanentError
    from fraudops.registry import move_alias
    from fraudops.release.gates import GateDecision
    from fraudops.release.policy import DEFAULT_POLICY
    from fraudops.release.recording import record_decision
    from fraudops.vocabulary import Decision, Stage
    from fraudops.warehouse import Warehouse

    settings = load_settings()
    uri = settings.mlflow.tracking_uri
    wh = Warehouse(settings.warehouse)
    name = _model(registered_run, uri, wh, "promote", prefix="retry-stale", versions=3)
    inputs = _inputs(name, "promote", service_view)
    passed = GateDecision(
        status=Decision.PROMOTE,
        stage=Stage.PROMOTION,
        checks=(),
        reason="all checks passed",
        policy_version=DEFAULT_POLICY.version,
        policy_fingerprint=DEFAULT_POLICY.fingerprint,
        evidence={"n_events": 900},
    )
    record_decision(
        wh,
        passed,
        model_name=name,
        challenger_version="2",
        champion_version="1",
        dag_run_id="stale",
        decision_id=f"d1-{name}",
    )
    move_alias(
        wh, model_name=name, alias="champion", version="3", action="rollback", actor="test", tracking_uri=uri
    )
    run_key = f"fraud_release__stale-{name}"
    if crash_at is not None:
        _kill_at(crash_at, "promote", run_key, "stale", inputs)
    states = []
    for _ in range(RETRIES if crash_at else 2):
        with pytest.raises(
            PermanentError, match=r"not promoted: champion moved from v1 to v3 during this release"
        ):
            run_step("promote", run_key, "stale", inputs, wh)
        states.append(_state(name, uri, wh))
    state = states[0]
    assert all(s == state for s in states)
    assert state["aliases"] == {"champion": "3"}, state["aliases"]
    assert state["tags"]["2"] == {"release_status": "rejected", "gate_status": "reject"}, state["tags"]
    # The gate's promotion stays on record; the reject that overruled it is a newer row of the run.
    assert all(n == 1 for n in state["gate_decisions"].values()), state["gate_decisions"]
    rows = {
        status: (stage, reason, ch, champ) for stage, status, reason, ch, champ in state["gate_decisions"]
    }
    assert set(rows) == {"promote", "reject"}, rows
    stage, reason, challenger, champion = rows["reject"]
    assert (stage, challenger, champion) == ("promotion", "2", "1")
    assert reason.startswith("champion moved from v1 to v3 during this release"), reason
    runs = wh.query(
        f"SELECT status, dag_run_id FROM `{wh.table_id('gate_decisions')}` WHERE model_name = @n "
        "ORDER BY decided_at",
        {"n": name},
    )
    assert [(r["status"], r["dag_run_id"]) for r in runs] == [("promote", "stale"), ("reject", "stale")]
    moves = {(a, v, act) for (a, v, _p, act, _st) in state["deployments"]}
    assert ("challenger-2", None, "retire") in moves and ("champion", "2", "promote") not in moves, moves
    assert all(n == 1 for key, n in state["deployments"].items() if key[3] != "bootstrap")
    assert all(st == "applied" for (*_, st) in state["deployments"])
    assert MlflowClient(tracking_uri=uri).get_model_version(name, "3").tags.get("release_status") is None


def test_gate_rejects_a_release_whose_champion_stopped_serving(
    fraudops_env: Path, registered_run: dict[str, str], service_view: str
) -> None:
    """The sensor ended the wait because the champion moved (v1 → v3): ``decide`` rejects at its
    first look, before reading any evidence (a comparison with v1 says nothing about replacing v3),
    records the reject under the run and tags the version; the DAG then takes the reject branch."""
    import datetime as dt

    from retry_driver import run_step

    from fraudops.config import load_settings
    from fraudops.pipeline import release
    from fraudops.pipeline.release_types import (
        Candidate,
        DriftReport,
        EvidenceWindow,
        ShadowDeployment,
        ShadowWait,
    )
    from fraudops.registry import move_alias
    from fraudops.warehouse import Warehouse

    settings = load_settings()
    uri = settings.mlflow.tracking_uri
    wh = Warehouse(settings.warehouse)
    name = _model(registered_run, uri, wh, "promote", prefix="retry-gate-moved", versions=3)
    move_alias(
        wh, model_name=name, alias="champion", version="3", action="rollback", actor="test", tracking_uri=uri
    )
    inputs = _inputs(name, "promote", service_view)
    cand = Candidate.from_xcom(inputs["candidate"])
    now = dt.datetime.now(dt.UTC)
    ctx = release.ReleaseContext(f"fraud_release__gate-{name}", warehouse=wh)
    decision = release.decide(
        ctx,
        release.params_of(cand),
        cand,
        ShadowDeployment(ok=True, deployed_at=now - dt.timedelta(minutes=10), alias="challenger-2"),
        ShadowWait(ready=False, reason="champion moved from v1 to v3 during the shadow test"),
        DriftReport(window=EvidenceWindow(served_until=now, label_as_of=now)),
        "gate-run",
    )
    assert decision.status == "reject" and decision.deciding_check == "incumbent_changed", decision
    assert decision.reason.startswith("champion moved from v1 to v3 during this release"), decision.reason
    assert decision.n_events is None  # no evidence was read
    state = _state(name, uri, wh)
    assert [(s, st, ch, champ) for s, st, _r, ch, champ in state["gate_decisions"]] == [
        ("promotion", "reject", "2", "1")
    ]
    assert state["tags"]["2"]["gate_status"] == "reject"
    # The reject branch then retires challenger-2 and leaves v3 serving.
    summary = {**inputs, "decision": decision.to_xcom()}
    run_step("reject", f"fraud_release__gate-{name}", "gate-run", summary, wh)
    assert _state(name, uri, wh)["aliases"] == {"champion": "3"}
