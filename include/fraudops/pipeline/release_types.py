"""The data a release passes from step to step, typed: candidate, shadow deployment, evidence window,
drift report, sensor result, decision, promotion, probation outcome, final outcome.

The steps in :mod:`fraudops.pipeline.release` take and return these objects; the DAG converts them
at the XCom boundary only (``X.from_xcom(xcom)`` in, ``.to_xcom()`` out), and the CLI passes them
along directly. Each is a frozen pydantic model: validated when read back from XCom (a task cleared
after a code change fails loudly instead of reading a missing key), JSON-small on the way out
(timestamps as ISO 8601 strings, no frames, no evidence rows).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, field_validator

from fraudops.vocabulary import Decision

if TYPE_CHECKING:
    from fraudops.release.policy import GatePolicy

__all__ = [
    "Candidate",
    "DecisionSummary",
    "DriftReport",
    "EvidenceWindow",
    "ProbationOutcome",
    "Promotion",
    "ReleaseOutcome",
    "ShadowDeployment",
    "ShadowWait",
]


def _utc(value: Any) -> Any:
    """Naive timestamps (and ISO strings without an offset) are UTC."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return value


class _XCom(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_xcom(self) -> dict[str, Any]:
        """JSON-safe dict for XCom (timestamps as ISO 8601)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_xcom(cls, doc: dict[str, Any] | Self) -> Self:
        """Read back what :meth:`to_xcom` wrote (an instance passes through)."""
        if isinstance(doc, cls):
            return doc
        if not isinstance(doc, dict):
            raise TypeError(f"{cls.__name__}.from_xcom expects a dict, got {type(doc).__name__}")
        return cls.model_validate(doc)


class Candidate(_XCom):
    """What ``resolve`` fixed for the whole run: which version against which champion, under
    which policy, waiting for how much evidence, with which label maturity."""

    model_name: str
    version: str
    champion: str
    #: ``challenger-<version>``.
    alias: str
    #: The run's effective :class:`~fraudops.pipeline.release.ReleaseParams` (profile + form).
    params: dict[str, Any]
    #: The effective :class:`~fraudops.release.policy.GatePolicy` (defaults + overrides).
    policy: dict[str, Any]
    policy_fingerprint: str
    #: Scored events the challenger needs before the gate looks (the policy's floor; the gate
    #: decides on confidence sequences from there on, so looking early costs no error).
    min_scored_events: int
    #: Matured labeled frauds (scored events labelled fraud, past the label maturity) it needs.
    min_labeled_frauds: int
    #: The power-based plan (``required_sample``): where a non-inferiority decision is expected.
    planned_scored_events: int = 0
    planned_labeled_frauds: int = 0
    #: The effective label maturity (hours of event time) every evidence collection uses.
    label_maturity_hours: float
    #: How it was estimated (``MaturityEstimate.to_dict()``: source, coverage, curve, note).
    maturity: dict[str, Any] = {}

    def gate_policy(self) -> GatePolicy:
        from fraudops.release.policy import GatePolicy

        return GatePolicy.from_dict(self.policy)


class ShadowDeployment(_XCom):
    """Outcome of ``deploy_shadow``: running in the shadow pool (``ok``), or refused and why."""

    ok: bool
    reason: str = ""
    #: The gate check a refusal is recorded under (``artifact``).
    check: str | None = None
    #: Wall clock when the pool reported it running: evidence counts predictions served from here.
    deployed_at: dt.datetime | None = None
    alias: str = ""
    seconds_to_running: float | None = None
    shadow_sample_rate: float | None = None

    @field_validator("deployed_at", mode="before")
    @classmethod
    def _deployed_utc(cls, value: Any) -> Any:
        return _utc(value)

    def since(self) -> dt.datetime:
        if self.deployed_at is None:
            raise ValueError("the challenger was never deployed to shadow")
        return self.deployed_at


class EvidenceWindow(_XCom):
    """The evidence a decision judges: predictions served until ``served_until`` (wall clock),
    labels known as of ``label_as_of`` (event time)."""

    served_until: dt.datetime
    label_as_of: dt.datetime

    @field_validator("served_until", "label_as_of", mode="before")
    @classmethod
    def _window_utc(cls, value: Any) -> Any:
        return _utc(value)


class DriftReport(_XCom):
    """Outcome of ``check_drift``: the window it fixed and the drift results (``DriftResult`` dicts)."""

    window: EvidenceWindow
    drift: list[dict[str, Any]] = []
    mlflow_run_id: str | None = None
    note: str = ""


class ShadowWait(_XCom):
    """The shadow sensor's result: the evidence target met (``ready``), the deadline passed, the
    champion the release compares with stopped serving (``incumbent_changed``), or the early look
    found the challenger broken (``early_reject``)."""

    ready: bool
    reason: str = ""
    progress: dict[str, Any] | None = None
    #: Hours of event time until the target is expected to be met (None: unknown / met).
    eta_hours: float | None = None
    #: The wait ended early: another champion serves now (the gate then rejects at once).
    incumbent_changed: bool = False
    #: The wait ended early: at the gate's floor of scored events, a label-free check (latency,
    #: errors, constant scores, feature parity, operating point, identical ranking) already fails;
    #: the check's name. The gate then decides on that evidence instead of waiting for labels.
    early_reject: str | None = None


class DecisionSummary(_XCom):
    """The promotion decision as the rest of the run needs it (the full decision with its evidence
    is in ``gate_decisions`` under ``decision_id`` and in the release's MLflow run)."""

    #: ``promote``, ``reject`` or ``wait``.
    status: Decision
    reason: str
    deciding_check: str | None = None
    decision_id: str
    n_events: int | None = None
    n_evaluable_frauds: int | None = None
    quality: dict[str, Any] | None = None
    #: The threshold the challenger is served at if promoted: matched to the alert budget on the
    #: window's traffic (None: the bundle's own ``decision_threshold``).
    served_threshold: float | None = None
    #: Share of events scored exactly at ``served_threshold`` that it declines (drawn per event).
    served_tie_share: float = 1.0


class Promotion(_XCom):
    """Outcome of ``promote``: the new champion serves; the old one scores in reverse shadow."""

    promoted_at: dt.datetime
    old_champion: str
    old_alias: str
    seconds_to_serving: float | None = None
    served_threshold: float | None = None
    served_tie_share: float = 1.0

    @field_validator("promoted_at", mode="before")
    @classmethod
    def _promoted_utc(cls, value: Any) -> Any:
        return _utc(value)


class ProbationOutcome(_XCom):
    """One probation look: ``done`` once the gate decided (``confirm``/``rollback``)."""

    done: bool
    #: ``confirm``, ``rollback`` or ``wait``.
    status: Decision
    reason: str
    n_events: int = 0
    #: ``GateDecision.to_dict()`` of the look (recorded by ``finish_probation``).
    decision: dict[str, Any]


class ReleaseOutcome(_XCom):
    """How a release ended: ``rejected``, ``confirmed`` or ``rolled_back``."""

    status: Literal["rejected", "confirmed", "rolled_back"]
    reason: str
    #: The version production serves afterwards (None: unchanged by this step).
    serving: str | None = None
    seconds_to_serving: float | None = None
    #: ``reject``: whether a challenger alias was retired.
    alias_retired: bool | None = None
