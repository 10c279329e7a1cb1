"""The gate's approval step: Airflow 3's HITL `ApprovalOperator`, configured at run time from the gate's outcome.

Why a subclass: the question, the evidence links and the response timeout come from the gate task that ran
just before (the policy version it applied says how long a human has), not from anything known when the DAG
file is parsed. Everything else is the stock operator: the task waits in `awaiting_input` holding no worker
slot, "Approve" lets the promotion run, "Reject" skips it, and an unanswered request resolves to its default,
"Reject", when the scheduler's timeout sweep finds it past its deadline.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

# XCom key of the answer, pushed whatever it is: the stock operator returns nothing when the answer is Reject.
ANSWER_XCOM_KEY = "answer"


class GateApprovalOperator(ApprovalOperator):
    """Ask a human to approve the promotion the gate task `gate_task_id` asked approval for."""

    def __init__(self, *, gate_task_id: str, **kwargs: Any) -> None:
        kwargs.setdefault("subject", "Approve the gated model version?")  # replaced at run time
        super().__init__(defaults=[ApprovalOperator.REJECT], **kwargs)
        self.gate_task_id = gate_task_id

    def execute(self, context: Any) -> Any:
        from pipelines.gate.outcome import GateOutcome, approval_request

        pulled = context["ti"].xcom_pull(task_ids=self.gate_task_id)
        if not pulled:
            raise ValueError(f"no outcome from {self.gate_task_id!r}: the approval has nothing to ask about")
        outcome = GateOutcome.model_validate(pulled)
        self.subject, self.body = approval_request(outcome)
        self.response_timeout = timedelta(seconds=outcome.approval_timeout_s)
        self.log.info("Asking for approval of %s within %s; gate report: %s", outcome.ref, self.response_timeout,
                      outcome.report_url)  # fmt: skip
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        """Record the answer (who, when, whether the timeout chose it) before the stock handling skips on Reject."""
        if "error" not in event:
            responded_at = event.get("responded_at")
            answer = {
                "chosen_options": list(event.get("chosen_options") or []),
                "responded_by_user": event.get("responded_by_user"),
                "responded_at": responded_at.isoformat() if hasattr(responded_at, "isoformat") else responded_at,
                "timedout": bool(event.get("timedout", False)),
            }
            context["ti"].xcom_push(key=ANSWER_XCOM_KEY, value=answer)
        return super().execute_complete(context, event)
