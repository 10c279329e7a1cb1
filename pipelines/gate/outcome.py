"""What the gate hands to the rest of the pipeline: the outcome record, the registry tags, the approval request.

The training DAG gates a registered version, asks a human when the decision says so, then moves the
`challenger` alias. These are the pure parts of that loop: what the version is tagged with at each step, what
the approver reads, and how the final state follows from the gate's decision and the human's answer. No
Airflow here: the approval answer arrives as the plain payload the HITL operator returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.gate.report import Decision, GateReport

DECISION_TAG = "gate.decision"
APPROVE, REJECT = "Approve", "Reject"  # the ApprovalOperator's two options
# The version tag's value through the loop: the gate's verdict, then (if a human was asked) the answer.
GateTag = Literal["passed", "needs_approval", "rejected", "approved", "error"]
_TAG_OF_DECISION: dict[Decision, GateTag] = {
    "promote": "passed",
    "needs_approval": "needs_approval",
    "reject": "rejected",
}
_MAX_TAG_CHARS = 4000


class GateOutcome(BaseModel):
    """The gate task's result (its XCom): which version, what was decided, where the evidence is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str
    version: str
    run_id: str
    decision: Decision
    summary: str
    policy_name: str
    policy_version: str
    first_model: bool
    rows: int
    review: list[str] = Field(default_factory=list)  # "check: reason" of every check that asks for a human
    # The registry state the decision was made against: the promotion must find it unchanged.
    champion_version: str | None
    challenger_before: str | None
    report_uri: str  # runs:/<run id>/gate/gate_report.html
    report_url: str  # the same file through the tracking server, for people
    report_json_uri: str
    model_card_url: str
    run_url: str
    approval_timeout_s: float = Field(gt=0)

    @property
    def ref(self) -> str:
        return f"{self.model_name} v{self.version}"


def gate_tags(report: GateReport, *, report_uri: str, champion_version: str | None) -> dict[str, str]:
    """Tags of the gated version: the verdict, the policy that made it, what it was compared with, the report."""
    return {
        DECISION_TAG: _TAG_OF_DECISION[report.decision],
        "gate.policy": f"{report.policy_name}@{report.policy_version}",
        "gate.champion_version": champion_version or "none (first model)",
        "gate.report": report_uri,
        "gate.summary": report.summary[:_MAX_TAG_CHARS],
    }


def error_tags(message: str) -> dict[str, str]:
    """Tags of a version the gate could not judge (missing champion artifact, other contract...)."""
    return {DECISION_TAG: "error", "gate.error": message[:_MAX_TAG_CHARS]}


def review_reasons(report: GateReport) -> list[str]:
    return [f"{check.name}: {check.reason}" for check in report.checks_with("needs_approval")]


def approval_request(outcome: GateOutcome) -> tuple[str, str]:
    """Subject and Markdown body of the approval request: the decision, why a human is asked, the evidence."""
    subject = f"Promote {outcome.ref} to challenger? (gate: {outcome.decision}, policy {outcome.policy_version})"
    review = [f"- {reason}" for reason in outcome.review]
    versus = f"champion v{outcome.champion_version}" if outcome.champion_version else "no champion (first model)"
    hours = outcome.approval_timeout_s / 3600
    body = "\n".join(
        [
            f"**{outcome.ref}** against {versus}, on {outcome.rows:,} evaluation rows.",
            "",
            outcome.summary,
            "",
            "Why a human is asked:",
            *(review or ["- (no check asked; see the report)"]),
            "",
            f"Gate report: {outcome.report_url}",
            f"Model card: {outcome.model_card_url}",
            f"MLflow run: {outcome.run_url}",
            "",
            f"Unanswered after {hours:g} h, the request resolves to **{REJECT}**: the version stays registered "
            "with its report, and nothing is promoted.",
        ]
    )
    return subject, body


class FinalOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    promoted: bool
    tags: dict[str, str]
    summary: str


def final_outcome(
    outcome: GateOutcome, approval: Mapping[str, Any] | None, promotion: Mapping[str, Any] | None
) -> FinalOutcome:
    """The version's final tags from the gate decision, the approval answer (None: not asked or skipped) and
    the promotion record (None: not promoted).

    A timed-out request carries no respondent: it is recorded as a rejection by timeout, never as a decision
    someone made.
    """
    promoted = promotion is not None
    tags: dict[str, str] = {}
    if outcome.decision == "needs_approval":
        chosen = list((approval or {}).get("chosen_options") or [])
        user = (approval or {}).get("responded_by_user") or None
        who = _user_name(user)
        answered = chosen[0] if chosen else None
        if answered == APPROVE and promoted:
            tags = {DECISION_TAG: "approved", "gate.approval": f"approved by {who}"}
        elif answered == REJECT:
            timed_out = bool((approval or {}).get("timedout")) or not user
            how = "rejected: no answer before the timeout (default Reject)" if timed_out else f"rejected by {who}"
            tags = {DECISION_TAG: "rejected", "gate.approval": how}
        else:
            tags = {DECISION_TAG: "rejected", "gate.approval": "no approval recorded"}
    elif outcome.decision == "promote" and not promoted:
        tags = {"gate.promotion": "not applied (the promotion task did not run)"}
    if promoted and promotion is not None:
        tags["gate.promoted_to"] = f"challenger (alias log record {promotion.get('seq')})"
    verdict = tags.get(DECISION_TAG, _TAG_OF_DECISION[outcome.decision])
    summary = f"{outcome.ref}: gate {outcome.decision}, final {verdict}; " + (
        "now the challenger." if promoted else "not promoted (the version and its report stay in the registry)."
    )
    return FinalOutcome(promoted=promoted, tags=tags, summary=summary)


def _user_name(user: Any) -> str:
    if isinstance(user, Mapping):
        return str(user.get("name") or user.get("id") or "unknown user")
    return str(user) if user else "unknown user"
