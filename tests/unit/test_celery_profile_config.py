"""The production profile's executor wiring, as data: CeleryExecutor env, worker services, pools, settings errors."""

from __future__ import annotations

import pytest

from factory.celery_workers import QUEUES, TRAINING_POOL, WORKER_NAME_VARIABLE, worker_hostname
from factory.credentials import load_or_create
from factory.services import airflow_env, airflow_pools, airflow_services
from factory.settings import SettingsError, StackSettings, isolated_settings


def _settings(tmp_path, **env: str) -> StackSettings:
    return StackSettings.from_env({"FACTORY_HOME": str(tmp_path), **env})


def test_embedded_profile_runs_local_executor_without_workers(tmp_path):
    settings = _settings(tmp_path)
    creds, _ = load_or_create(settings.home, {})
    env = airflow_env(settings, creds)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert not any(key.startswith("AIRFLOW__CELERY") for key in env)
    assert not [s for s in airflow_services(settings, creds) if "celery" in s.name]


def test_production_profile_runs_celery_with_two_workers_on_both_queues(tmp_path):
    settings = _settings(tmp_path, FACTORY_PROFILE="production", FACTORY_DB_PREFIX="ci_x")
    creds, _ = load_or_create(settings.home, {})
    env = airflow_env(settings, creds)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/1"
    assert env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX"] == "factory:celery:"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+postgresql://postgres@127.0.0.1:5432/ci_x_airflow"
    workers = [s for s in airflow_services(settings, creds) if s.name.startswith("airflow-celery-worker")]
    assert [s.name for s in workers] == ["airflow-celery-worker-1", "airflow-celery-worker-2"]
    nodes = [s.env[WORKER_NAME_VARIABLE] for s in workers]
    assert len(set(nodes)) == 2
    for worker, node in zip(workers, nodes, strict=True):
        assert worker.argv[worker.argv.index("--queues") + 1] == ",".join(QUEUES)
        assert worker.argv[worker.argv.index("--celery-hostname") + 1] == node
        assert worker.health_probe is not None and worker.depends_on == ("airflow-api-server",)


def test_worker_count_concurrency_and_pool_slots_are_settings(tmp_path):
    settings = _settings(
        tmp_path, FACTORY_PROFILE="production", FACTORY_CELERY_WORKERS="3", FACTORY_CELERY_WORKER_CONCURRENCY="4",
        FACTORY_TRAINING_POOL_SLOTS="2",
    )  # fmt: skip
    creds, _ = load_or_create(settings.home, {})
    workers = [s for s in airflow_services(settings, creds) if s.name.startswith("airflow-celery-worker")]
    assert len(workers) == 3
    assert all(w.argv[w.argv.index("--concurrency") + 1] == "4" for w in workers)
    assert airflow_pools(settings)[TRAINING_POOL][0] == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FACTORY_CELERY_WORKERS": "0"}, "FACTORY_CELERY_WORKERS='0' must be a positive integer"),
        ({"FACTORY_TRAINING_POOL_SLOTS": "two"}, "FACTORY_TRAINING_POOL_SLOTS='two' must be a positive integer"),
        ({"FACTORY_TASK_HEARTBEAT_TIMEOUT": "-5"}, "FACTORY_TASK_HEARTBEAT_TIMEOUT='-5' must be a positive integer"),
    ],
)
def test_bad_celery_settings_name_the_variable(tmp_path, env, message):
    with pytest.raises(SettingsError, match=message):
        _settings(tmp_path, **env)


def test_isolated_stacks_get_their_own_broker_keys(tmp_path):
    first, second = isolated_settings(tmp_path / "a"), isolated_settings(tmp_path / "b")
    assert first.celery_key_prefix != second.celery_key_prefix
    assert first.celery_key_prefix.startswith("factory-test:")


def test_task_instances_record_the_worker_node_name(monkeypatch):
    monkeypatch.setenv(WORKER_NAME_VARIABLE, "worker-2@host")
    assert worker_hostname() == "worker-2@host"
    monkeypatch.delenv(WORKER_NAME_VARIABLE)
    assert worker_hostname()  # the machine's name outside a local worker


def test_the_executor_follows_the_profile_unless_overridden(tmp_path):
    assert _settings(tmp_path).executor == "LocalExecutor"
    assert _settings(tmp_path, FACTORY_PROFILE="production").executor == "CeleryExecutor"
    local = _settings(tmp_path, FACTORY_PROFILE="production", FACTORY_AIRFLOW_EXECUTOR="LocalExecutor")
    creds, _ = load_or_create(local.home, {})
    assert airflow_env(local, creds)["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert not [s for s in airflow_services(local, creds) if "celery" in s.name]
    with pytest.raises(SettingsError, match="CeleryExecutor needs FACTORY_PROFILE=production"):
        _settings(tmp_path, FACTORY_AIRFLOW_EXECUTOR="CeleryExecutor")
    with pytest.raises(SettingsError, match="FACTORY_AIRFLOW_EXECUTOR='KubernetesExecutor'"):
        _settings(tmp_path, FACTORY_AIRFLOW_EXECUTOR="KubernetesExecutor")
