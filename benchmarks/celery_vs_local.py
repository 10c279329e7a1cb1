"""Many small DAG runs through the real scheduler: LocalExecutor (embedded profile) vs CeleryExecutor with two
workers (production profile: PostgreSQL metadata DB, Redis broker).

The DAG is a drift-check-sized job: `check_drift` runs the fast drift path (pipelines.monitoring) on a 5k x 10
reference and window, then `record_verdict` hands its verdict on. Each task reports its own work time (imports of
its libraries included, as any executor pays them). Per task, Airflow's overhead = scheduling gap (ready -> start)
+ recorded duration - the task's own work. Both stacks get the same number of task slots (parallelism 4; Celery:
2 workers x concurrency 2), so the figures compare executors, not slot counts.

Measured per executor: a few runs one at a time (overhead on an idle stack), then N runs triggered at once:
throughput (runs per minute from the first trigger to the last success), run latency, and Airflow's cost per task at
saturation: (span x task slots - the tasks' own work) / tasks, i.e. slot time not spent on task code (scheduling
latency, process start-up, state/XCom round trips). Throwaway stacks on free ports in a temp dir; the production one
on per-run PostgreSQL databases and its own broker key prefix, purged afterwards.

Run: .venv/bin/python benchmarks/celery_vs_local.py [--runs 50] [--idle-runs 3]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from factory.airflow_api import AirflowApiError, AirflowClient
from factory.settings import isolated_settings
from factory.stack import Stack

DAG_ID = "bench_drift_check"
DAG_FILE = f'''
from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(dag_id="{DAG_ID}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     tags=["benchmark"], max_active_runs=100, max_active_tasks=100, default_args={{"owner": "benchmark"}})
def bench_drift_check():
    @task
    def check_drift(dag_run=None) -> dict:
        import time
        import zlib

        started = time.perf_counter()
        import numpy as np
        import pandas as pd

        from pipelines.monitoring import DriftPolicy, build_reference_profile, detect_drift

        rng = np.random.default_rng(zlib.crc32(dag_run.run_id.encode()))
        names = [f"x{{i}}" for i in range(10)]
        reference = pd.DataFrame(rng.normal(size=(5000, 10)), columns=names)
        window = pd.DataFrame(rng.normal(0.05, 1.0, size=(5000, 10)), columns=names)
        policy = DriftPolicy()
        profile = build_reference_profile(reference, dict.fromkeys(names, "numeric"), policy)
        report = detect_drift(profile, window, policy)
        return {{"work_s": time.perf_counter() - started, "drifted": bool(report.dataset_drift)}}

    @task
    def record_verdict(verdict: dict) -> dict:
        import time

        started = time.perf_counter()
        return {{"work_s": time.perf_counter() - started, "drifted": verdict["drifted"]}}

    record_verdict(check_drift())


bench_drift_check()
'''
TASKS = ("check_drift", "record_verdict")
# label, profile, executor: the embedded stack, then both executors on the same PostgreSQL metadata DB.
SETUPS = (
    ("Local/SQLite", "embedded", "LocalExecutor"),
    ("Local/PG", "production", "LocalExecutor"),
    ("Celery/PG", "production", "CeleryExecutor"),
)
UPSTREAM = {"record_verdict": "check_drift"}
# The services the benchmark needs: Airflow (its API server also waits for S3, MLflow, Triton). No gateway.
AIRFLOW_SERVICES_PREFIX = "airflow-"


@dataclass(frozen=True)
class RunFigures:
    queued: datetime
    end: datetime
    overheads: dict[str, float]  # task id -> gap + duration - work (s)
    work: float  # the run's tasks' own work (s)
    # The overhead in phases, per task: ready -> queued (scheduler), queued -> started (executor: hand-over and
    # process start), recorded duration - work (task runner start-up, XCom and state calls).
    phases: dict[str, list[float]]


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def run_figures(client: AirflowClient, run_id: str) -> RunFigures:
    run = client.run(DAG_ID, run_id)
    if run["state"] != "success":
        raise RuntimeError(f"{DAG_ID} run {run_id} ended {run['state']}")
    tis = {ti["task_id"]: ti for ti in client.task_instances(DAG_ID, run_id)}
    overheads, work_total = {}, 0.0
    phases: dict[str, list[float]] = {"schedule": [], "dispatch": [], "in_task": []}
    for task_id in TASKS:
        ti = tis[task_id]
        ready = _ts(tis[UPSTREAM[task_id]]["end_date"]) if task_id in UPSTREAM else _ts(run["start_date"])
        queued, started = _ts(ti["queued_when"]), _ts(ti["start_date"])
        work = client.xcom(DAG_ID, run_id, task_id)["work_s"]
        overheads[task_id] = (started - ready).total_seconds() + ti["duration"] - work
        phases["schedule"].append((queued - ready).total_seconds())
        phases["dispatch"].append((started - queued).total_seconds())
        phases["in_task"].append(ti["duration"] - work)
        work_total += work
    return RunFigures(_ts(run["queued_at"]), _ts(run["end_date"]), overheads, work_total, phases)


def trigger(client: AirflowClient, attempts: int = 5) -> str:
    """Trigger a run. SQLite (embedded profile) refuses a write now and then while the scheduler holds its lock
    (500 "Database error", rolled back): try again rather than lose the measurement."""
    for attempt in range(1, attempts + 1):
        try:
            return client.trigger(DAG_ID)
        except AirflowApiError as error:
            if ": 500 " not in str(error) or attempt == attempts:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


def wait_all(client: AirflowClient, run_ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = set(run_ids)
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} runs still unfinished after {timeout:.0f} s")
        states = {run["dag_run_id"]: run["state"] for run in client.dag_runs(DAG_ID, limit=len(run_ids) + 10)}
        pending = {run_id for run_id in pending if states.get(run_id) not in {"success", "failed"}}
        time.sleep(2.0)


def measure(profile: str, executor: str, runs: int, idle_runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="factory-bench-") as home:
        dags = Path(home) / "dags"
        dags.mkdir()
        (dags / f"{DAG_ID}.py").write_text(DAG_FILE)
        extra = {"FACTORY_PROFILE": profile, "FACTORY_AIRFLOW_EXECUTOR": executor, "FACTORY_DAGS_FOLDER": str(dags)}
        if profile == "production":
            extra["FACTORY_DB_PREFIX"] = f"factory_bench_{secrets.token_hex(4)}"
        stack = Stack(isolated_settings(Path(home) / "stack", **extra), env={}, report=lambda line: None)
        figures = _measure_on(stack, runs, idle_runs)
    print(f"[{profile}, {executor}] {figures}", flush=True)
    return figures


def _measure_on(stack: Stack, runs: int, idle_runs: int) -> dict[str, float]:
    try:
        started = time.monotonic()
        stack.up([service.name for service in stack.services if service.name.startswith(AIRFLOW_SERVICES_PREFIX)])
        print(f"[{stack.settings.executor}] stack up in {time.monotonic() - started:.0f} s", flush=True)
        client = stack.airflow_client()
        try:
            client.wait_for_dag(DAG_ID)
            client.unpause(DAG_ID)
            client.wait_for_run(DAG_ID, trigger(client), timeout=300)  # warm-up: first run, discarded
            idle = []
            for _ in range(idle_runs):
                run_id = trigger(client)
                client.wait_for_run(DAG_ID, run_id, timeout=300)
                idle.append(run_figures(client, run_id))
            burst_ids = [trigger(client) for _ in range(runs)]
            wait_all(client, burst_ids, timeout=60 * 30)
            burst = [run_figures(client, run_id) for run_id in burst_ids]
        finally:
            client.close()
    finally:
        stack.down()
        stack.purge()
    span = (max(f.end for f in burst) - min(f.queued for f in burst)).total_seconds()
    settings = stack.settings
    slots = settings.airflow_parallelism
    if settings.executor == "CeleryExecutor":
        slots = min(slots, settings.celery_workers * settings.celery_worker_concurrency)
    return {
        "idle_latency_s": statistics.median((f.end - f.queued).total_seconds() for f in idle),
        "idle_overhead_s": statistics.median(o for f in idle for o in f.overheads.values()),
        **{
            f"idle_{phase}_s": statistics.median(v for f in idle for v in f.phases[phase])
            for phase in ("schedule", "dispatch", "in_task")
        },
        "throughput_per_min": runs / span * 60,
        "burst_span_s": span,
        "burst_latency_s": statistics.median((f.end - f.queued).total_seconds() for f in burst),
        "burst_overhead_s": (span * slots - sum(f.work for f in burst)) / (len(burst) * len(TASKS)),
        "task_work_s": statistics.median(f.work / len(TASKS) for f in burst),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="runs triggered at once")
    parser.add_argument("--idle-runs", type=int, default=3, help="runs one at a time (overhead on an idle stack)")
    args = parser.parse_args()
    results = {label: measure(profile, executor, args.runs, args.idle_runs) for label, profile, executor in SETUPS}
    local, celery = results["Local/PG"], results["Celery/PG"]
    rows = (
        ("idle: run latency (trigger -> success)", "idle_latency_s", "s"),
        ("idle: Airflow overhead per task", "idle_overhead_s", "s"),
        ("  of which ready -> queued (scheduler)", "idle_schedule_s", "s"),
        ("  of which queued -> started (executor, process start)", "idle_dispatch_s", "s"),
        ("  of which in the task's duration, beyond its work", "idle_in_task_s", "s"),
        (f"{args.runs} runs at once: throughput", "throughput_per_min", "runs/min"),
        (f"{args.runs} runs at once: first trigger -> last success", "burst_span_s", "s"),
        (f"{args.runs} runs at once: run latency", "burst_latency_s", "s"),
        (f"{args.runs} runs at once: slot time per task beyond its work", "burst_overhead_s", "s"),
        ("task work (median per task, for scale)", "task_work_s", "s"),
    )
    labels = [label for label, *_ in SETUPS]
    print(f"\n{'medians; 2 tasks per run, 4 task slots each':<56}" + "".join(f"{label:>13}" for label in labels)
          + f"{'Celery/Local':>14} (both PG)")  # fmt: skip
    for title, key, unit in rows:
        figures = "".join(f"{results[label][key]:13.2f}" for label in labels)
        print(f"{title:<56}{figures}{celery[key] / local[key]:13.2f}x  {unit}")


if __name__ == "__main__":
    main()
