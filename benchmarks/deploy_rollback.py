"""Deploy (approved -> serving, verified on every host) and rollback wall times on a real stack.

A throwaway stack is started and two versions of flights-hgb are trained through the scheduler (A: January,
B: February). Deploy: B is deployed next to A on a two-host fleet (the stack's tritonserver plus a private
one on the same S3 repository), the way factory_rollout's deploy task does it: ONNX from the registry, parity
rows from the training snapshot, build, write-once upload, sha256 verification, load on both hosts in parallel,
readiness, smoke + parity inference on both. Before each round B's version folder is deleted and B unloaded,
so every round uploads. Reference: the repository-API call alone (`load_model` of the already-loaded
model on one host): what Triton itself costs, against everything a safe deploy adds.
Rollback: factory_rollback is triggered through the scheduler (default target: the previous champion) while
B serves; the figure is trigger -> run success, and the task's own time until every gateway replica routes
to the target. Reference: the routes switch alone (compare-and-set in Redis, applied by the replica).
Run: .venv/bin/python benchmarks/deploy_rollback.py [rounds]   (targets: deploy <= 30 s, rollback <= 10 s)
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from factory.airflow_api import AirflowClient
from factory.settings import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "plugins"))  # Airflow puts plugins/ on sys.path; this script does the same
from factory.dag_runs import run_dag
from factory.processes import free_ports
from factory.settings import isolated_settings
from factory.source_data import seed_source_database
from factory.stack import Stack, s3_client
from serving.model_repository.local_server import LocalTritonServer
from serving.triton.runtime import locate

MODEL = "flights-hgb"
WINDOWS = (("2013-01-01", "2013-01-15"), ("2013-02-01", "2013-02-15"))
DEPLOY_TARGET_S, ROLLBACK_TARGET_S = 30.0, 10.0


def train_two_versions(client: AirflowClient) -> tuple[int, int]:
    versions = []
    for start, end in WINDOWS:
        conf = {"interval_start": f"{start}T00:00:00Z", "interval_end": f"{end}T00:00:00Z", "owner": "benchmark"}
        run_id, _ = run_dag(client, "factory_train", conf, report=lambda line: None)
        versions.append(int(client.xcom("factory_train", run_id, "register_model")["version"]))
    return versions[0], versions[1]


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory(prefix="factory-bench-") as home:
        stack = Stack(isolated_settings(Path(home)), env={}, report=lambda line: None)
        stack.up()
        try:
            seed_source_database(stack.settings)
            creds, settings = stack.credentials, stack.settings
            client = AirflowClient(settings.airflow_url, creds.airflow_admin_user, creds.airflow_admin_password)
            a, b = train_two_versions(client)
            env = stack.airflow_env()
            os.environ.update({key: value for key, value in env.items() if key.startswith("AIRFLOW_CONN_")})
            aws = {"AWS_ACCESS_KEY_ID": creds.s3_access_key, "AWS_SECRET_ACCESS_KEY": creds.s3_secret_key,
                   "AWS_DEFAULT_REGION": settings.region}  # fmt: skip
            second = LocalTritonServer(
                locate(settings.triton_venv),
                settings.triton_repository_uri,
                Path(home) / "t2.log",
                free_ports(3),
                env=aws,
            )
            with second:
                deploys, floors = measure_deploy(stack, a, b, [settings.triton_http_url, second.http_url], rounds)
            rollbacks, in_task, switches = measure_rollback(client, a, b, rounds)
            client.close()
        finally:
            stack.down()
    deploy_s, floor_s = statistics.median(deploys), statistics.median(floors)
    print(
        f"deploy, approved -> serving on 2 hosts, verified: median {deploy_s:.2f} s over {rounds} rounds "
        f"(min {min(deploys):.2f}, max {max(deploys):.2f}); target {DEPLOY_TARGET_S:.0f} s: "
        f"{'met' if deploy_s <= DEPLOY_TARGET_S else 'NOT met'} ({deploy_s / DEPLOY_TARGET_S:.2f}x the target)"
    )
    print(
        f"  reference: bare load_model of the same versions on one host: median {floor_s:.2f} s; "
        f"deploy / bare load = {deploy_s / floor_s:.1f}x"
    )
    rollback_s, task_s, switch_s = statistics.median(rollbacks), statistics.median(in_task), statistics.median(switches)
    print(
        f"rollback through the scheduler, trigger -> success: median {rollback_s:.2f} s over {rounds} rounds "
        f"(min {min(rollbacks):.2f}, max {max(rollbacks):.2f}); target {ROLLBACK_TARGET_S:.0f} s: "
        f"{'met' if rollback_s <= ROLLBACK_TARGET_S else 'NOT met'} ({rollback_s / ROLLBACK_TARGET_S:.2f}x the target)"
    )
    print(f"  inside the task, until every gateway replica routes to the target: median {task_s:.2f} s")
    print(
        f"  reference: the routes switch alone (Redis compare-and-set, applied by the replica): median "
        f"{switch_s * 1000:.0f} ms; rollback / switch = {rollback_s / switch_s:.0f}x"
    )
    print(json.dumps({"deploy_s": deploys, "bare_load_s": floors, "rollback_s": rollbacks, "in_task_s": in_task}))


def measure_deploy(stack: Stack, a: int, b: int, hosts: list[str], rounds: int) -> tuple[list[float], list[float]]:

    from pipelines.rollout.policy import load_rollout_policy

    policy = load_rollout_policy()
    single_host = os.environ["AIRFLOW_CONN_FACTORY_TRITON"]
    connection = json.loads(single_host)
    connection["extra"] = connection.get("extra", {}) | {"pools": {"default": hosts}}
    os.environ["AIRFLOW_CONN_FACTORY_TRITON"] = json.dumps(connection)  # the fleet: both hosts, one pool
    try:
        return _deploy_rounds(stack, a, b, hosts, rounds, policy)
    finally:
        os.environ["AIRFLOW_CONN_FACTORY_TRITON"] = single_host


def _deploy_rounds(stack: Stack, a: int, b: int, hosts: list[str], rounds: int, policy) -> tuple[list, list]:
    import tritonclient.http as triton_http
    from factory_providers.rollout.operations import deploy
    from factory_providers.triton.hooks import TritonHook

    bucket, prefix = TritonHook().repository
    s3 = s3_client(stack.settings, stack.credentials)
    deploy(MODEL, [a], [a], policy)
    deploys, floors = [], []
    for _ in range(rounds):
        deploy(MODEL, [a], [], policy)  # B unloaded
        for item in s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/{MODEL}/{b}/").get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])
        started = time.monotonic()
        deploy(MODEL, [a, b], [b], policy)
        deploys.append(time.monotonic() - started)
        loader = triton_http.InferenceServerClient(hosts[0].removeprefix("http://"), network_timeout=60)
        started = time.monotonic()
        loader.load_model(MODEL)
        floors.append(time.monotonic() - started)
        loader.close()
    return deploys, floors


def measure_rollback(
    client: AirflowClient, a: int, b: int, rounds: int
) -> tuple[list[float], list[float], list[float]]:
    from factory_providers.gateway.hooks import GatewayHook
    from factory_providers.mlflow.aliases import AliasRegistry
    from factory_providers.rollout.operations import deploy

    from pipelines.rollout.plan import champion_routes
    from pipelines.rollout.policy import load_rollout_policy

    deploy(MODEL, [a, b], [a, b], load_rollout_policy())
    gateway = GatewayHook()
    with AliasRegistry.connect() as registry, gateway.route_store() as store:
        for version in (a, b):  # A champion, then B champion: A is `previous`
            current = registry.current(MODEL).get("champion")
            if current != str(version):
                registry.move_alias(
                    MODEL, "champion", str(version), expected=current, actor="benchmark", reason="set-up"
                )
            gateway.apply_routes(store, MODEL, champion_routes(version, "default"), reason="benchmark set-up")
        switches = []
        for version in (a, b) * rounds:
            started = time.monotonic()
            gateway.apply_routes(store, MODEL, champion_routes(version, "default"), reason="benchmark switch")
            switches.append(time.monotonic() - started)
    walls, in_task = [], []
    for _ in range(rounds):  # each rollback makes the other version champion; the default target flips back
        run_id, wall = run_dag(client, "factory_rollback", {"reason": "benchmark"}, report=lambda line: None)
        walls.append(wall)
        in_task.append(client.xcom("factory_rollback", run_id, "roll_back")["timings"]["routes_applied_s"])
    return walls, in_task, switches


if __name__ == "__main__":
    main()
