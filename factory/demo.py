"""The main job: bring the stack up and run the factory loop through the real scheduler, showing progress.

For now the loop is the stack smoke test (S3 write, MLflow run, Triton load, checked prediction); later stages
(train, gate, deploy, drift, retrain, rollout) are added here as their DAGs land.
"""

from __future__ import annotations

import time

import numpy as np

from factory.airflow_api import AirflowClient
from factory.stack import Stack
from serving.triton.smoke import SMOKE_INPUT, check_prediction

SMOKE_DAG = "factory_smoke"


def run_smoke_dag(client: AirflowClient, report=print) -> tuple[str, float]:
    """Trigger the smoke DAG through the scheduler, wait for it, verify the prediction it got from Triton."""
    client.wait_for_dag(SMOKE_DAG)
    client.unpause(SMOKE_DAG)
    started = time.monotonic()
    run_id = client.trigger(SMOKE_DAG)
    run = client.wait_for_run(SMOKE_DAG, run_id, timeout=600, on_progress=lambda line: report(f"  {line}"))
    wall = time.monotonic() - started
    if run["state"] != "success":
        raise RuntimeError(f"{SMOKE_DAG} run {run_id} ended {run['state']}: see the task logs in the Airflow UI")
    prediction = np.asarray(client.xcom(SMOKE_DAG, run_id, "check_prediction"), dtype=np.float32).reshape(-1, 1)
    check_prediction(SMOKE_INPUT, prediction)
    return run_id, wall


def run_demo(stack: Stack, *, keep_up: bool) -> int:
    started = time.monotonic()
    print("== 1/2 stack up")
    stack.up()
    if notice := stack.credentials_notice():
        print(notice)
    creds = stack.credentials
    print("== 2/2 smoke DAG through the scheduler")
    client = AirflowClient(stack.settings.airflow_url, creds.airflow_admin_user, creds.airflow_admin_password)
    try:
        run_id, wall = run_smoke_dag(client)
        timings = client.task_timings(SMOKE_DAG, run_id)
    finally:
        client.close()
    print(f"\nSmoke DAG {run_id}: success in {wall:.1f} s; Triton's prediction matched y = 2x + 1.")
    for timing in timings:
        print(f"  {timing.task_id:<20} {timing.state:<8} {timing.duration_s:6.2f} s")
    s = stack.settings
    print(
        f"\nAirflow UI  {s.airflow_url}  (user {creds.airflow_admin_user}; password in {s.home / 'credentials.json'})\n"
        f"MLflow UI   {s.mlflow_url}\nTriton      {s.triton_http_url}  S3  {s.s3_endpoint}\n"
        f"State, logs and credentials: {s.home}\nTotal: {time.monotonic() - started:.0f} s"
    )
    if keep_up:
        print("The stack keeps running (--keep-up); stop it with `.venv/bin/factory stack down`.")
    else:
        stack.down()
    return 0
