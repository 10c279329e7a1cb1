"""The main job: bring the stack up and run the factory loop through the real scheduler, showing progress.

Today the loop is: the stack smoke test (S3 write, MLflow run, Triton load, checked prediction), then the assembly
line (the demo flights loaded into the operational source DB, `factory_train` through the scheduler: snapshot,
validation, training, evaluation, ONNX export, MLflow run and a registered `candidate` version). The later stages
(gate, deploy, drift, retrain, rollout) are added here as their DAGs land.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from factory.airflow_api import AirflowClient
from factory.source_data import seed_source_database
from factory.stack import Stack
from serving.triton.smoke import SMOKE_INPUT, check_prediction

SMOKE_DAG = "factory_smoke"
TRAIN_DAG = "factory_train"


def run_dag(
    client: AirflowClient, dag_id: str, conf: dict[str, Any] | None = None, report: Callable[[str], None] = print
) -> tuple[str, float]:
    """Trigger `dag_id` through the scheduler and wait; raise unless the run succeeds. Returns (run id, wall s)."""
    client.wait_for_dag(dag_id)
    client.unpause(dag_id)
    started = time.monotonic()
    run_id = client.trigger(dag_id, conf)
    run = client.wait_for_run(dag_id, run_id, timeout=900, on_progress=lambda line: report(f"  {line}"))
    if run["state"] != "success":
        raise RuntimeError(f"{dag_id} run {run_id} ended {run['state']}: see the task logs in the Airflow UI")
    return run_id, time.monotonic() - started


def run_smoke_dag(client: AirflowClient, report: Callable[[str], None] = print) -> tuple[str, float]:
    """The smoke DAG through the scheduler, then Triton's prediction checked against the model's definition."""
    run_id, wall = run_dag(client, SMOKE_DAG, report=report)
    prediction = np.asarray(client.xcom(SMOKE_DAG, run_id, "check_prediction"), dtype=np.float32).reshape(-1, 1)
    check_prediction(SMOKE_INPUT, prediction)
    return run_id, wall


def _print_timings(client: AirflowClient, dag_id: str, run_id: str) -> None:
    for timing in client.task_timings(dag_id, run_id):
        print(f"  {timing.task_id:<22} {timing.state:<8} {timing.duration_s:6.2f} s")


def run_demo(stack: Stack, *, keep_up: bool) -> int:
    started = time.monotonic()
    print("== 1/3 stack up")
    stack.up()
    if notice := stack.credentials_notice():
        print(notice)
    creds = stack.credentials
    client = AirflowClient(stack.settings.airflow_url, creds.airflow_admin_user, creds.airflow_admin_password)
    try:
        print("== 2/3 smoke DAG through the scheduler")
        smoke_run, smoke_wall = run_smoke_dag(client)
        print(f"{SMOKE_DAG}: success in {smoke_wall:.1f} s; Triton's prediction matched y = 2x + 1.")
        _print_timings(client, SMOKE_DAG, smoke_run)

        print("== 3/3 assembly line: seed the operational source DB, train through the scheduler")
        seed = seed_source_database(stack.settings)
        print(f"  source table {seed.table!r}: {seed.rows} rows ({'loaded' if seed.written else 'already there'})")
        train_run, train_wall = run_dag(client, TRAIN_DAG)
        snapshot = client.xcom(TRAIN_DAG, train_run, "extract_snapshot")
        registered = client.xcom(TRAIN_DAG, train_run, "register_model")
        print(
            f"{TRAIN_DAG}: success in {train_wall:.1f} s; snapshot {snapshot['snapshot_id'][:12]} "
            f"({snapshot['rows']} rows) -> {registered['model_name']} v{registered['version']} @{registered['alias']}"
        )
        _print_timings(client, TRAIN_DAG, train_run)
    finally:
        client.close()
    s = stack.settings
    print(
        f"\nAirflow UI  {s.airflow_url}  (user {creds.airflow_admin_user}; password in {s.home / 'credentials.json'})\n"
        f"MLflow UI   {s.mlflow_url}  (experiment factory/{snapshot['dataset']}, model {registered['model_name']})\n"
        f"Triton      {s.triton_http_url}  S3  {s.s3_endpoint}\n"
        f"State, logs and credentials: {s.home}\nTotal: {time.monotonic() - started:.0f} s"
    )
    if keep_up:
        print("The stack keeps running (--keep-up); stop it with `.venv/bin/factory stack down`.")
    else:
        stack.down()
    return 0
