"""A small client of Airflow 3's public REST API (v2): enough to unpause, trigger and follow DAG runs, and to
answer human-in-the-loop requests.

Used by the main job, the scheduler-path tests and the benchmarks, so all three exercise the same path a user takes
through the UI: the run is queued by the API server, scheduled by the scheduler and executed by the executor.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

TERMINAL_RUN_STATES = {"success", "failed"}


class AirflowApiError(RuntimeError):
    """The API refused a call or a run did not finish in time; the message says which."""


@dataclass(frozen=True)
class TaskTiming:
    task_id: str
    state: str
    duration_s: float
    start: datetime | None
    end: datetime | None


class AirflowClient:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout)
        token = self._http.post("/auth/token", json={"username": username, "password": password})
        if token.status_code not in (200, 201):
            raise AirflowApiError(f"login to {base_url} as {username!r} failed: {token.status_code} {token.text[:200]}")
        self._http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, f"/api/v2{path}", **kwargs)
        if response.status_code >= 400:
            raise AirflowApiError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the dag-processor has parsed `dag_id` (new files take a few seconds to appear)."""
        deadline = time.monotonic() + timeout
        while True:
            response = self._http.get(f"/api/v2/dags/{dag_id}")
            if response.status_code == 200:
                return response.json()
            if time.monotonic() > deadline:
                errors = self._call("GET", "/importErrors").get("import_errors", [])
                raise AirflowApiError(f"DAG {dag_id!r} not parsed after {timeout:.0f} s; import errors: {errors}")
            time.sleep(1.0)

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def pause(self, dag_id: str) -> None:
        self._call("PATCH", f"/dags/{dag_id}", json={"is_paused": True})

    def set_pool(self, name: str, slots: int, description: str = "") -> None:
        """Create the pool, or set its slots and description if it exists (idempotent)."""
        pool = {"name": name, "slots": slots, "description": description, "include_deferred": False}
        action = {"action": "create", "entities": [pool], "action_on_existence": "overwrite"}
        result = self._call("PATCH", "/pools", json={"actions": [action]})
        if errors := result.get("create", {}).get("errors"):
            raise AirflowApiError(f"pool {name!r} was not set: {errors}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances as the API returns them (state, try_number, hostname, queue, pool, ...)."""
        return self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def task_tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every attempt of one task instance (the latest included), each with its hostname and state."""
        return self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries")["task_instances"]

    def dag_runs(self, dag_id: str, limit: int = 50) -> list[dict[str, Any]]:
        return self._call("GET", f"/dags/{dag_id}/dagRuns", params={"limit": limit})["dag_runs"]

    def upstream_asset_events(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The asset events that scheduled an asset-triggered run."""
        return self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents")["asset_events"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """A task attempt's log as text (for error messages: what the task itself said)."""
        answer = self._call(
            "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true"}, headers={"Accept": "application/json"},
        )  # fmt: skip
        content = answer.get("content", "")
        if isinstance(content, list):
            return "\n".join(_log_line(item) for item in content)
        return str(content)

    def asset_events(self, **filters: Any) -> list[dict[str, Any]]:
        """Asset events, filtered as the API allows (e.g. source_dag_id=...)."""
        return self._call("GET", "/assets/events", params=filters)["asset_events"]

    def set_run_state(self, dag_id: str, run_id: str, state: str) -> None:
        """Mark a run (e.g. "failed" to stop it); its unfinished tasks stop too."""
        self._call("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", json={"state": state})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        run = self._call("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = 600.0,
        on_progress: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last_line = ""
        while True:
            run = self.run(dag_id, run_id)
            if on_progress:
                line = self._progress_line(dag_id, run_id, run["state"])
                if line != last_line:
                    on_progress(line)
                    last_line = line
            if run["state"] in TERMINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                raise AirflowApiError(f"run {run_id} of {dag_id} still {run['state']} after {timeout:.0f} s")
            time.sleep(1.0)

    def _progress_line(self, dag_id: str, run_id: str, run_state: str) -> str:
        states = [f"{t.task_id}={t.state}" for t in self.task_timings(dag_id, run_id)]
        return f"{dag_id} [{run_state}] " + " ".join(states)

    def task_timings(self, dag_id: str, run_id: str) -> list[TaskTiming]:
        timings = []
        for item in self.task_instances(dag_id, run_id):
            start = _parse_time(item.get("start_date"))
            end = _parse_time(item.get("end_date"))
            timings.append(
                TaskTiming(item["task_id"], item.get("state") or "none", item.get("duration") or 0.0, start, end)
            )
        return sorted(timings, key=lambda t: (t.start is None, t.start.timestamp() if t.start else 0.0, t.task_id))

    def wait_for_hitl_request(
        self, dag_id: str, run_id: str, task_id: str, timeout: float = 600.0, settle: float = 5.0
    ) -> dict[str, Any]:
        """Wait until `task_id` waits for a human, then `settle` seconds more; returns its HITL request.

        Why the settle time: in Airflow 3.3.2 an answer that lands within about a second of the task parking
        resumes it before the scheduler has processed the parked process's exit; the scheduler then sees an
        executor "success" for a queued task, marks it up_for_retry, and the retry asks again, losing the
        answer (observed here). A person never answers that fast; a program must wait for the dust to settle.
        """
        deadline = time.monotonic() + timeout
        settled_since: float | None = None
        while True:
            task = self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
            if task.get("state") in {"failed", "upstream_failed", "skipped", "success"}:
                raise AirflowApiError(f"{dag_id}/{run_id}/{task_id} ended {task['state']} without asking a human")
            if task.get("state") == "awaiting_input":
                settled_since = settled_since or time.monotonic()
                if time.monotonic() - settled_since >= settle:
                    return self.hitl_detail(dag_id, run_id, task_id)
            else:
                settled_since = None
            if time.monotonic() > deadline:
                raise AirflowApiError(f"{dag_id}/{run_id}/{task_id} is {task.get('state')}, not awaiting input")
            time.sleep(1.0)

    def hitl_detail(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """The human-in-the-loop request of a task (subject, body, options, defaults, the answer if any)."""
        return self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails")

    def answer_hitl(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        chosen_options: list[str],
        params_input: dict[str, Any] | None = None,
        map_index: int = -1,
    ) -> dict[str, Any]:
        """Answer a waiting HITL task as the logged-in user (what the UI's Required Actions page does).

        The API server resumes the task at once; answering twice is refused (409).
        """
        return self._call(
            "PATCH",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails",
            json={"chosen_options": chosen_options, "params_input": params_input or {}},
        )

    def answer_hitl_until_taken(
        self, dag_id: str, run_id: str, task_id: str, chosen_options: list[str], timeout: float = 600.0
    ) -> list[dict[str, Any]]:
        """Answer the task's request and keep answering until the task moves on; the answers given, in order.

        Even after the settle time of `wait_for_hitl_request`, a loaded scheduler (2 cores at load 10) can still
        lose an answer to the Airflow 3.3.2 race described there: the task is retried and asks again, unanswered.
        A person would answer the new request in the UI; so does this, instead of waiting for a timeout.
        """
        deadline = time.monotonic() + timeout
        answers: list[dict[str, Any]] = []
        while True:
            try:
                request = self.wait_for_hitl_request(dag_id, run_id, task_id, timeout=deadline - time.monotonic())
            except AirflowApiError:
                if answers:  # it ended after an answer: taken
                    return answers
                raise
            if not request.get("response_received"):
                answers.append(self.answer_hitl(dag_id, run_id, task_id, chosen_options))
            time.sleep(2.0)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        entry = self._call(
            "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"deserialize": True},
        )  # fmt: skip
        return entry["value"]


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _log_line(item: object) -> str:
    """One structured log record as text, with the exception it carries (type, message, innermost frame)."""
    if not isinstance(item, dict):
        return str(item)
    line = str(item.get("event", item))
    for error in item.get("error_detail") or []:
        frames = error.get("frames") or [{}]
        where = f"{frames[-1].get('filename', '?')}:{frames[-1].get('lineno', '?')}"
        line += f"\n  {error.get('exc_type')}: {error.get('exc_value')} (at {where})"
    return line
