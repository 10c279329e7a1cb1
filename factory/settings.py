"""Stack settings: where state lives, which profile runs, and every port — all from the environment.

Everything a user may want to change is an environment variable (documented in `.env.example`); a `.env` file in
the project root is read too, so a developer can keep overrides without exporting them. Nothing here holds a
secret: credentials are generated once into the state directory (see `credentials.py`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

PROJECT_ROOT = Path(__file__).resolve().parent.parent

Profile = Literal["embedded", "production"]
PROFILES: tuple[str, ...] = ("embedded", "production")
Executor = Literal["LocalExecutor", "CeleryExecutor"]
# The embedded profile runs tasks as local processes; production hands them to Celery workers.
DEFAULT_EXECUTORS: dict[str, Executor] = {"embedded": "LocalExecutor", "production": "CeleryExecutor"}
# Triton hosts and gateway replicas per profile: production shows the scale-out shape (a fleet behind replicas
# sharing one routing state) on one machine; embedded stays one of each.
DEFAULT_REPLICAS: dict[str, int] = {"embedded": 1, "production": 2}
# Ports of Triton host N / gateway replica N (N >= 2) default to the first one's plus (N - 1) x this step;
# `FACTORY_PORT_<NAME>_<N>` (e.g. FACTORY_PORT_TRITON_HTTP_2) overrides one.
REPLICA_PORT_STEPS: dict[str, int] = {"triton_http": 10, "triton_grpc": 10, "triton_metrics": 10, "gateway": 1}


class SettingsError(ValueError):
    """A setting is malformed; the message names the variable and the value."""


@dataclass(frozen=True)
class Ports:
    """Every TCP port the local stack binds. SeaweedFS gRPC ports are explicit so two stacks can coexist."""

    s3: int = 8333
    s3_grpc: int = 18333
    weed_master: int = 9333
    weed_master_grpc: int = 19333
    weed_volume: int = 8380
    weed_volume_grpc: int = 18380
    weed_filer: int = 8888
    weed_filer_grpc: int = 18888
    mlflow: int = 5000
    triton_http: int = 8000
    triton_grpc: int = 8001
    triton_metrics: int = 8002
    airflow: int = 8080
    gateway: int = 8090

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Ports:
        values: dict[str, int] = {}
        for field in fields(cls):
            variable = f"FACTORY_PORT_{field.name.upper()}"
            raw = env.get(variable)
            if raw is None or raw == "":
                continue
            values[field.name] = _parse_port(variable, raw)
        ports = cls(**values)
        ports.check_distinct()
        return ports

    def as_dict(self) -> dict[str, int]:
        return {field.name: getattr(self, field.name) for field in fields(self)}

    def check_distinct(self) -> None:
        seen: dict[int, str] = {}
        for name, port in self.as_dict().items():
            if port in seen:
                raise SettingsError(
                    f"FACTORY_PORT_{name.upper()} and FACTORY_PORT_{seen[port].upper()} are both {port}"
                )
            seen[port] = name


def _parse_port(variable: str, raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise SettingsError(f"{variable}={raw!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise SettingsError(f"{variable}={port} is outside 1-65535")
    return port


@dataclass(frozen=True)
class StackSettings:
    """The resolved configuration of one local stack."""

    home: Path
    profile: Profile
    ports: Ports
    executor: Executor = "LocalExecutor"
    host: str = "127.0.0.1"
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    database_prefix: str = "factory"
    data_bucket: str = "factory-data"
    mlflow_bucket: str = "mlflow"
    triton_bucket: str = "triton-models"
    triton_prefix: str = "repository"
    region: str = "us-east-1"
    triton_venv: Path = PROJECT_ROOT / ".venv-triton"
    airflow_parallelism: int = 4
    # The serving gateway's routing state (Redis: replicas must agree) and its monitoring sample share.
    redis_url: str = "redis://127.0.0.1:6379/0"
    gateway_redis_prefix: str = "factory:gateway"
    gateway_sample_share: float = 1.0  # local traffic is small: log all of it for the monitor
    # Production profile: CeleryExecutor. Its broker is a Redis DB of its own; the key prefix keeps stacks sharing
    # that Redis (a developer's and a test session's) from taking each other's tasks.
    celery_broker_url: str = "redis://127.0.0.1:6379/1"
    celery_key_prefix: str = "factory:celery:"
    celery_workers: int = 2
    celery_worker_concurrency: int = 2
    # The `training` pool bounds heavy tasks (training, evaluation, gate) on any executor: one per two cores, as
    # each already uses every core it is given (HGB/torch threads).
    training_pool_slots: int = max(1, (os.cpu_count() or 2) // 2)
    # How long a task whose worker vanished (killed, host lost) stays `running` before the scheduler retries it.
    task_heartbeat_timeout: int = 120
    dags_folder: Path = PROJECT_ROOT / "dags"
    # Triton hosts (services triton, triton-2, ...) and gateway replicas (gateway, gateway-2, ...), and the ports of
    # every one after the first ("triton_http_2" -> port; the first ones use `ports`).
    triton_hosts: int = 1
    gateway_replicas: int = 1
    replica_ports: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackSettings:
        merged = {**read_dotenv(PROJECT_ROOT / ".env"), **(os.environ if env is None else env)}
        profile = merged.get("FACTORY_PROFILE", "embedded") or "embedded"
        if profile not in PROFILES:
            raise SettingsError(f"FACTORY_PROFILE={profile!r}: choose one of {', '.join(PROFILES)}")
        executor = merged.get("FACTORY_AIRFLOW_EXECUTOR") or DEFAULT_EXECUTORS[profile]
        if executor not in DEFAULT_EXECUTORS.values():
            raise SettingsError(f"FACTORY_AIRFLOW_EXECUTOR={executor!r}: choose LocalExecutor or CeleryExecutor")
        if executor == "CeleryExecutor" and profile != "production":
            raise SettingsError("FACTORY_AIRFLOW_EXECUTOR=CeleryExecutor needs FACTORY_PROFILE=production (PostgreSQL)")
        home = _project_path(merged.get("FACTORY_HOME") or ".factory")
        triton_hosts, gateway_replicas = replica_counts(merged, profile)
        ports = Ports.from_env(merged)
        replica_ports = _replica_ports(merged, ports, triton_hosts, gateway_replicas)
        prefix = merged.get("FACTORY_DB_PREFIX", "factory") or "factory"
        if not prefix.replace("_", "").isalnum() or not prefix[0].isalpha():
            raise SettingsError(f"FACTORY_DB_PREFIX={prefix!r}: use letters, digits and '_', starting with a letter")
        return cls(
            home=home,
            profile=profile,  # type: ignore[arg-type]  # checked against PROFILES above
            ports=ports,
            executor=executor,  # type: ignore[arg-type]  # checked above
            postgres_dsn=merged.get("FACTORY_POSTGRES_DSN") or cls.postgres_dsn,
            database_prefix=prefix,
            triton_venv=_project_path(merged.get("FACTORY_TRITON_VENV") or ".venv-triton"),
            redis_url=merged.get("FACTORY_REDIS_URL") or cls.redis_url,
            gateway_redis_prefix=merged.get("FACTORY_GATEWAY_REDIS_PREFIX") or cls.gateway_redis_prefix,
            gateway_sample_share=_parse_share(
                "FACTORY_GATEWAY_SAMPLE_SHARE", merged.get("FACTORY_GATEWAY_SAMPLE_SHARE") or "1.0"
            ),
            celery_broker_url=merged.get("FACTORY_CELERY_BROKER_URL") or cls.celery_broker_url,
            celery_key_prefix=merged.get("FACTORY_CELERY_KEY_PREFIX") or cls.celery_key_prefix,
            **{
                name: _parse_positive(variable, merged.get(variable) or str(getattr(cls, name)))
                for name, variable in _POSITIVE_SETTINGS.items()
            },
            dags_folder=_project_path(merged.get("FACTORY_DAGS_FOLDER") or "dags"),
            triton_hosts=triton_hosts,
            gateway_replicas=gateway_replicas,
            replica_ports=replica_ports,
        )

    # Layout of the state directory: everything the stack writes lives under `home`.
    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def s3_data_dir(self) -> Path:
        return self.home / "s3"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def source_database(self) -> Path:
        """The embedded profile's "operational" source database (SQLite) that extraction reads from."""
        return self.home / "source" / "operational.db"

    # Endpoints.
    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.host}:{self.ports.s3}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.host}:{self.ports.mlflow}"

    @property
    def triton_http_url(self) -> str:
        return f"http://{self.host}:{self.ports.triton_http}"

    def triton_ports(self, host: int) -> dict[str, int]:
        """Port purpose (as in FACTORY_PORT_<PURPOSE>) -> port of Triton host `host` (1-based)."""
        return self._replica_ports(("triton_http", "triton_grpc", "triton_metrics"), host)

    def gateway_port(self, replica: int) -> int:
        return next(iter(self._replica_ports(("gateway",), replica).values()))

    def _replica_ports(self, names: tuple[str, ...], index: int) -> dict[str, int]:
        if index == 1:
            return {name: getattr(self.ports, name) for name in names}
        extra = dict(self.replica_ports)
        return {f"{name}_{index}": extra[f"{name}_{index}"] for name in names}

    @property
    def triton_http_urls(self) -> list[str]:
        """Every Triton host's HTTP URL, the first one first: one pool, all loading the same S3 repository."""
        return [
            f"http://{self.host}:{next(iter(self.triton_ports(host).values()))}"
            for host in range(1, self.triton_hosts + 1)
        ]

    @property
    def gateway_urls(self) -> list[str]:
        return [f"http://{self.host}:{self.gateway_port(replica)}" for replica in range(1, self.gateway_replicas + 1)]

    @property
    def airflow_url(self) -> str:
        return f"http://{self.host}:{self.ports.airflow}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.ports.gateway}"

    @property
    def triton_repository_uri(self) -> str:
        """Triton's own S3 URI form: s3://<scheme>://<host:port>/<bucket>/<prefix>."""
        return f"s3://{self.s3_endpoint}/{self.triton_bucket}/{self.triton_prefix}"

    def database_url(self, component: Literal["airflow", "mlflow", "source"]) -> str:
        """SQLAlchemy URL of a component's database for the active profile ("source": the operational data)."""
        if self.profile == "embedded":
            paths = {
                "airflow": self.airflow_home / "airflow.db",
                "mlflow": self.mlflow_dir / "mlflow.db",
                "source": self.source_database,
            }
            return f"sqlite:///{paths[component]}"
        server = self.postgres_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://", 1)
        return f"{server}/{self.database_prefix}_{component}"


# Positive integers read from the environment: field -> variable.
_POSITIVE_SETTINGS = {
    "airflow_parallelism": "FACTORY_AIRFLOW_PARALLELISM",
    "celery_workers": "FACTORY_CELERY_WORKERS",
    "celery_worker_concurrency": "FACTORY_CELERY_WORKER_CONCURRENCY",
    "training_pool_slots": "FACTORY_TRAINING_POOL_SLOTS",
    "task_heartbeat_timeout": "FACTORY_TASK_HEARTBEAT_TIMEOUT",
}


def replica_counts(env: Mapping[str, str], profile: str) -> tuple[int, int]:
    """(Triton hosts, gateway replicas): FACTORY_TRITON_HOSTS and FACTORY_GATEWAY_REPLICAS, else the profile's."""
    default = str(DEFAULT_REPLICAS.get(profile, 1))
    return (
        _parse_positive("FACTORY_TRITON_HOSTS", env.get("FACTORY_TRITON_HOSTS") or default),
        _parse_positive("FACTORY_GATEWAY_REPLICAS", env.get("FACTORY_GATEWAY_REPLICAS") or default),
    )


def replica_port_names(triton_hosts: int, gateway_replicas: int) -> list[str]:
    """Port names of the hosts and replicas after the first (their variables are FACTORY_PORT_<NAME upper>)."""
    counts = {"triton_http": triton_hosts, "triton_grpc": triton_hosts, "triton_metrics": triton_hosts}
    counts["gateway"] = gateway_replicas
    return [f"{name}_{index}" for name, count in counts.items() for index in range(2, count + 1)]


def _replica_ports(
    env: Mapping[str, str], ports: Ports, triton_hosts: int, gateway_replicas: int
) -> tuple[tuple[str, int], ...]:
    result = {}
    for name in replica_port_names(triton_hosts, gateway_replicas):
        base, _, index = name.rpartition("_")
        variable = f"FACTORY_PORT_{name.upper()}"
        raw = env.get(variable)
        default = getattr(ports, base) + (int(index) - 1) * REPLICA_PORT_STEPS[base]
        result[name] = _parse_port(variable, raw) if raw else default
    seen = {port: name for name, port in ports.as_dict().items()}
    for name, port in result.items():
        if port in seen:
            raise SettingsError(f"FACTORY_PORT_{name.upper()} and FACTORY_PORT_{seen[port].upper()} are both {port}")
        if not 1 <= port <= 65535:
            raise SettingsError(f"FACTORY_PORT_{name.upper()}={port} is outside 1-65535 (set it explicitly)")
        seen[port] = name
    return tuple(result.items())


def isolated_settings(home: Path, **extra: str) -> StackSettings:
    """Settings for a throwaway stack (tests, benchmarks): its own state dir and a free port for every service
    (every Triton host and gateway replica included)."""
    from factory.processes import free_ports

    merged = {**read_dotenv(PROJECT_ROOT / ".env"), **extra}
    names = [field.name for field in fields(Ports)]
    names += replica_port_names(*replica_counts(merged, merged.get("FACTORY_PROFILE") or "embedded"))
    env = {f"FACTORY_PORT_{name.upper()}": str(port) for name, port in zip(names, free_ports(len(names)), strict=True)}
    # Its own routing-state keys too: Redis is shared with the developer's stack and other test sessions.
    stack_key = f"factory-test:{os.getpid()}-{env['FACTORY_PORT_GATEWAY']}"
    env["FACTORY_GATEWAY_REDIS_PREFIX"] = f"{stack_key}:gateway"
    env["FACTORY_CELERY_KEY_PREFIX"] = f"{stack_key}:celery:"
    return StackSettings.from_env({"FACTORY_HOME": str(home), **env, **extra})


def _parse_positive(variable: str, raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise SettingsError(f"{variable}={raw!r} must be a positive integer")
    return int(raw)


def _parse_share(variable: str, raw: str) -> float:
    try:
        share = float(raw)
    except ValueError:
        raise SettingsError(f"{variable}={raw!r} is not a number") from None
    if not 0 <= share <= 1:
        raise SettingsError(f"{variable}={share} is outside 0-1")
    return share


def _project_path(value: str) -> Path:
    """Relative paths in settings are relative to the project root, wherever the command runs from."""
    path = Path(value).expanduser()
    return (path if path.is_absolute() else PROJECT_ROOT / path).resolve()


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines (comments and blank lines ignored; no interpolation) so `.env` needs no extra package."""
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.removeprefix("export ").partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        value = value.strip()
        if value[:1] in ("'", '"'):
            value = value[1 : value.find(value[0], 1)] if value.find(value[0], 1) > 0 else value[1:]
        else:
            value = value.split(" #", 1)[0].split("\t#", 1)[0].strip()
        values[key.strip()] = value
    return values
