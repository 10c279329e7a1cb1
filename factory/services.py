"""The services of the local stack: how each one is started and how its health is checked.

Each `Service` is plain data (argv, environment, ports, health URL); `stack.py` owns the lifecycle. The Airflow
environment built here is also what tests and the CLI use to talk to the same stack (connections as AIRFLOW_CONN_*).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from factory import celery_workers
from factory.credentials import Credentials
from factory.settings import PROJECT_ROOT, StackSettings
from serving.triton.runtime import locate as locate_triton

ORCHESTRATION_BIN = Path(sys.executable).parent

# Connection ids the DAGs and hooks use. Their content comes from the environment only.
S3_CONN_ID = "factory_s3"
MLFLOW_CONN_ID = "factory_mlflow"
TRITON_CONN_ID = "factory_triton"
GATEWAY_CONN_ID = "factory_gateway"
SOURCE_CONN_ID = "factory_source"


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    ports: dict[str, int]
    health_url: str
    startup_timeout: float = 90.0
    health_expect: tuple[int, ...] = (200,)
    stop_timeout: float = 15.0
    depends_on: tuple[str, ...] = field(default_factory=tuple)
    # Set when `health_url` is a JSON health report of several components: this one must say "healthy".
    health_component: str | None = None
    # Set for services with no HTTP endpoint of their own (Celery workers): called instead of fetching health_url.
    health_probe: Callable[[], bool] | None = None


def connection_env(settings: StackSettings, creds: Credentials) -> dict[str, str]:
    """Airflow Connections for S3, MLflow and Triton, passed as AIRFLOW_CONN_* JSON (never stored in code)."""
    s3 = {
        "conn_type": "aws",
        "login": creds.s3_access_key,
        "password": creds.s3_secret_key,
        "extra": {"endpoint_url": settings.s3_endpoint, "region_name": settings.region},
    }
    mlflow = {"conn_type": "http", "host": settings.host, "port": settings.ports.mlflow, "schema": "http"}
    triton = {
        "conn_type": "http",
        "host": settings.host,
        "port": settings.ports.triton_http,
        "schema": "http",
        "extra": {
            "grpc_port": settings.ports.triton_grpc,
            "metrics_port": settings.ports.triton_metrics,
            "repository_bucket": settings.triton_bucket,
            "repository_prefix": settings.triton_prefix,
            # The fleet deploys go to (TritonHook.pools): every host, one pool, the one every gateway replica uses.
            "pools": {"default": settings.triton_http_urls},
        },
    }
    # The serving gateway: its (first replica's) HTTP endpoint and token, and where the routing state every replica
    # reads lives (RouteStore); rollouts find the other replicas there, by the URLs they advertise.
    gateway = {
        "conn_type": "http",
        "host": settings.host,
        "port": settings.ports.gateway,
        "schema": "http",
        "password": creds.gateway_token,
        "extra": {"redis_url": settings.redis_url, "redis_prefix": settings.gateway_redis_prefix},
    }
    if settings.profile == "production":
        server = settings.postgres_dsn.removeprefix("postgresql://").rsplit("/", 1)[0]
        login, _, hostport = server.rpartition("@")
        host, _, port = hostport.partition(":")
        source = {
            "conn_type": "postgres", "host": host, "port": int(port or 5432), "login": login.split(":")[0] or None,
            "schema": f"{settings.database_prefix}_source",
        }  # fmt: skip
    else:
        source = {"conn_type": "sqlite", "host": str(settings.source_database)}
    return {
        f"AIRFLOW_CONN_{SOURCE_CONN_ID.upper()}": json.dumps(source),
        f"AIRFLOW_CONN_{S3_CONN_ID.upper()}": json.dumps(s3),
        f"AIRFLOW_CONN_{MLFLOW_CONN_ID.upper()}": json.dumps(mlflow),
        f"AIRFLOW_CONN_{TRITON_CONN_ID.upper()}": json.dumps(triton),
        f"AIRFLOW_CONN_{GATEWAY_CONN_ID.upper()}": json.dumps(gateway),
    }


def airflow_env(settings: StackSettings, creds: Credentials) -> dict[str, str]:
    """The environment every Airflow component (and in-process `dag.test()`) runs with."""
    home = settings.airflow_home
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_folder),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": settings.executor,
        # At most this many tasks run at once (LocalExecutor forks that many): size it to the machine, not 32.
        "AIRFLOW__CORE__PARALLELISM": str(settings.airflow_parallelism),
        "AIRFLOW__CORE__FERNET_KEY": creds.airflow_fernet_key,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{creds.airflow_admin_user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{settings.airflow_url}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.database_url("airflow"),
        "AIRFLOW__API__BASE_URL": settings.airflow_url,
        "AIRFLOW__API__HOST": settings.host,
        "AIRFLOW__API__PORT": str(settings.ports.airflow),
        "AIRFLOW__API__SECRET_KEY": creds.airflow_api_secret_key,
        "AIRFLOW__API_AUTH__JWT_SECRET": creds.airflow_jwt_secret,
        # New and changed DAG files show up within seconds instead of the default 5 minutes.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        # A task whose worker died is retried after this long without a heartbeat (Airflow's default: 5 min).
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(settings.task_heartbeat_timeout),
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "FACTORY_HOME": str(settings.home),
        **_celery_env(settings),
        **connection_env(settings, creds),
    }


def _celery_env(settings: StackSettings) -> dict[str, str]:
    """CeleryExecutor (production profile): broker Redis under the stack's key prefix, results in PostgreSQL."""
    if settings.executor != "CeleryExecutor":
        return {}
    return {
        "AIRFLOW__CELERY__BROKER_URL": settings.celery_broker_url,
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": settings.celery_key_prefix,
        # Redelivery of an unacknowledged task: longer than any task runs. A task lost with its worker is retried
        # sooner, by the scheduler (task_instance_heartbeat_timeout); a late redelivery is refused by the API.
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + settings.database_url("airflow").replace("+psycopg2", ""),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(settings.celery_worker_concurrency),
        # One message in hand per free slot: a busy worker does not hold tasks another, idle, worker could run.
        "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
        # Load plugins and the task runner once per worker, not once per task (see factory/celery_preload.py).
        "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": json.dumps({"imports": ["factory.celery_preload"]}),
    }


def airflow_pools(settings: StackSettings) -> dict[str, tuple[int, str]]:
    """Pools the DAGs use (name -> slots, description); created on every profile, since a task naming a missing
    pool is never scheduled."""
    return {
        celery_workers.TRAINING_POOL: (
            settings.training_pool_slots,
            "heavy tasks (training, evaluation, gate): each already uses every core it gets",
        )
    }


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env["PATH"] = f"{ORCHESTRATION_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def _aws_env(settings: StackSettings, creds: Credentials) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": creds.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": creds.s3_secret_key,
        "AWS_DEFAULT_REGION": settings.region,
    }


def s3_identities(creds: Credentials) -> dict[str, object]:
    """SeaweedFS S3 identity file: one account with the actions the stack needs; other keys are refused."""
    return {
        "identities": [
            {
                "name": "factory",
                "credentials": [{"accessKey": creds.s3_access_key, "secretKey": creds.s3_secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }


def seaweedfs(settings: StackSettings) -> Service:
    p = settings.ports
    data = settings.s3_data_dir
    argv = [
        str(ORCHESTRATION_BIN / "weed"), "server",
        f"-dir={data / 'volumes'}", f"-ip={settings.host}", f"-ip.bind={settings.host}",
        f"-master.port={p.weed_master}", f"-master.port.grpc={p.weed_master_grpc}",
        f"-volume.port={p.weed_volume}", f"-volume.port.grpc={p.weed_volume_grpc}",
        f"-filer.port={p.weed_filer}", f"-filer.port.grpc={p.weed_filer_grpc}",
        "-s3", f"-s3.port={p.s3}", f"-s3.port.grpc={p.s3_grpc}", f"-s3.config={data / 'identities.json'}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
        # Each bucket is a collection that grows 7 volumes at a time: leave room for many buckets, keep them small.
        "-volume.max=200", "-master.volumeSizeLimitMB=1024",
    ]  # fmt: skip
    ports = {name: getattr(p, name) for name in p.as_dict() if name.startswith(("s3", "weed_"))}
    # An unsigned request is refused with 403 once S3 is up: that is the health signal.
    return Service("s3", argv, _base_env(), ports, f"{settings.s3_endpoint}/", health_expect=(403,), stop_timeout=8)


def mlflow(settings: StackSettings, creds: Credentials) -> Service:
    env = {**_base_env(), **_aws_env(settings, creds), "MLFLOW_S3_ENDPOINT_URL": settings.s3_endpoint}
    argv = [
        str(ORCHESTRATION_BIN / "mlflow"), "server",
        "--host", settings.host, "--port", str(settings.ports.mlflow), "--workers", "2",
        "--backend-store-uri", settings.database_url("mlflow").replace("+psycopg2", ""),
        "--artifacts-destination", f"s3://{settings.mlflow_bucket}/artifacts",
        "--allowed-hosts", f"{settings.host}:{settings.ports.mlflow},localhost:{settings.ports.mlflow}",
    ]  # fmt: skip
    return Service(
        "mlflow", argv, env, {"mlflow": settings.ports.mlflow}, f"{settings.mlflow_url}/health",
        depends_on=("s3",), startup_timeout=120,
    )  # fmt: skip


def triton(settings: StackSettings, creds: Credentials, host: int = 1) -> Service:
    """Triton host `host` (1: service `triton`, N: `triton-N` on its own ports); every host loads the same S3
    repository, so the fleet is one pool and a deploy loads each version on all of them."""
    runtime = locate_triton(settings.triton_venv)
    http, grpc, metrics = settings.triton_ports(host).values()
    env = {
        **_base_env(),
        **_aws_env(settings, creds),
        "PATH": f"{runtime.bin_dir}:{_base_env()['PATH']}",
        "LD_LIBRARY_PATH": ":".join(str(path) for path in runtime.library_path),
        "VIRTUAL_ENV": str(runtime.venv),
    }
    argv = [
        str(runtime.server_binary),
        f"--model-repository={settings.triton_repository_uri}",
        "--model-control-mode=explicit",
        f"--backend-directory={runtime.backend_directory}",
        f"--http-address={settings.host}", f"--http-port={http}",
        f"--grpc-address={settings.host}", f"--grpc-port={grpc}",
        f"--metrics-address={settings.host}", f"--metrics-port={metrics}",
        "--allow-gpu-metrics=false", "--exit-timeout-secs=5", "--log-verbose=0",
    ]  # fmt: skip
    return Service(
        _numbered("triton", host),
        argv,
        env,
        settings.triton_ports(host),
        f"http://{settings.host}:{http}/v2/health/ready",
        depends_on=("s3",),
        stop_timeout=10,
    )


def gateway(settings: StackSettings, creds: Credentials, replica: int = 1) -> Service:
    """Serving gateway replica `replica` (serving/gateway; 1: service `gateway`, N: `gateway-N` on its own port).

    Every replica routes over every Triton host (one `default` pool) and reads the same routes in Redis (one key
    prefix), under its own replica id and the URL rollouts scrape its /metrics at. Redis is not a stack service
    (127.0.0.1:6379 runs on the machine, as PostgreSQL does): without it the gateway still starts and says so on
    /healthz, and predictions answer 503 until the routing state loads.
    """
    port = settings.gateway_port(replica)
    url = f"http://{settings.host}:{port}"
    env = {
        **_base_env(),
        **_aws_env(settings, creds),
        "FACTORY_GATEWAY_TOKEN": creds.gateway_token,
        "FACTORY_GATEWAY_HOST": settings.host,
        "FACTORY_PORT_GATEWAY": str(port),
        "FACTORY_GATEWAY_POOLS": json.dumps({"default": settings.triton_http_urls}),
        "FACTORY_REDIS_URL": settings.redis_url,
        "FACTORY_GATEWAY_REDIS_PREFIX": settings.gateway_redis_prefix,
        "FACTORY_GATEWAY_REPLICA_ID": f"local-{port}",
        "FACTORY_GATEWAY_ADVERTISE_URL": url,
        "FACTORY_GATEWAY_SAMPLE_SHARE": str(settings.gateway_sample_share),
        "FACTORY_GATEWAY_SAMPLE_BUCKET": settings.data_bucket,
        "FACTORY_GATEWAY_S3_ENDPOINT": settings.s3_endpoint,
    }
    tritons = tuple(_numbered("triton", host) for host in range(1, settings.triton_hosts + 1))
    return Service(
        _numbered("gateway", replica),
        [str(ORCHESTRATION_BIN / "python"), "-m", "serving.gateway"],
        env,
        {"gateway" if replica == 1 else f"gateway_{replica}": port},
        f"{url}/healthz",
        depends_on=("s3", *tritons),
        stop_timeout=15,  # SIGTERM: drain requests, flush the last samples to S3
    )


def _numbered(name: str, index: int) -> str:
    """The first of several alike services keeps its plain name (`triton`), the others are `triton-2`, ..."""
    return name if index == 1 else f"{name}-{index}"


AIRFLOW_COMPONENTS = ("scheduler", "dag-processor", "triggerer")


def airflow_services(settings: StackSettings, creds: Credentials) -> list[Service]:
    env = {**_base_env(), **airflow_env(settings, creds)}
    airflow = str(ORCHESTRATION_BIN / "airflow")
    api = Service(
        "airflow-api-server",
        [
            airflow,
            "api-server",
            "--host",
            settings.host,
            "--port",
            str(settings.ports.airflow),
            "--workers",
            "1",
        ],
        env,
        {"airflow": settings.ports.airflow},
        f"{settings.airflow_url}/api/v2/monitor/health",
        depends_on=("s3", "mlflow", "triton"),
        startup_timeout=120,
    )
    # Scheduler, dag-processor and triggerer bind no port: their health is their entry in the API server's report.
    components = [
        Service(
            f"airflow-{component}",
            [airflow, component],
            env,
            {},
            api.health_url,
            depends_on=("airflow-api-server",),
            startup_timeout=120,
            stop_timeout=20,
            health_component=component.replace("-", "_"),
        )
        for component in AIRFLOW_COMPONENTS
    ]
    return [api, *components, *celery_worker_services(settings, env)]


def celery_worker_services(settings: StackSettings, env: dict[str, str]) -> list[Service]:
    """`airflow celery worker` × `celery_workers` (production profile), each with its own node name and log.

    Task logs stay in the shared `$AIRFLOW_HOME/logs` (as a shared volume would be), so the API server reads them
    from disk and the workers serve none (`--skip-serve-logs`: no log-server port to collide on one machine).
    """
    if settings.executor != "CeleryExecutor":
        return []
    services = []
    for index in range(1, settings.celery_workers + 1):
        node = celery_workers.node_name(f"worker-{index}")
        argv = [
            str(ORCHESTRATION_BIN / "airflow"), "celery", "worker",
            "--queues", ",".join(celery_workers.QUEUES),
            "--concurrency", str(settings.celery_worker_concurrency),
            "--celery-hostname", node, "--skip-serve-logs", "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        worker_env = {
            **env,
            celery_workers.WORKER_NAME_VARIABLE: node,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "factory.celery_workers.worker_hostname",
        }
        probe = functools.partial(celery_workers.ping, settings.celery_broker_url, settings.celery_key_prefix, node)
        services.append(
            Service(
                f"airflow-celery-worker-{index}", argv, worker_env, {}, f"{settings.celery_broker_url}#{node}",
                depends_on=("airflow-api-server",), startup_timeout=120,
                stop_timeout=30,  # SIGTERM is a warm shutdown: running tasks may finish first
                health_probe=probe,
            )
        )  # fmt: skip
    return services


def all_services(settings: StackSettings, creds: Credentials) -> list[Service]:
    """Every service in start order (dependencies first)."""
    return [
        seaweedfs(settings),
        mlflow(settings, creds),
        *(triton(settings, creds, host) for host in range(1, settings.triton_hosts + 1)),
        *(gateway(settings, creds, replica) for replica in range(1, settings.gateway_replicas + 1)),
        *airflow_services(settings, creds),
    ]
