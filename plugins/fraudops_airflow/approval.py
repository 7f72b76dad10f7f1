"""The release's go/no-go after the gate: Airflow 3's human-in-the-loop branch, where the release asks.

``ReleaseApprovalOperator`` (task ``approve_release`` of ``fraud_release``) follows
``decide_promotion``:

* the gate rejected → branch to ``reject`` at once;
* the gate passed and the release does not ask for approval (``requires_approval`` false, the
  default) → branch to ``promote`` at once;
* the gate passed and the release asks for approval → a human-in-the-loop request (Airflow's
  ``HITLBranchOperator``: the task waits in ``awaiting_input``, holding no worker slot) with the
  evidence as its body, assigned to the release managers. *Approve* → ``promote``; *Abort* →
  ``reject``. No answer within ``approval_timeout_minutes`` → ``reject``. Who answered, when and how
  is pushed as the ``approval`` XCom (the reject step records an abort with its actor).

The request shows in Airflow (Browse → Required Actions, the HITL REST API) and in the fraudops
console; Airflow itself refuses an answer from anyone not assigned (403), so the role holds whichever
way the answer comes in.

Release managers are ``FRAUDOPS_RELEASE_MANAGERS`` (comma-separated Airflow user ids) or, when unset,
the ``op`` and ``admin`` users of the simple auth manager (``[core] simple_auth_manager_users``).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import HITLBranchOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

APPROVE = "Approve"
ABORT = "Abort"
#: The XCom key under which the answer (or the pass-through) is recorded.
APPROVAL_KEY = "approval"


def release_managers() -> list[str]:
    """Airflow user ids that may answer a release's approval request (see the module doc)."""
    explicit = os.environ.get("FRAUDOPS_RELEASE_MANAGERS", "").strip()
    if explicit:
        return [u.strip() for u in explicit.split(",") if u.strip()]
    from airflow.configuration import conf

    users = conf.get("core", "simple_auth_manager_users", fallback="") or ""
    out = []
    for entry in users.split(","):
        name, _, role = entry.strip().partition(":")
        if name and role.strip().lower() in ("op", "admin"):
            out.append(name.strip())
    return out


def evidence_body(decision: dict[str, Any], cand: Any) -> str:
    """The request's body (markdown): what the gate saw, for the person who decides."""
    quality = decision.get("quality") or {}

    def num(key: str, fmt: str = "{:+.4f}") -> str:
        value = quality.get(key)
        return fmt.format(value) if isinstance(value, int | float) else "n/a"

    lines = [
        f"The gate passed **{cand.model_name} v{cand.version}** against champion **v{cand.champion}**.",
        "",
        f"- gate: {decision.get('reason', '')}",
        f"- events scored in shadow: {decision.get('n_events') or 'n/a'}; "
        f"matured labeled frauds: {decision.get('n_evaluable_frauds') or 'n/a'}",
        f"- ΔAP {num('ap_delta')}, capture {num('capture_candidate', '{:.3f}')} vs "
        f"{num('capture_incumbent', '{:.3f}')}, FPR {num('fpr_candidate', '{:.4f}')} vs "
        f"{num('fpr_incumbent', '{:.4f}')}",
        "",
        "**Approve** promotes it (the old champion keeps scoring in shadow for the probation); "
        "**Abort** rejects it and retires the challenger.",
    ]
    return "\n".join(lines)


class ReleaseApprovalOperator(HITLBranchOperator):
    """Pass the gate's decision on, or ask a release manager first (see the module doc).

    :param candidate: the release's ``Candidate`` (XCom of ``resolve``). (templated)
    :param decision_task_id: the task whose ``decision`` XCom is the gate's ``DecisionSummary``.
    """

    template_fields: Sequence[str] = (*HITLBranchOperator.template_fields, "candidate")
    ui_color = "#fde9c9"

    def __init__(
        self, *, candidate: Any = None, decision_task_id: str = "decide_promotion", **kwargs: Any
    ) -> None:
        super().__init__(
            subject="Release approval",
            options=[APPROVE, ABORT],
            options_mapping={APPROVE: "promote", ABORT: "reject"},
            # No answer by the deadline: Airflow's scheduler answers Abort (nobody named).
            defaults=[ABORT],
            multiple=False,
            **kwargs,
        )
        self.candidate = candidate
        self.decision_task_id = decision_task_id

    def _pass(self, context: Context, branch: str, why: str) -> Any:
        context["ti"].xcom_push(key=APPROVAL_KEY, value={"asked": False, "choice": None, "why": why})
        self.log.info("no approval asked (%s): %s", why, branch)
        return self.do_branch(context=context, branches_to_execute=branch)

    def execute(self, context: Context) -> Any:
        from airflow.sdk.exceptions import AirflowFailException
        from airflow.sdk.execution_time.hitl import HITLUser

        from fraudops.pipeline.release import params_of
        from fraudops.pipeline.release_types import Candidate, DecisionSummary
        from fraudops.vocabulary import Decision

        raw = context["ti"].xcom_pull(task_ids=self.decision_task_id, key="decision")
        if not raw:
            raise AirflowFailException(f"no gate decision from {self.decision_task_id}")
        decision = DecisionSummary.from_xcom(raw)
        cand = Candidate.from_xcom(self.candidate)
        params = params_of(cand)
        if decision.status != Decision.PROMOTE:
            return self._pass(context, "reject", f"the gate said {decision.status}")
        if not params.requires_approval:
            return self._pass(context, "promote", "the release does not require approval")
        managers = release_managers()
        if not managers:
            raise AirflowFailException(
                "the release requires approval but no release manager is configured "
                "(FRAUDOPS_RELEASE_MANAGERS, or op/admin users of the simple auth manager)"
            )
        self.subject = f"Promote {cand.model_name} v{cand.version} over champion v{cand.champion}?"
        self.body = evidence_body(decision.to_xcom(), cand)
        self.assigned_users = [HITLUser(id=m, name=m) for m in managers]
        self.response_timeout = dt.timedelta(minutes=params.approval_timeout_minutes)
        self.log.info("approval of %s v%s asked from %s", cand.model_name, cand.version, ", ".join(managers))
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        # The answer is pushed first: branching ends the task (Airflow's skip raises to the runner).
        if "error" in event:
            # The request failed (a timeout without defaults): not promoted, the reason recorded.
            why = f"no approval: {event.get('error_type', 'error')}: {event.get('error', '')}".strip(": ")
            context["ti"].xcom_push(key=APPROVAL_KEY, value={"asked": True, "choice": ABORT, "why": why})
            self.log.warning("%s: rejecting", why)
            return self.do_branch(context=context, branches_to_execute="reject")
        user = event.get("responded_by_user") or {}
        responded = event.get("responded_at")
        answer = {
            "asked": True,
            "choice": (event.get("chosen_options") or [None])[0],
            "by": user.get("name") or user.get("id"),
            "at": responded.isoformat() if isinstance(responded, dt.datetime) else responded,
        }
        if not answer["by"]:
            answer["why"] = "no release manager answered within the approval timeout"
        self.log.info("approval answered: %s", answer)
        context["ti"].xcom_push(key=APPROVAL_KEY, value=answer)
        return super().execute_complete(context=context, event=event)
