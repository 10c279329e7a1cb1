"""The smoke DAG end to end: in-process with dag.test(), and through the real scheduler via the REST API."""

from __future__ import annotations

import subprocess
import sys

import pytest

from factory.airflow_api import AirflowClient
from factory.dag_runs import SMOKE_DAG, run_smoke_dag
from factory.settings import PROJECT_ROOT
from tests.integration.conftest import stack_subprocess_env

pytestmark = pytest.mark.services

DAG_TEST = f"""
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(PROJECT_ROOT / "dags")!r})
assert not bag.import_errors, bag.import_errors
run = bag.get_dag({SMOKE_DAG!r}).test()
print("DAGRUN_STATE", run.state)
"""


def test_smoke_dag_in_process(live_stack):
    # A child process, because Airflow binds its metadata DB at import: this one must use the live stack's.
    result = subprocess.run(
        [sys.executable, "-c", DAG_TEST], env=stack_subprocess_env(live_stack), capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert "DAGRUN_STATE success" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.scheduler
def test_smoke_dag_through_the_scheduler(live_stack):
    creds = live_stack.credentials
    client = AirflowClient(live_stack.settings.airflow_url, creds.airflow_admin_user, creds.airflow_admin_password)
    try:
        run_id, _ = run_smoke_dag(client, report=lambda line: None)  # raises unless success + correct prediction
        timings = client.task_timings(SMOKE_DAG, run_id)
    finally:
        client.close()
    assert {t.task_id: t.state for t in timings} == {
        "write_s3_object": "success", "log_mlflow_run": "success", "load_smoke_model": "success",
        "check_prediction": "success",
    }  # fmt: skip
