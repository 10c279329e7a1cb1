"""The production profile scaled out: factory_train through the real scheduler, tasks run by two Celery workers.

One stack for the module: Airflow and MLflow on the real PostgreSQL (per-run databases), CeleryExecutor with the
real Redis as broker (its own key prefix), results in PostgreSQL, two `airflow celery worker` services. One run of
factory_train, during which the worker registering the model is SIGKILLed (its whole process group, as a lost host)
while it writes the MLflow run. Then, from the task instances and MLflow:
- every task ran on one of the two workers; heavy tasks went through the `training` queue and pool;
- the scheduler noticed the silent task, its retry ran on the other worker, the run succeeded, nothing else re-ran;
- MLflow holds one complete run and one registered version for it (the registry's attempt key makes the retry reuse
  the run, not duplicate it); `stack up` brings the lost worker back.
One run, not a clean one and a killed one: the killed run shows everything a clean one would, in half the time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

import psutil
import pytest
from factory_providers.mlflow.registry import ATTEMPT_KEY_TAG, LOGGED_TAG

from factory.airflow_api import AirflowClient
from factory.celery_workers import TRAINING_POOL, TRAINING_QUEUE, WORKER_NAME_VARIABLE
from factory.services import Service
from factory.source_data import seed_source_database
from factory.stack import Stack
from pipelines.assembly import experiment_name, resolve_request
from pipelines.datasets.demo import load_demo_flights
from tests.integration.conftest import temporary_production_stack

pytestmark = [pytest.mark.services, pytest.mark.scheduler, pytest.mark.slow]

DAG_ID = "factory_train"
TWO_WEEKS = {
    "interval_start": "2013-01-01T00:00:00Z",
    "interval_end": "2013-01-15T00:00:00Z",
    "owner": "tests",
    "overrides": {"max_iter": 150},
}
HEAVY_TASKS = {"train_model", "evaluate_and_export", "gate_candidate"}  # @task(queue="training", pool="training")
KILLED_TASK = "register_model"  # the one whose retry could duplicate MLflow records if it were not retry-safe


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # A task lost with its worker is retried after 30 s of silence (the profile's default, 120 s, is for real hosts;
    # much shorter risks failing live tasks whose heartbeats are late on a loaded machine).
    with temporary_production_stack(tmp_path_factory.mktemp("celery"), FACTORY_TASK_HEARTBEAT_TIMEOUT="30") as stack:
        stack.up()
        spec = resolve_request(TWO_WEEKS).spec
        flights = load_demo_flights()
        # January is enough for the runs' interval and seeds in seconds instead of the full year's ~40 s.
        seed_source_database(stack.settings, frame=flights[flights[spec.time_column].dt.month == 1])
        yield stack


@pytest.fixture(scope="module")
def airflow(celery_stack: Stack) -> Iterator[AirflowClient]:
    client = celery_stack.airflow_client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def mlflow_client(celery_stack: Stack):
    import mlflow

    return mlflow.MlflowClient(celery_stack.settings.mlflow_url)


def _workers(stack: Stack) -> dict[str, Service]:
    """Celery node name (what task instances record as hostname) -> its stack service."""
    return {s.env[WORKER_NAME_VARIABLE]: s for s in stack.services if WORKER_NAME_VARIABLE in s.env}


@pytest.fixture(scope="module")
def killed_run(celery_stack: Stack, airflow: AirflowClient, mlflow_client) -> dict[str, str]:
    """factory_train with the registering worker killed mid-write: {run_id, victim (node), half_logged (MLflow)}."""
    airflow.wait_for_dag(DAG_ID)
    airflow.unpause(DAG_ID)
    run_id = airflow.trigger(DAG_ID, TWO_WEEKS)
    victim, half_logged = _kill_when_logging(
        celery_stack, airflow, mlflow_client, run_id, f"{DAG_ID}/{run_id}", _workers(celery_stack)
    )
    run = airflow.wait_for_run(DAG_ID, run_id, timeout=420)
    assert run["state"] == "success", [(ti["task_id"], ti["state"]) for ti in airflow.task_instances(DAG_ID, run_id)]
    return {"run_id": run_id, "victim": victim, "half_logged": half_logged}


def test_every_task_ran_on_a_worker_heavy_ones_on_the_training_queue_and_pool(celery_stack, airflow, killed_run):
    workers = _workers(celery_stack)
    assert len(workers) == 2
    executed = [ti for ti in airflow.task_instances(DAG_ID, killed_run["run_id"]) if ti["state"] == "success"]
    assert {ti["task_id"] for ti in executed} >= {"extract_snapshot", KILLED_TASK, *HEAVY_TASKS}
    for ti in executed:
        assert ti["hostname"] in workers, f"{ti['task_id']} ran on {ti['hostname']!r}, not on a Celery worker"
        heavy = ti["task_id"] in HEAVY_TASKS
        assert ti["queue"] == (TRAINING_QUEUE if heavy else "default"), ti["task_id"]
        assert ti["pool"] == (TRAINING_POOL if heavy else "default_pool"), ti["task_id"]


def test_the_killed_task_was_retried_on_the_other_worker_and_nothing_else_reran(celery_stack, airflow, killed_run):
    run_id, victim = killed_run["run_id"], killed_run["victim"]
    tries = sorted(airflow.task_tries(DAG_ID, run_id, KILLED_TASK), key=lambda ti: ti["try_number"])
    assert (tries[0]["try_number"], tries[0]["hostname"]) == (1, victim)
    assert (tries[-1]["try_number"], tries[-1]["state"]) == (2, "success")
    survivor = tries[-1]["hostname"]
    assert survivor in _workers(celery_stack) and survivor != victim, f"the retry ran on {survivor!r}"
    others = [ti for ti in airflow.task_instances(DAG_ID, run_id) if ti["task_id"] != KILLED_TASK]
    assert all(ti["try_number"] <= 1 for ti in others), [(ti["task_id"], ti["try_number"]) for ti in others]


def test_mlflow_holds_one_complete_run_and_one_version_for_the_airflow_run(airflow, mlflow_client, killed_run):
    from mlflow.entities import ViewType

    run_id = killed_run["run_id"]
    experiment = mlflow_client.get_experiment_by_name(experiment_name("flights"))
    runs = mlflow_client.search_runs(
        [experiment.experiment_id], f"tags.`{ATTEMPT_KEY_TAG}` = '{DAG_ID}/{run_id}'", run_view_type=ViewType.ALL
    )
    active = [r for r in runs if r.info.lifecycle_stage == "active"]
    assert len(active) == 1 and active[0].data.tags.get(LOGGED_TAG) == "true"
    assert killed_run["half_logged"] in {r.info.run_id for r in runs}  # the killed attempt had started writing
    registered = airflow.xcom(DAG_ID, run_id, KILLED_TASK)
    assert registered["run_id"] == active[0].info.run_id
    run_ids = {r.info.run_id for r in runs}
    versions = [
        version
        for version in mlflow_client.search_model_versions(f"name = '{registered['model_name']}'")
        if version.run_id in run_ids
    ]
    assert [version.version for version in versions] == [registered["version"]]


def test_stack_up_brings_the_lost_worker_back(celery_stack, killed_run):
    name = _workers(celery_stack)[killed_run["victim"]].name
    assert {s.name: s.state for s in celery_stack.status()}[name] == "stopped"
    assert {s.name: s.state for s in celery_stack.up([name])}[name] == "healthy"


def _kill_when_logging(
    stack: Stack, airflow: AirflowClient, mlflow_client, run_id: str, attempt_key: str, workers: dict[str, Service]
) -> tuple[str, str]:
    """SIGKILL the worker running KILLED_TASK once its MLflow run exists; return (worker node, that MLflow run)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        ti = next(ti for ti in airflow.task_instances(DAG_ID, run_id) if ti["task_id"] == KILLED_TASK)
        assert ti["state"] not in {"success", "failed"}, f"{KILLED_TASK} ended {ti['state']} before it could be killed"
        if ti["state"] == "running" and ti["hostname"] in workers:
            experiment = mlflow_client.get_experiment_by_name(experiment_name("flights"))
            runs = (
                mlflow_client.search_runs([experiment.experiment_id], f"tags.`{ATTEMPT_KEY_TAG}` = '{attempt_key}'")
                if experiment
                else []
            )
            if runs:
                assert runs[0].data.tags.get(LOGGED_TAG) != "true", "the run was complete before the kill"
                _kill_process_group(stack, workers[ti["hostname"]])
                return ti["hostname"], runs[0].info.run_id
        time.sleep(0.2)
    raise AssertionError(f"{KILLED_TASK} never started logging to MLflow")


def _kill_process_group(stack: Stack, service: Service) -> None:
    """SIGKILL the worker, its pool processes and the task processes under them at once: no warm shutdown, no ack,
    no final heartbeat, as when a host is lost."""
    pid = next(status.pid for status in stack.status() if status.name == service.name)
    leader = psutil.Process(pid)
    family = [leader, *leader.children(recursive=True)]
    os.killpg(pid, signal.SIGKILL)
    for proc in family:  # any that left the process group
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    _, alive = psutil.wait_procs(family, timeout=10)
    assert not alive, f"still alive after SIGKILL: {alive}"
