"""Release approval (issue #19): Airflow 3's human-in-the-loop request after a passed gate, answered
in the console (a real headless Chromium) or Airflow's own API, with the role enforced by both.

A DAG shaped like fraud_release's tail (a candidate, a gate decision, ``approve_release``, promote /
reject) runs with ``dag.test()``, which parks the approval task in ``awaiting_input`` and waits for
an answer recorded by an API server sharing its metadata database: a real ``airflow api-server``
with the fraudops plugin and the simple auth manager's users (rita: op = release manager, dana: user
= data scientist, vic: viewer). dana gets 403 from the console (clicking Approve) and from Airflow's
HITL API; rita's click in the console resumes the run on the branch she chose, and the reject step
records who aborted. Screenshots go to ``test-artifacts/console/``.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow_dags import serialize_to_db
from airflow_ui import USERS, airflow_token, bearer, sign_in

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"


def _candidate(requires_approval: bool = True) -> Any:
    from fraudops.pipeline.release import ReleaseParams
    from fraudops.pipeline.release_types import Candidate
    from fraudops.release.policy import DEFAULT_POLICY

    params = ReleaseParams(model_name="approval-model", version="2", requires_approval=requires_approval)
    return Candidate(
        model_name="approval-model",
        version="2",
        champion="1",
        alias="challenger-2",
        params=params.to_dict(),
        policy=DEFAULT_POLICY.to_dict(),
        policy_fingerprint=DEFAULT_POLICY.fingerprint,
        min_scored_events=5000,
        min_labeled_frauds=20,
        label_maturity_hours=36.0,
    )


def _gate(status: str = "promote") -> Any:
    from fraudops.pipeline.release_types import DecisionSummary
    from fraudops.vocabulary import Decision

    return DecisionSummary(
        status=Decision(status),
        reason="all checks passed: ΔAP lower bound -0.05 > non-inferiority margin -0.1",
        decision_id="gate-1",
        n_events=9000,
        n_evaluable_frauds=120,
        quality={"ap_delta": 0.11, "capture_candidate": 0.62, "capture_incumbent": 0.51},
    )


def _dag(dag_id: str, cand: Any, gate: Any, folder: Path) -> Any:
    from airflow.sdk import DAG, task
    from fraudops_airflow.approval import ReleaseApprovalOperator

    with DAG(dag_id, schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), catchup=False) as dag:

        @task
        def resolve() -> dict[str, Any]:
            return dict(cand.to_xcom())

        @task
        def decide_promotion(ti: Any = None) -> str:
            ti.xcom_push(key="decision", value=gate.to_xcom())
            return str(gate.status)

        @task
        def promote(ti: Any = None) -> Any:
            return ti.xcom_pull(task_ids="approve_release", key="approval")

        @task
        def reject(ti: Any = None) -> Any:
            return ti.xcom_pull(task_ids="approve_release", key="approval")

        c: Any = resolve()
        approval = ReleaseApprovalOperator(task_id="approve_release", candidate=c)
        decide_promotion() >> approval >> [promote(), reject()]
    serialize_to_db(dag, folder)
    return dag


def _token(server: dict[str, Any], user: str) -> dict[str, str]:
    headers: dict[str, str] = bearer(airflow_token(server["url"], user, server["passwords"][user]))
    return headers


def _answer_in_background(
    work: Any, server: dict[str, Any], dag_id: str
) -> tuple[threading.Thread, dict[str, Any]]:
    """``work(out)`` in a thread (the people answering); dag.test() must run in the main thread
    (task runners install signal handlers). Should ``work`` fail, rita aborts through Airflow's
    API directly, so dag.test() ends and the test reports the failure instead of hanging."""
    out: dict[str, Any] = {}

    def unblock() -> None:
        headers = _token(server, "rita")
        for _ in range(60):
            r = httpx.get(
                f"{server['url']}/api/v2/dags/{dag_id}/dagRuns/~/hitlDetails", headers=headers, timeout=30
            )
            for d in r.json().get("hitl_details", []) if r.status_code == 200 else []:
                run_id = d["task_instance"]["dag_run_id"]
                httpx.patch(
                    f"{server['url']}/api/v2/dags/{dag_id}/dagRuns/{run_id}"
                    "/taskInstances/approve_release/-1/hitlDetails",
                    json={"chosen_options": ["Abort"], "params_input": {}},
                    headers=headers,
                    timeout=30,
                )
                return
            time.sleep(2)

    out["unblock"] = unblock

    def run() -> None:
        try:
            work(out)
        except BaseException as err:  # reported by the test
            out["error"] = err
            out.get("unblock", lambda: None)()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _pending(server: dict[str, Any], headers: dict[str, str], dag_id: str) -> dict[str, Any]:
    """The console's view of the approval request of ``dag_id``, once it exists."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r = httpx.get(f"{server['url']}/fraudops/api/approvals", headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        mine = [a for a in r.json() if a["dag_id"] == dag_id]
        if mine:
            return dict(mine[0])
        time.sleep(1)
    raise AssertionError(f"no approval request for {dag_id}")


def _states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _click_answer(driver: Any, url: str, user: str, password: str, run_id: str, choice: str) -> str:
    """Sign in as ``user``, click ``choice`` on the request of ``run_id``; returns the HTTP status
    the console answered with (the page's outcome line)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    sign_in(driver, url, user, password)
    css = f'#approvals button[data-run="{run_id}"][data-choice="{choice}"]'
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, css))
    driver.find_element(By.CSS_SELECTOR, css).click()
    WebDriverWait(driver, 60).until(
        lambda d: d.find_element(By.ID, "approval-outcome").get_attribute("data-status") not in (None, "")
    )
    return str(driver.find_element(By.ID, "approval-outcome").get_attribute("data-status"))


def test_a_release_manager_approves_in_the_console_and_a_data_scientist_is_refused_everywhere(
    fraudops_env: Path,
    api_server: dict[str, Any],
    browser: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", USERS)
    monkeypatch.delenv("FRAUDOPS_RELEASE_MANAGERS", raising=False)
    dag_id = f"approval_probe_{int(time.time())}"
    dag = _dag(dag_id, _candidate(), _gate(), tmp_path)
    url, pw = api_server["url"], api_server["passwords"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def people(out: dict[str, Any]) -> None:
        rita, dana, vic = (_token(api_server, u) for u in ("rita", "dana", "vic"))
        out["ask"] = ask = _pending(api_server, vic, dag_id)  # a viewer sees the request
        run_id = ask["run_id"]
        path = f"{url}/fraudops/api/approvals/{dag_id}/{run_id}"
        # A data scientist: refused by the console (in the browser and its API) and by Airflow's
        # own HITL API (not an assignee).
        out["dana_click"] = _click_answer(browser, url, "dana", pw["dana"], run_id, "Approve")
        out["dana_says"] = browser.find_element(By.ID, "approval-outcome").text
        browser.save_screenshot(str(ARTIFACTS / "04-data-scientist-approve-forbidden.png"))
        out["dana_console"] = httpx.post(path, json={"choice": "Approve"}, headers=dana, timeout=30)
        hitl = f"{url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/approve_release/-1/hitlDetails"
        body = {"chosen_options": ["Approve"], "params_input": {}}
        out["dana_airflow"] = httpx.patch(hitl, json=body, headers=dana, timeout=30)
        # A bad answer from a release manager is refused before it reaches Airflow.
        out["rita_bad"] = httpx.post(path, json={"choice": "Maybe"}, headers=rita, timeout=30)
        out["rita_garbage"] = httpx.post(
            path, content=b"\x00{", headers={**rita, "Content-Type": "application/json"}, timeout=30
        )
        out["rita_click"] = _click_answer(browser, url, "rita", pw["rita"], run_id, "Approve")
        out["rita_says"] = browser.find_element(By.ID, "approval-outcome").text
        browser.save_screenshot(str(ARTIFACTS / "05-release-manager-approved.png"))
        # Answered once: a second answer is Airflow's 409.
        out["rita_again"] = httpx.post(path, json={"choice": "Abort"}, headers=rita, timeout=30)

    thread, out = _answer_in_background(people, api_server, dag_id)
    run = dag.test()
    thread.join(timeout=60)
    assert "error" not in out, out
    ask = out["ask"]
    assert ask["subject"] == "Promote approval-model v2 over champion v1?", ask
    assert "ΔAP +0.1100" in ask["body"] and "all checks passed" in ask["body"], ask["body"]
    assert ask["assigned"] == ["rita"] and not ask["answered"], ask
    assert out["dana_click"] == "403" and "approve needs release_manager" in out["dana_says"], out
    r = out["dana_console"]
    assert r.status_code == 403 and "approve needs release_manager" in r.json()["detail"], r.text
    r = out["dana_airflow"]
    assert r.status_code == 403 and "not a respondent" in r.text, r.text
    assert out["rita_bad"].status_code == 422, out["rita_bad"].text
    r = out["rita_garbage"]
    assert r.status_code == 422 and "choice must be" in r.text, r.text
    assert out["rita_click"] == "200" and "Approve recorded" in out["rita_says"], out
    assert "(by rita)" in out["rita_says"], out["rita_says"]
    assert out["rita_again"].status_code == 409, out["rita_again"].text

    states = _states(run)
    assert states["promote"] == "success" and states["reject"] == "skipped", states
    answer = run.get_task_instance("promote").xcom_pull(task_ids="promote")
    assert answer["choice"] == "Approve" and answer["by"] == "rita" and answer["asked"] is True, answer

    from fraudops.config import load_settings
    from fraudops.intake.audit import recent_actions
    from fraudops.warehouse import Warehouse

    acts = [
        (a["actor"], a["action"], a["outcome"])
        for a in recent_actions(Warehouse(load_settings().warehouse))
        if (a.get("target") or "").startswith(dag_id)
    ]
    assert acts.count(("dana", "approve", "forbidden")) == 2 and ("rita", "approve", "ok") in acts, acts


def test_abort_in_the_console_takes_the_reject_branch_with_who_aborted(
    fraudops_env: Path, api_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", USERS)
    dag_id = f"approval_abort_{int(time.time())}"
    dag = _dag(dag_id, _candidate(), _gate(), tmp_path)

    def rita(out: dict[str, Any]) -> None:
        headers = _token(api_server, "rita")
        ask = _pending(api_server, headers, dag_id)
        out["answer"] = httpx.post(
            f"{api_server['url']}/fraudops/api/approvals/{dag_id}/{ask['run_id']}",
            json={"choice": "Abort"},
            headers=headers,
            timeout=30,
        )

    thread, out = _answer_in_background(rita, api_server, dag_id)
    run = dag.test()
    thread.join(timeout=60)
    assert "error" not in out, out
    assert out["answer"].status_code == 200, out["answer"].text
    states = _states(run)
    assert states["reject"] == "success" and states["promote"] == "skipped", states
    answer = run.get_task_instance("reject").xcom_pull(task_ids="reject")
    assert (answer["choice"], answer["by"]) == ("Abort", "rita"), answer


@pytest.mark.parametrize(
    ("requires", "status", "branch"),
    [(False, "promote", "promote"), (True, "reject", "reject"), (False, "reject", "reject")],
)
def test_no_request_when_the_release_does_not_ask_or_the_gate_rejected(
    airflow_db: Path, requires: bool, status: str, branch: str, tmp_path: Path
) -> None:
    """Only a passed gate of a release that asks for approval waits for a person; everything else
    branches at once, as fraud_release did before approvals existed."""
    dag = _dag(f"approval_pass_{requires}_{status}", _candidate(requires), _gate(status), tmp_path)
    run = dag.test()
    states = _states(run)
    other = "reject" if branch == "promote" else "promote"
    assert states[branch] == "success" and states[other] == "skipped", states
    answer = run.get_task_instance(branch).xcom_pull(task_ids=branch)
    assert answer["asked"] is False, answer


def test_no_answer_by_the_deadline_is_an_abort_by_nobody() -> None:
    """The event Airflow's scheduler resumes the task with when the approval timeout passes (the
    request's default, Abort, with no user): recorded as not approved, branch reject."""
    from fraudops_airflow.approval import ABORT, ReleaseApprovalOperator

    op = ReleaseApprovalOperator(task_id="approve_release", candidate=None)
    pushed: dict[str, Any] = {}
    branched: list[Any] = []

    class TI:
        def xcom_push(self, key: str, value: Any) -> None:
            pushed[key] = value

    op.do_branch = lambda context, branches_to_execute: branched.append(branches_to_execute)  # type: ignore[method-assign]
    now = dt.datetime.now(dt.UTC)
    context: Any = {"ti": TI()}
    op.execute_complete(
        context,
        {"chosen_options": [ABORT], "params_input": {}, "responded_at": now, "responded_by_user": None},
    )
    assert branched == [["reject"]]  # the mapped option, as HITLBranchOperator branches
    assert pushed["approval"]["choice"] == ABORT and pushed["approval"]["by"] is None
    assert pushed["approval"]["why"] == "no release manager answered within the approval timeout"


def test_rollback_from_the_console_is_for_release_managers_and_says_when_it_cannot_act(
    fraudops_env: Path, api_server: dict[str, Any]
) -> None:
    """A data scientist's rollback is refused (403) before anything moves; a release manager's goes
    to the scoring service's control API, and with no service answering the console says so (503)
    instead of pretending. Both are audited. (The rollback itself is the control API's ``POST
    /deploy`` rollback, tested with the scoring service.)"""
    from fraudops.config import load_settings
    from fraudops.intake.audit import recent_actions
    from fraudops.warehouse import Warehouse

    url = f"{api_server['url']}/fraudops/api/rollback"
    r = httpx.post(url, json={"reason": "alerts"}, headers=_token(api_server, "dana"), timeout=60)
    assert r.status_code == 403 and "rollback needs release_manager" in r.json()["detail"], r.text
    r = httpx.post(url, json={"reason": "alerts"}, headers=_token(api_server, "rita"), timeout=60)
    assert r.status_code == 503 and "scoring service unreachable" in r.json()["detail"], r.text
    acts = [
        (a["actor"], a["action"], a["outcome"]) for a in recent_actions(Warehouse(load_settings().warehouse))
    ]
    assert ("dana", "rollback", "forbidden") in acts and ("rita", "rollback", "error") in acts, acts
