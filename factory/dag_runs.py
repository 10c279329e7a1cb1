"""Driving DAG runs through the real scheduler from outside Airflow (the main job, benchmarks, tests).

Everything goes through Airflow's REST API, as a person in the UI would: trigger, watch, answer a gate's
approval request, find the run an asset event scheduled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from factory.airflow_api import AirflowApiError, AirflowClient
from serving.triton.smoke import SMOKE_INPUT, check_prediction

SMOKE_DAG = "factory_smoke"
TRAIN_DAG = "factory_train"
GATE_TASK, APPROVAL_TASK = "gate_candidate", "approve_candidate"
FINISHED_TASK_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


class DagRunFailed(RuntimeError):
    """A run ended in a state other than success; the message names the run and its failed tasks."""


@dataclass(frozen=True)
class FinishedRun:
    dag_id: str
    run_id: str
    wall_s: float
    approvals: int = 0  # approval requests answered on the run (the gate asked a human)


def run_dag(
    client: AirflowClient, dag_id: str, conf: dict[str, Any] | None = None, report: Callable[[str], None] = print
) -> tuple[str, float]:
    """Trigger `dag_id` through the scheduler and wait; raise unless the run succeeds. Returns (run id, wall s)."""
    client.wait_for_dag(dag_id)
    client.unpause(dag_id)
    started = time.monotonic()
    run_id = client.trigger(dag_id, conf)
    finish_run(client, dag_id, run_id, report=report)
    return run_id, time.monotonic() - started


def finish_run(
    client: AirflowClient, dag_id: str, run_id: str, *, timeout: float = 900, report: Callable[[str], None] = print
) -> dict[str, Any]:
    """Wait for a run to end; raise DagRunFailed naming the failed tasks unless it succeeded."""
    run = client.wait_for_run(dag_id, run_id, timeout=timeout, on_progress=lambda line: report(f"  {line}"))
    if run["state"] != "success":
        failed = [t.task_id for t in client.task_timings(dag_id, run_id) if t.state in ("failed", "upstream_failed")]
        raise DagRunFailed(
            f"{dag_id} run {run_id} ended {run['state']} (failed: {', '.join(failed) or 'none'}): "
            "see the task logs in the Airflow UI"
        )
    return run


def run_smoke_dag(client: AirflowClient, report: Callable[[str], None] = print) -> tuple[str, float]:
    """The smoke DAG through the scheduler, then Triton's prediction checked against the model's definition."""
    run_id, wall = run_dag(client, SMOKE_DAG, report=report)
    prediction = np.asarray(client.xcom(SMOKE_DAG, run_id, "check_prediction"), dtype=np.float32).reshape(-1, 1)
    check_prediction(SMOKE_INPUT, prediction)
    return run_id, wall


def finish_gated_training(
    client: AirflowClient,
    run_id: str,
    *,
    approver: Callable[[dict[str, Any]], bool],
    report: Callable[[str], None] = print,
    timeout: float = 900,
) -> FinishedRun:
    """Wait for a `factory_train` run; when its gate asks for a human, `approver(gate outcome)` answers.

    True answers Approve, False Reject. In production a reviewer answers in the Airflow UI (Required Actions);
    the main job answers for them and says so.
    """
    started = time.monotonic()
    deadline = started + timeout
    gate_state = _wait_for_task(client, TRAIN_DAG, run_id, GATE_TASK, deadline)
    approvals = 0
    if gate_state == "success":
        gate = client.xcom(TRAIN_DAG, run_id, GATE_TASK)
        if gate["decision"] == "needs_approval":
            choice = "Approve" if approver(gate) else "Reject"
            remaining = deadline - time.monotonic()
            client.answer_hitl_until_taken(TRAIN_DAG, run_id, APPROVAL_TASK, [choice], timeout=remaining)
            approvals = 1
    finish_run(client, TRAIN_DAG, run_id, timeout=max(deadline - time.monotonic(), 1.0), report=report)
    return FinishedRun(TRAIN_DAG, run_id, time.monotonic() - started, approvals)


def _wait_for_task(client: AirflowClient, dag_id: str, run_id: str, task_id: str, deadline: float) -> str:
    """The task's state once it finished, or the run's when the run ended without it finishing."""
    while True:
        states = {t["task_id"]: t.get("state") for t in client.task_instances(dag_id, run_id)}
        if states.get(task_id) in FINISHED_TASK_STATES:
            return str(states[task_id])
        run_state = client.run(dag_id, run_id)["state"]
        if run_state in ("success", "failed"):
            return run_state
        if time.monotonic() > deadline:
            raise AirflowApiError(f"{task_id} of {dag_id} run {run_id} did not finish in time")
        time.sleep(1.0)


def wait_for_new_run(
    client: AirflowClient, dag_id: str, *, known: set[str], run_type: str | None = None, timeout: float = 300
) -> str:
    """The id of the first run of `dag_id` not in `known` (e.g. one an asset event scheduled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in client.dag_runs(dag_id, limit=100):
            if run["dag_run_id"] not in known and (run_type is None or run.get("run_type") == run_type):
                return str(run["dag_run_id"])
        time.sleep(1.0)
    raise AirflowApiError(f"no new {run_type or ''} run of {dag_id} within {timeout:.0f} s")
