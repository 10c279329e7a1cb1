"""The production profile's serving fleet: two Triton hosts and two gateway replicas, a rollout run by Celery workers.

One stack for the module, on per-run PostgreSQL databases with CeleryExecutor (as test_celery_profile.py), started
with two Triton hosts (`triton`, `triton-2`, one S3 repository) and two gateway replicas (`gateway`, `gateway-2`,
one routing state in Redis). Two factory_train versions are trained through the scheduler; A serves on both hosts.
Then, while clients predict through BOTH replicas, factory_rollout walks B from shadow to champion through the
scheduler, its tasks run by the Celery workers. Checked: no request failed on either replica; both hosts serve only
B afterwards; both replicas apply the same routes state version; each replica spread its requests over both hosts.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import httpx
import pytest

from factory.airflow_api import AirflowClient
from factory.celery_workers import WORKER_NAME_VARIABLE
from factory.settings import StackSettings
from factory.stack import Stack
from pipelines.datasets.demo import load_demo_flights
from tests.integration.conftest import temporary_production_stack
from tests.integration.rollout_support import (
    MODEL,
    WINDOWS,
    alias_registry,
    connections_of,
    fast_policy,
    feature_rows,
    ready,
    records,
    running_load,
    serve_champion,
    train_versions,
)

pytestmark = [pytest.mark.services, pytest.mark.scheduler, pytest.mark.slow]

# Fewer boosting rounds than the checked-in config: the versions only need to exist and differ, and two training
# runs share one `training` pool slot on this machine.
QUICK_WINDOWS = tuple(window | {"overrides": {"max_iter": 100}} for window in WINDOWS)


@pytest.fixture(scope="module")
def fleet_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Two of each is the production profile's default; explicit here because it is what the module tests.
    home = tmp_path_factory.mktemp("fleet")
    with temporary_production_stack(home, FACTORY_TRITON_HOSTS="2", FACTORY_GATEWAY_REPLICAS="2") as stack:
        stack.up()
        yield stack


@pytest.fixture(scope="module")
def airflow(fleet_stack: Stack) -> Iterator[AirflowClient]:
    client = fleet_stack.airflow_client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def rollout(fleet_stack: Stack, airflow: AirflowClient, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """factory_rollout of B over A under load through both replicas: the run, its step records and the loads."""
    settings = fleet_stack.settings
    flights = load_demo_flights()
    with connections_of(fleet_stack):
        a, b = train_versions(fleet_stack, airflow, QUICK_WINDOWS, frame=flights[flights["time_hour"].dt.month <= 2])
        serve_champion(alias_registry(fleet_stack), a, b)
        before = _triton_requests(settings)
        rows, token = feature_rows(a), fleet_stack.credentials.gateway_token
        airflow.wait_for_dag("factory_rollout")
        airflow.unpause("factory_rollout")
        policy = fast_policy(tmp_path_factory.mktemp("policy") / "fast.yaml")
        with contextlib.ExitStack() as loads:
            per_replica = {url: loads.enter_context(running_load(url, token, rows, 2)) for url in settings.gateway_urls}
            run_id = airflow.trigger("factory_rollout", {"policy": str(policy)})
            run = airflow.wait_for_run("factory_rollout", run_id, timeout=600)
        plan = airflow.xcom("factory_rollout", run_id, "plan_rollout")
        return {
            "versions": (a, b),
            "run_id": run_id,
            "state": run["state"],
            "steps": records(fleet_stack, plan["rollout_id"]),
            "loads": per_replica,
            "triton_requests": {url: count - before[url] for url, count in _triton_requests(settings).items()},
        }


def test_the_stack_runs_two_triton_hosts_and_two_gateway_replicas_on_one_fleet(fleet_stack):
    settings = fleet_stack.settings
    by_name = {service.name: service for service in fleet_stack.services}
    assert {"triton", "triton-2", "gateway", "gateway-2"} <= set(by_name)
    assert len(set(settings.triton_http_urls)) == 2 and len(set(settings.gateway_urls)) == 2
    replicas = set()
    for url in settings.gateway_urls:
        health = httpx.get(f"{url}/healthz", timeout=5).json()
        assert health["pools"] == {"default": settings.triton_http_urls}
        replicas.add(health["replica"])
    assert len(replicas) == 2


def test_the_rollout_ran_on_celery_workers_and_no_request_failed_on_either_replica(fleet_stack, airflow, rollout):
    steps = rollout["steps"]
    assert rollout["state"] == "success", "\n".join(f"{name}: {s['action']} {s['detail']}" for name, s in steps.items())
    assert steps["promote"]["action"] == "promoted" and steps["outcome"]["detail"] == "promoted"
    assert steps["unload"]["action"] == "unloaded"
    workers = {
        service.env[WORKER_NAME_VARIABLE] for service in fleet_stack.services if WORKER_NAME_VARIABLE in service.env
    }
    executed = [ti for ti in airflow.task_instances("factory_rollout", rollout["run_id"]) if ti["state"] == "success"]
    assert executed and all(ti["hostname"] in workers for ti in executed), [
        (ti["task_id"], ti["hostname"]) for ti in executed
    ]
    a, b = rollout["versions"]
    for url, load in rollout["loads"].items():
        assert set(load.statuses) == {200}, (url, load.statuses, load.failures)
        assert load.served[a] and load.served[b], (url, load.served)  # each replica took part in the switch


def test_both_hosts_serve_only_the_new_champion_and_both_replicas_apply_the_same_routes(fleet_stack, rollout):
    from factory_providers.gateway.hooks import GatewayHook

    a, b = rollout["versions"]
    settings = fleet_stack.settings
    assert all(ready(url, b) and not ready(url, a) for url in settings.triton_http_urls)
    with connections_of(fleet_stack), GatewayHook().route_store() as store:
        table = store.get_routes(MODEL)
        applied = store.applied_versions(MODEL)
        advertised = store.replica_urls()
    assert [(route.version, route.percent) for route in table.routes.routes] == [(b, 100)]
    assert len(applied) == 2 and set(applied.values()) == {table.state_version}
    assert sorted(advertised.values()) == sorted(settings.gateway_urls)  # where the rollout scraped each replica
    for url in settings.gateway_urls:
        assert httpx.get(f"{url}/healthz", timeout=5).json()["routing"]["models"][MODEL] == table.state_version


def test_the_replicas_spread_requests_over_both_triton_hosts(rollout):
    counts = rollout["triton_requests"]
    total = sum(counts.values())
    assert total > 0 and all(count >= 0.25 * total for count in counts.values()), counts


def _triton_requests(settings: StackSettings) -> dict[str, float]:
    """Triton host URL -> successful inference requests of MODEL (every version) it served, from its /metrics."""
    counts = {}
    for host, url in enumerate(settings.triton_http_urls, start=1):
        metrics_port = list(settings.triton_ports(host).values())[2]
        text = httpx.get(f"http://{settings.host}:{metrics_port}/metrics", timeout=5).text
        pattern = rf'^nv_inference_request_success{{[^}}]*model="{re.escape(MODEL)}"[^}}]*}} (\S+)$'
        counts[url] = sum(float(value) for value in re.findall(pattern, text, flags=re.MULTILINE))
    return counts
