"""The smoke DAG through the real scheduler: wall time, and Airflow's overhead per task (task wall minus task work).

A throwaway stack (free ports, temp state dir) is started; the smoke DAG is triggered through the REST API like a
user would, N times. "Task wall" is the task instance's recorded duration plus the scheduling gap after its upstream
finished; "task work" is the same callable run in this process with warm imports (median of N). The difference is
what Airflow costs per task: scheduling, process start-up, imports in a fresh interpreter, XCom and state updates.
Run: .venv/bin/python benchmarks/smoke_dag_overhead.py [runs]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from factory.airflow_api import AirflowClient
from factory.dag_runs import SMOKE_DAG, run_smoke_dag
from factory.settings import PROJECT_ROOT, isolated_settings
from factory.stack import Stack

UPSTREAM = {"log_mlflow_run": "write_s3_object", "check_prediction": "load_smoke_model"}


def measure_work(runs: int) -> dict[str, float]:
    """Run each task's callable in-process (warm) and return the median seconds per task."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "factory_smoke.py")).get_dag(SMOKE_DAG)
    call = {task_id: dag.get_task(task_id).python_callable for task_id in dag.task_ids}
    samples: dict[str, list[float]] = {task_id: [] for task_id in call}
    for index in range(runs + 1):  # the first round warms imports and is discarded
        timed = {}
        started = time.perf_counter()
        uri = call["write_s3_object"](run_id=f"bench-{index}")
        timed["write_s3_object"] = time.perf_counter() - started
        started = time.perf_counter()
        call["log_mlflow_run"](uri, run_id=f"bench-{index}")
        timed["log_mlflow_run"] = time.perf_counter() - started
        started = time.perf_counter()
        model = call["load_smoke_model"]()
        timed["load_smoke_model"] = time.perf_counter() - started
        started = time.perf_counter()
        call["check_prediction"](model)
        timed["check_prediction"] = time.perf_counter() - started
        if index:
            for task_id, seconds in timed.items():
                samples[task_id].append(seconds)
    return {task_id: statistics.median(values) for task_id, values in samples.items()}


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with tempfile.TemporaryDirectory(prefix="factory-bench-") as home:
        stack = Stack(isolated_settings(Path(home)), env={}, report=lambda line: None)
        stack.up()
        try:
            os.environ.update(stack.airflow_env())
            creds = stack.credentials
            client = AirflowClient(stack.settings.airflow_url, creds.airflow_admin_user, creds.airflow_admin_password)
            walls, durations, gaps = [], {}, {}
            for _ in range(runs):
                run_id, wall = run_smoke_dag(client, report=lambda line: None)
                walls.append(wall)
                timings = {t.task_id: t for t in client.task_timings(SMOKE_DAG, run_id)}
                run = client.run(SMOKE_DAG, run_id)
                for task_id, timing in timings.items():
                    durations.setdefault(task_id, []).append(timing.duration_s)
                    ready = timings[UPSTREAM[task_id]].end if task_id in UPSTREAM else _ts(run["start_date"])
                    gaps.setdefault(task_id, []).append((timing.start - ready).total_seconds())
            client.close()
            work = measure_work(runs)
        finally:
            stack.down()
    print(f"smoke DAG through the scheduler: wall median {statistics.median(walls):.1f} s over {runs} runs "
          f"(trigger -> success, {', '.join(f'{w:.1f}' for w in walls)})")  # fmt: skip
    print(f"{'task':<20} {'gap':>7} {'duration':>9} {'work':>7} {'overhead':>9}  (seconds, medians)")
    overheads = []
    for task_id in ("write_s3_object", "log_mlflow_run", "load_smoke_model", "check_prediction"):
        gap, duration = statistics.median(gaps[task_id]), statistics.median(durations[task_id])
        overhead = gap + duration - work[task_id]
        overheads.append(overhead)
        print(f"{task_id:<20} {gap:7.2f} {duration:9.2f} {work[task_id]:7.2f} {overhead:9.2f}")
    critical_work = max(work["write_s3_object"] + work["log_mlflow_run"],
                        work["load_smoke_model"] + work["check_prediction"])  # fmt: skip
    print(
        f"Airflow overhead per task: median {statistics.median(overheads):.2f} s; "
        f"run wall / critical-path work: {statistics.median(walls) / critical_work:.1f}x"
    )


def _ts(value: str):
    from datetime import datetime

    return datetime.fromisoformat(value)


if __name__ == "__main__":
    main()
