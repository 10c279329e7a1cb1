"""Deploy, rollout and rollback on the real stack: Triton fleet from S3, the gateway, Redis routes, the registry.

Two registered versions of `flights-hgb` from factory_train runs (made here if the session has none) play
champion (A) and challenger (B). In-process, against the stack's Triton plus a second private tritonserver on
the same S3 repository (a two-host fleet): a deploy is all-or-nothing, refuses a tampered version folder and
restores the fleet when a host dies mid-deploy. Through the real scheduler, while clients keep predicting
through the stack's gateway: factory_rollout walks B from shadow to champion, factory_rollback restores A,
and a rollout whose guardrails breach is routed back to the champion by itself; no request fails.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from factory.airflow_api import AirflowClient
from factory.processes import free_ports
from factory.stack import Stack, s3_client
from pipelines.rollout.policy import load_rollout_policy
from serving.model_repository.local_server import LocalTritonServer
from serving.triton.runtime import locate
from tests.integration.conftest import stack_subprocess_env
from tests.integration.rollout_support import (
    MODEL,
    Load,
    alias_registry,
    connections_of,
    fast_policy,
    feature_rows,
    ready,
    records,
    running_load,
    serve_champion,
    set_alias,
    train_versions,
)

pytestmark = [pytest.mark.services, pytest.mark.scheduler, pytest.mark.slow]


@pytest.fixture(scope="module")
def airflow(live_stack: Stack) -> Iterator[AirflowClient]:
    client = live_stack.airflow_client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def connections(live_stack: Stack) -> Iterator[None]:
    with connections_of(live_stack):
        yield


@pytest.fixture(scope="module")
def versions(live_stack: Stack, airflow: AirflowClient, connections) -> tuple[int, int]:
    """(A, B): two real factory_train versions (ONNX, run record, snapshot), trained here when missing."""
    return train_versions(live_stack, airflow)


@pytest.fixture(scope="module")
def registry(live_stack: Stack):
    return alias_registry(live_stack)


@pytest.fixture
def load(live_stack: Stack, versions) -> Iterator[Load]:
    settings = live_stack.settings
    with running_load(settings.gateway_url, live_stack.credentials.gateway_token, feature_rows(versions[0]), 3) as load:
        yield load


@pytest.fixture
def serving_a(versions, registry, connections) -> int:
    """A is champion, serving 100 % through the gateway from the stack's Triton; B is the challenger."""
    serve_champion(registry, *versions)
    return versions[0]


# ----- the scheduled path: rollout and rollback under load ---------------------------------------------------
def test_rollout_then_rollback_through_the_scheduler_fail_no_request(
    live_stack, airflow, versions, registry, serving_a, load, tmp_path
):
    a, b = versions
    airflow.wait_for_dag("factory_rollout")
    airflow.unpause("factory_rollout")
    airflow.unpause("factory_rollback")
    run_id = airflow.trigger("factory_rollout", {"policy": str(fast_policy(tmp_path / "fast.yaml"))})
    state = airflow.wait_for_run("factory_rollout", run_id, timeout=600)["state"]
    plan = airflow.xcom("factory_rollout", run_id, "plan_rollout")
    steps = records(live_stack, plan["rollout_id"])
    assert state == "success", "\n".join(f"{name}: {step['action']} {step['detail']}" for name, step in steps.items())
    assert [steps[name]["action"] for name in ("plan", "deploy", "shadow", "canary", "ramp", "promote", "bake")] == [
        "planned", "deployed", "continued", "continued", "continued", "promoted", "continued",
    ]  # fmt: skip
    assert steps["unload"]["action"] == "unloaded" and steps["outcome"]["detail"] == "promoted"
    assert steps["shadow"]["verdict"]["enough_evidence"] and steps["ramp"]["verdict"]["challenger_percent"] == 50
    assert {step["policy"] for step in steps.values()} == {f"{tmp_path / 'fast.yaml'}@{load_rollout_policy().version}"}
    assert registry.current(MODEL)["champion"] == str(b) and registry.current(MODEL)["previous"] == str(a)
    triton = live_stack.settings.triton_http_url
    assert ready(triton, b) and not ready(triton, a)  # the old champion unloaded after the bake
    served_during_rollout = dict(load.served)
    assert served_during_rollout.get(a) and served_during_rollout.get(b)

    started = time.monotonic()
    rollback = airflow.trigger("factory_rollback", {"reason": "test: restore A"})
    assert airflow.wait_for_run("factory_rollback", rollback, timeout=120)["state"] == "success"
    wall = time.monotonic() - started
    result = airflow.xcom("factory_rollback", rollback, "roll_back")
    assert (result["from"], result["to"]) == (b, a)
    assert registry.current(MODEL)["champion"] == str(a) and registry.current(MODEL)["previous"] == str(b)
    assert ready(triton, a)  # reloaded from its immutable folder: it had been unloaded
    time.sleep(1)
    before = load.served[a]
    time.sleep(1)
    assert load.served[a] > before  # clients are answered by A again
    assert wall < 60, f"rollback took {wall:.1f} s end to end"
    # Rolling back to `previous` again would restore B, the version just rolled back from: refused, nothing moves.
    again = airflow.trigger("factory_rollback", {"reason": "test: a second default rollback"})
    assert airflow.wait_for_run("factory_rollback", again, timeout=120)["state"] == "failed"
    assert registry.current(MODEL)["champion"] == str(a)

    assert set(load.statuses) == {200}, (load.statuses, load.failures)


def test_a_guardrail_breach_routes_everything_back_to_the_champion(
    live_stack, airflow, versions, registry, serving_a, load, tmp_path
):
    a, b = versions
    # Any mirrored answer differing from the champion's by more than 1e-6 counts; none may: a certain breach.
    policy = fast_policy(tmp_path / "strict.yaml", max_shadow_disagreement=0.0, disagreement_threshold=1e-6)
    airflow.wait_for_dag("factory_rollout")
    airflow.unpause("factory_rollout")
    run_id = airflow.trigger("factory_rollout", {"policy": str(policy)})
    final = airflow.wait_for_run("factory_rollout", run_id, timeout=600)

    assert final["state"] == "failed"
    plan = airflow.xcom("factory_rollout", run_id, "plan_rollout")
    steps = records(live_stack, plan["rollout_id"])
    assert steps["shadow"]["action"] == "rolled_back"
    assert "shadow_disagreement" in steps["shadow"]["detail"] and "canary" not in steps
    assert steps["outcome"]["detail"] == "stopped at shadow"
    assert registry.current(MODEL)["champion"] == str(a) and registry.current(MODEL)["challenger"] == str(b)
    from factory_providers.gateway.hooks import GatewayHook

    with GatewayHook().route_store() as store:
        routes = store.get_routes(MODEL).routes
    assert [(r.version, r.percent) for r in routes.routes] == [(a, 100)] and routes.shadow is None
    assert set(load.statuses) == {200}, (load.statuses, load.failures)


# ----- deploy: all or nothing on a two-host fleet -----------------------------------------------------------------
@pytest.fixture
def fleet(live_stack: Stack, connections, tmp_path) -> Iterator[tuple[str, LocalTritonServer]]:
    """The stack's Triton plus a private tritonserver on the same S3 repository: hosts of one pool."""
    settings, creds = live_stack.settings, live_stack.credentials
    env = {
        "AWS_ACCESS_KEY_ID": creds.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": creds.s3_secret_key,
        "AWS_DEFAULT_REGION": settings.region,
    }
    second = LocalTritonServer(
        locate(settings.triton_venv), settings.triton_repository_uri, tmp_path / "triton-2.log", free_ports(3), env=env
    )
    with second:
        yield settings.triton_http_url, second


def deploy_on(hosts: list[str], live: list[int], introduce: list[int], onnx_hook=None, parity_from_stack=True):
    """deploy_to_fleet on `hosts`, exactly as the rollout's deploy task calls it (parity rows: the training
    snapshot in S3, or, when S3 is what is being broken, synthetic rows of the signature)."""
    from factory_providers.mlflow.gate import fetch_version_onnx
    from factory_providers.mlflow.hooks import MlflowHook
    from factory_providers.rollout.operations import parity_inputs
    from factory_providers.s3.hooks import FactoryS3Hook
    from factory_providers.triton.fleet import deploy_to_fleet, offline_probe
    from factory_providers.triton.hooks import TritonHook

    from pipelines.export.signature import read_onnx_signature

    mlflow = MlflowHook()
    with mlflow.tracking() as client:
        graphs = {version: fetch_version_onnx(client, MODEL, str(version)) for version in live}
    signature = read_onnx_signature(graphs[live[0]])

    def onnx_of(version: int) -> bytes:
        if onnx_hook:
            onnx_hook(version)
        return graphs[version]

    if parity_from_stack:
        inputs = parity_inputs(mlflow, MODEL, live[0], 16, signature)
    else:
        inputs = {
            t.name: np.full(
                (4, 1), "x" if t.dtype == "BYTES" else 1.0, dtype=object if t.dtype == "BYTES" else np.float32
            )
            for t in signature.inputs
        }
    bucket, prefix = TritonHook().repository
    return deploy_to_fleet(
        FactoryS3Hook(),
        bucket=bucket,
        prefix=prefix,
        hosts=hosts,
        model=MODEL,
        live_versions=live,
        signature=signature,
        onnx_of=onnx_of,
        probe=offline_probe({v: graphs[v] for v in introduce}, inputs, 1e-5),
    )


def remove_version_folder(live_stack: Stack, version: int) -> None:
    from factory_providers.triton.hooks import TritonHook

    bucket, prefix = TritonHook().repository
    s3 = s3_client(live_stack.settings, live_stack.credentials)
    for item in s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/{MODEL}/{version}/").get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=item["Key"])


def test_deploy_reaches_every_host_and_refuses_a_tampered_version(live_stack, versions, fleet):
    from factory_providers.s3.hooks import FactoryS3Hook
    from factory_providers.triton.fleet import FleetDeployError
    from factory_providers.triton.hooks import TritonHook

    a, b = versions
    stack_host, second = fleet
    hosts = [stack_host, second.http_url]
    report = deploy_on(hosts, [a], [a])
    assert {host.host for host in report.hosts} == set(hosts)
    assert all(host.parity_max_abs_diff[str(a)] <= 1e-5 for host in report.hosts)
    assert all(ready(host, a) for host in hosts)

    # B's folder as a deploy would write it, then its graph replaced in S3 (a tampered artifact).
    remove_version_folder(live_stack, b)
    from factory_providers.mlflow.gate import fetch_version_onnx
    from factory_providers.mlflow.hooks import MlflowHook
    from factory_providers.triton.repository import StoredFiles, upload

    from pipelines.export.signature import read_onnx_signature
    from serving.model_repository import build_model_repository

    with MlflowHook().tracking() as client:
        graph = fetch_version_onnx(client, MODEL, str(b))
    files = build_model_repository(graph, read_onnx_signature(graph), MODEL, b, live_versions=[a, b])
    files.pop(f"{MODEL}/config.pbtxt")
    s3, (bucket, prefix) = FactoryS3Hook(), TritonHook().repository
    upload(s3, bucket, prefix, StoredFiles(s3, bucket, prefix, MODEL), files)
    s3.load_bytes(b"not the registered graph", key=f"{prefix}/{MODEL}/{b}/model.onnx", bucket_name=bucket, replace=True)

    with pytest.raises(FleetDeployError, match=r"sha256 differs from the manifest \(tampered artifact\)"):
        deploy_on(hosts, [a, b], [b])
    assert all(ready(host, a) and not ready(host, b) for host in hosts)  # nothing moved
    remove_version_folder(live_stack, b)


def test_a_host_dying_mid_deploy_restores_the_fleet_and_the_champion_keeps_serving(live_stack, versions, fleet):
    from factory_providers.triton.fleet import FleetDeployError

    a, b = versions
    stack_host, second = fleet
    hosts = [stack_host, second.http_url]
    deploy_on(hosts, [a], [a])
    remove_version_folder(live_stack, b)  # so the deploy builds B's folder: the moment the host dies

    with pytest.raises(FleetDeployError, match=rf"{second.http_url}.*restored the previous versions") as failure:
        deploy_on(hosts, [a, b], [b], onnx_hook=lambda version: second.stop())
    assert failure.value.restored
    assert ready(stack_host, a) and not ready(stack_host, b)  # the surviving host is back on the champion alone

    from factory_providers.triton.fleet import check_hosts

    with pytest.raises(FleetDeployError, match="down"):
        check_hosts(hosts)  # and a deploy to a fleet with a host down is refused before anything is written


# ----- blue-green: two pools, one switch -----------------------------------------------------------------------
CHILD = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
run = bag.get_dag("factory_rollout").test(run_conf=json.loads(sys.argv[2]))
print("DAGRUN " + json.dumps({"state": str(run.state), "run_id": run.run_id}), flush=True)
"""


def test_blue_green_deploys_to_the_idle_pool_and_switches_every_request_at_once(
    live_stack, versions, registry, fleet, tmp_path
):
    """Pools blue (the stack's tritonserver) and green (a private one) behind a private gateway replica; the
    rollout runs with dag.test() in a child process whose Connections name that fleet and that gateway."""
    import json
    import subprocess
    import sys
    import uuid

    from factory.settings import PROJECT_ROOT
    from pipelines.rollout.plan import champion_routes
    from serving.gateway import RouteStore
    from serving.gateway.local_process import LocalGateway

    a, b = versions
    blue, green = fleet[0], fleet[1].http_url
    settings = live_stack.settings
    deploy_on([blue], [a], [a])  # A serves on blue, B is nowhere yet
    prefix, token, (port,) = (
        f"factory-test:{uuid.uuid4().hex[:12]}",
        "blue-green-token-" + uuid.uuid4().hex,
        free_ports(1),
    )
    gateway_env = {
        "FACTORY_GATEWAY_TOKEN": token,
        "FACTORY_GATEWAY_POOLS": json.dumps({"blue": [blue], "green": [green]}),
        "FACTORY_REDIS_URL": settings.redis_url,
        "FACTORY_GATEWAY_REDIS_PREFIX": prefix,
        "FACTORY_GATEWAY_REPLICA_ID": "blue-green-replica",
        "FACTORY_GATEWAY_POLL_INTERVAL": "0.05",
    }
    store = RouteStore(settings.redis_url, prefix)
    store.set_routes(MODEL, champion_routes(a, "blue"), 0, reason="test set-up")
    set_alias(registry, "champion", a)
    set_alias(registry, "challenger", b)
    env = stack_subprocess_env(live_stack)
    triton = json.loads(env["AIRFLOW_CONN_FACTORY_TRITON"])
    triton["extra"] = triton.get("extra", {}) | {"pools": {"blue": [blue], "green": [green]}}
    gateway_conn = json.loads(env["AIRFLOW_CONN_FACTORY_GATEWAY"])
    gateway_conn |= {"port": port, "password": token}
    gateway_conn["extra"] = gateway_conn.get("extra", {}) | {"redis_prefix": prefix}
    env |= {"AIRFLOW_CONN_FACTORY_TRITON": json.dumps(triton), "AIRFLOW_CONN_FACTORY_GATEWAY": json.dumps(gateway_conn)}
    conf = {"strategy": "blue_green", "policy": str(fast_policy(tmp_path / "fast.yaml"))}
    try:
        with LocalGateway(gateway_env, tmp_path / "gateway.log", port) as gateway:
            load = Load(gateway.url, token, feature_rows(a))
            with ThreadPoolExecutor(max_workers=2) as pool:
                clients = [pool.submit(load.client, offset) for offset in range(2)]
                result = subprocess.run(
                    [sys.executable, "-c", CHILD, str(PROJECT_ROOT / "dags"), json.dumps(conf)],
                    env=env, capture_output=True, text=True, timeout=600, check=False,
                )  # fmt: skip
                time.sleep(1)
                load.stop.set()
                for future in clients:
                    future.result()
        runs = [json.loads(line[7:]) for line in result.stdout.splitlines() if line.startswith("DAGRUN ")]
        assert runs and runs[0]["state"] == "success", result.stdout[-3000:] + result.stderr[-3000:]
        routes = store.get_routes(MODEL).routes
        assert (routes.pool, [(r.version, r.percent) for r in routes.routes]) == ("green", [(b, 100)])
        assert ready(green, b) and ready(blue, b) and not ready(blue, a)  # both pools now serve B alone
        assert registry.current(MODEL)["champion"] == str(b)
        assert load.served[a] and load.served[b]  # A on blue before the switch, B on green after it
        assert set(load.statuses) == {200}, (load.statuses, load.failures)
    finally:
        for key in store._redis.scan_iter(f"{prefix}:*"):
            store._redis.delete(key)
        store.close()


def test_s3_down_fails_the_deploy_naming_the_endpoint_and_the_hosts_keep_serving(
    live_stack, versions, fleet, monkeypatch
):
    import json

    from factory_providers.triton.repository import RepositoryStoreError

    a, b = versions
    stack_host, second = fleet
    hosts = [stack_host, second.http_url]
    deploy_on(hosts, [a], [a])
    (port,) = free_ports(1)
    creds = live_stack.credentials
    endpoint = {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": live_stack.settings.region}
    conn = {"conn_type": "aws", "login": creds.s3_access_key, "password": creds.s3_secret_key, "extra": endpoint}
    monkeypatch.setenv("AIRFLOW_CONN_FACTORY_S3", json.dumps(conn))
    with pytest.raises(RepositoryStoreError, match=rf"S3 failed listing .*127.0.0.1:{port}"):
        deploy_on(hosts, [a, b], [b], parity_from_stack=False)
    assert all(ready(host, a) and not ready(host, b) for host in hosts)
