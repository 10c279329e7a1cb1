"""The local stack's lifecycle: up (idempotent, health-checked), down (no orphans), status, logs.

`up` starts only what is not already running and healthy, refuses a port held by a stranger (naming it), and on a
service that never becomes healthy stops that service and raises with the tail of its log. State, logs and pid
files live under `settings.home`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

from factory import processes
from factory.airflow_api import AirflowClient
from factory.credentials import Credentials, load_or_create, write_private_json
from factory.services import Service, airflow_env, airflow_pools, all_services, s3_identities
from factory.settings import PROJECT_ROOT, StackSettings

# The production profile's PostgreSQL databases are `<prefix>_<component>`.
DATABASE_COMPONENTS = ("airflow", "mlflow", "source")


class StackError(RuntimeError):
    """A service could not be started or stopped; the message says which and why."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str  # "healthy", "running (unhealthy)", "stopped"
    pid: int | None
    url: str


Reporter = Callable[[str], None]


class Stack:
    def __init__(self, settings: StackSettings, env: dict[str, str] | None = None, report: Reporter = print) -> None:
        self.settings = settings
        self.credentials, self.credentials_created = load_or_create(settings.home, env or dict(os.environ))
        self.services = all_services(settings, self.credentials)
        self._report = report

    # ----- public API -----------------------------------------------------------------------------------------
    def up(self, names: Iterable[str] | None = None) -> list[ServiceStatus]:
        wanted = self._with_dependencies(names)
        self._prepare_dirs()
        pending = [service for service in self.services if service.name in wanted]
        ready: set[str] = set()
        while pending:
            # Services whose dependencies are up start together (e.g. MLflow with Triton, and the three Airflow
            # components), then each is awaited: start-up time is the longest chain, not the sum.
            wave = [service for service in pending if set(service.depends_on) <= ready]
            if not wave:
                raise StackError(f"unsatisfiable dependencies among {[service.name for service in pending]}")
            started = {service.name: self._start(service) for service in wave}
            for service in wave:
                self._await_start(service, started[service.name])
                if service.name == "airflow-api-server":  # running or just started: pools follow the settings
                    self._ensure_pools()
            ready |= {service.name for service in wave}
            pending = [service for service in pending if service.name not in ready]
        return self.status()

    def down(self, names: Iterable[str] | None = None) -> list[str]:
        wanted = {s.name for s in self.services} if names is None else set(names)
        stopped = []
        for service in reversed(self.services):
            if service.name in wanted and processes.stop_process(self._pid_file(service), timeout=service.stop_timeout):
                stopped.append(service.name)
                self._report(f"stopped {service.name}")
        busy = {
            f"{port} ({purpose})"
            for service in self.services
            if service.name in wanted
            for purpose, port in service.ports.items()
            if not self._wait_port_free(port)
        }
        if busy:
            raise StackError(f"ports still in use after stopping: {', '.join(sorted(busy))}")
        return stopped

    def purge(self) -> None:
        """Delete what a stopped stack keeps outside its home: in the production profile its PostgreSQL databases
        and its Celery broker keys. For throwaway stacks (tests, benchmarks); a developer's stack keeps its state."""
        if self.settings.profile != "production":
            return
        import psycopg2
        import redis

        conn = psycopg2.connect(self.settings.postgres_dsn, connect_timeout=5)
        conn.autocommit = True  # DROP DATABASE cannot run in a transaction
        try:
            with conn.cursor() as cursor:
                for component in DATABASE_COMPONENTS:
                    name = f"{self.settings.database_prefix}_{component}"  # validated in StackSettings
                    cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            conn.close()
        broker = redis.Redis.from_url(self.settings.celery_broker_url)
        try:
            if keys := list(broker.scan_iter(match=f"{self.settings.celery_key_prefix}*")):
                broker.delete(*keys)
        finally:
            broker.close()

    def status(self) -> list[ServiceStatus]:
        return [self._status(service) for service in self.services]

    def log_path(self, name: str) -> Path:
        if name not in {s.name for s in self.services}:
            raise StackError(f"unknown service {name!r}; services: {', '.join(s.name for s in self.services)}")
        return self.settings.logs_dir / f"{name}.log"

    def credentials_notice(self) -> str | None:
        """The generated credentials, to be shown once: only on the `up` that created them."""
        if not self.credentials_created:
            return None
        creds, s = self.credentials, self.settings
        return (
            f"Credentials were generated for this stack (shown once; kept in {s.home / 'credentials.json'}):\n"
            f"  Airflow UI  {s.airflow_url}  user {creds.airflow_admin_user}  password {creds.airflow_admin_password}\n"
            f"  S3          {s.s3_endpoint}  access key {creds.s3_access_key}  secret {creds.s3_secret_key}\n"
            f"  Gateway     {s.gateway_url}  bearer token {creds.gateway_token}"
        )

    def airflow_env(self) -> dict[str, str]:
        return airflow_env(self.settings, self.credentials)

    def airflow_client(self) -> AirflowClient:
        """A REST client of the stack's Airflow, logged in as its admin (the caller closes it)."""
        creds = self.credentials
        return AirflowClient(self.settings.airflow_url, creds.airflow_admin_user, creds.airflow_admin_password)

    # ----- lifecycle ------------------------------------------------------------------------------------------
    def _with_dependencies(self, names: Iterable[str] | None) -> set[str]:
        by_name = {s.name: s for s in self.services}
        if names is None:
            return set(by_name)
        wanted: set[str] = set()
        pending = list(names)
        while pending:
            name = pending.pop()
            if name not in by_name:
                raise StackError(f"unknown service {name!r}; services: {', '.join(by_name)}")
            if name not in wanted:
                wanted.add(name)
                pending.extend(by_name[name].depends_on)
        return wanted

    def _prepare_dirs(self) -> None:
        s = self.settings
        for directory in (
            s.logs_dir,
            s.run_dir,
            s.airflow_home,
            s.s3_data_dir / "volumes",
            s.mlflow_dir,
            s.source_database.parent,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        write_private_json(s.s3_data_dir / "identities.json", s3_identities(self.credentials))
        write_private_json(
            s.airflow_home / "passwords.json",
            {self.credentials.airflow_admin_user: self.credentials.airflow_admin_password},
        )

    def _start(self, service: Service) -> float | None:
        """Start `service` unless it is running already; return its start time (None if it was running)."""
        pid_file = self._pid_file(service)
        if processes.running_process(pid_file) is not None:
            return None
        pid_file.unlink(missing_ok=True)
        processes.require_free_ports(service.ports, self.settings.host)
        self._before_start(service)
        self._report(f"{service.name}: starting")
        started = time.monotonic()
        processes.start_detached(
            service.argv,
            env=service.env,
            log_file=self.log_path(service.name),
            pid_file=pid_file,
            cwd=PROJECT_ROOT,
        )
        return started

    def _await_start(self, service: Service, started: float | None) -> None:
        if started is None and self._is_healthy(service):
            self._report(f"{service.name}: already running")
            return
        if started is None:
            self._report(f"{service.name}: running but unhealthy; waiting")
        self._wait_healthy(service)
        if started is not None:
            self._after_start(service)
            self._report(f"{service.name}: healthy after {time.monotonic() - started:.1f} s")

    def _wait_healthy(self, service: Service) -> None:
        deadline = time.monotonic() + service.startup_timeout
        pid_file = self._pid_file(service)
        while time.monotonic() < deadline:
            if processes.running_process(pid_file) is None:
                raise StackError(self._failure(service, "exited during start-up"))
            if self._is_healthy(service):
                return
            time.sleep(0.5)
        processes.stop_process(pid_file, timeout=service.stop_timeout)
        raise StackError(self._failure(service, f"not healthy after {service.startup_timeout:.0f} s"))

    def _failure(self, service: Service, what: str) -> str:
        log = self.log_path(service.name)
        return f"{service.name} {what}. Last lines of {log}:\n{processes.tail(log)}"

    def _is_healthy(self, service: Service) -> bool:
        if service.health_probe is not None:
            return service.health_probe()
        try:
            response = httpx.get(service.health_url, timeout=2.0)
            if service.health_component is None:
                return response.status_code in service.health_expect
            return response.json().get(service.health_component, {}).get("status") == "healthy"
        except (httpx.HTTPError, json.JSONDecodeError):
            return False

    def _before_start(self, service: Service) -> None:
        if service.name == "airflow-api-server":
            self._migrate_airflow_db(service)
        if service.name == "mlflow" and self.settings.profile == "production":
            self._ensure_postgres_databases()

    def _after_start(self, service: Service) -> None:
        if service.name == "s3":
            self._ensure_buckets()

    def _migrate_airflow_db(self, service: Service) -> None:
        if self.settings.profile == "production":
            self._ensure_postgres_databases()
        self._report("airflow: migrating the metadata database")
        log = self.log_path("airflow-api-server")
        with log.open("ab") as handle:
            result = subprocess.run(
                [service.argv[0], "db", "migrate"], env=service.env, stdout=handle, stderr=subprocess.STDOUT,
                cwd=PROJECT_ROOT, timeout=300, check=False,
            )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"`airflow db migrate` failed. Last lines of {log}:\n{processes.tail(log)}")

    def _ensure_pools(self) -> None:
        """Create or resize the pools the DAGs name (before any scheduler runs: a missing pool stalls its tasks)."""
        client = self.airflow_client()
        try:
            for name, (slots, description) in airflow_pools(self.settings).items():
                client.set_pool(name, slots, description)
                self._report(f"airflow: pool {name} ({slots} slots)")
        finally:
            client.close()

    def _ensure_postgres_databases(self) -> None:
        import psycopg2

        try:
            conn = psycopg2.connect(self.settings.postgres_dsn, connect_timeout=5)
        except psycopg2.OperationalError as error:
            raise StackError(
                f"production profile: cannot reach PostgreSQL at {self.settings.postgres_dsn}: {error}"
            ) from None
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction (so no `with conn:` either)
        try:
            with conn.cursor() as cursor:
                for component in DATABASE_COMPONENTS:
                    name = f"{self.settings.database_prefix}_{component}"
                    cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                    if cursor.fetchone() is None:
                        cursor.execute(f'CREATE DATABASE "{name}"')  # name is validated in StackSettings
                        self._report(f"postgres: created database {name}")
        finally:
            conn.close()

    def _ensure_buckets(self) -> None:
        client = s3_client(self.settings, self.credentials)
        existing = {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}
        for bucket in (self.settings.data_bucket, self.settings.mlflow_bucket, self.settings.triton_bucket):
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)
                self._report(f"s3: created bucket {bucket}")
        # Triton refuses an S3 repository prefix that has no object under it: keep a marker there.
        marker = f"{self.settings.triton_prefix}/.factory-model-repository"
        client.put_object(Bucket=self.settings.triton_bucket, Key=marker, Body=b"managed by the model factory\n")

    # ----- helpers --------------------------------------------------------------------------------------------
    def _pid_file(self, service: Service) -> Path:
        return self.settings.run_dir / f"{service.name}.pid"

    def _status(self, service: Service) -> ServiceStatus:
        record = processes.read_pid_record(self._pid_file(service))
        proc = record.process() if record else None
        url = service.health_url.rsplit("/api/", 1)[0]
        if proc is None:
            return ServiceStatus(service.name, "stopped", None, url)
        state = "healthy" if self._is_healthy(service) else "running (unhealthy)"
        return ServiceStatus(service.name, state, proc.pid, url)

    def _wait_port_free(self, port: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not processes.port_is_free(port, self.settings.host):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True


def s3_client(settings: StackSettings, creds: Credentials):  # -> botocore S3 client (untyped library)
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=creds.s3_access_key,
        aws_secret_access_key=creds.s3_secret_key,
        region_name=settings.region,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30),
    )
