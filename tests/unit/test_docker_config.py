"""docker/ cannot run here (no Docker engine): validate what can be validated without one.

Checked: compose parses and has the production services; every Dockerfile and mounted file it names exists; every
variable it interpolates is documented in .env.example; Triton reserves a GPU; Airflow runs CeleryExecutor on
PostgreSQL; the Dockerfiles COPY only paths that exist and pin the versions the local env is tested with.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from factory.settings import PROJECT_ROOT

DOCKER = PROJECT_ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


def test_compose_has_the_production_services():
    expected = {
        "postgres", "redis", "s3", "mlflow", "triton", "airflow-init", "airflow-api-server", "airflow-scheduler",
        "airflow-dag-processor", "airflow-triggerer", "airflow-worker",
    }  # fmt: skip
    assert expected <= set(COMPOSE["services"])


def test_airflow_runs_celery_on_postgres_with_two_workers():
    for name, service in COMPOSE["services"].items():
        if name.startswith("airflow-"):
            env = service["environment"]
            assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
            assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
            assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert COMPOSE["services"]["airflow-worker"]["deploy"]["replicas"] >= 2


def test_triton_reserves_a_gpu_and_loads_from_s3_explicitly():
    triton = COMPOSE["services"]["triton"]
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    dockerfile = (PROJECT_ROOT / triton["build"]["dockerfile"]).read_text()
    assert "nvcr.io/nvidia/tritonserver:24.10-py3" in dockerfile  # = tritonserver 2.51.0, as tested locally
    assert "--model-control-mode=explicit" in dockerfile and "s3://" in dockerfile


def test_every_dockerfile_and_mounted_file_exists():
    for name, service in COMPOSE["services"].items():
        build = service.get("build")
        if build:
            assert (DOCKER / build["context"] / build["dockerfile"]).resolve().is_file(), name
        for volume in service.get("volumes", []):
            source = VARIABLE.sub(lambda m: m.group(2) or "", volume.split(":")[0])
            if source.startswith((".", "/")):
                assert (DOCKER / source).resolve().exists(), f"{name} mounts missing {source}"


def test_every_interpolated_variable_is_documented_in_env_example():
    documented = (PROJECT_ROOT / ".env.example").read_text()
    used = {match.group(1) for match in VARIABLE.finditer((DOCKER / "compose.yaml").read_text())}
    missing = sorted(name for name in used if f"{name}=" not in documented)
    assert not missing, f".env.example does not document {missing}"


@pytest.mark.parametrize("dockerfile", sorted(DOCKER.glob("*.Dockerfile")), ids=lambda p: p.name)
def test_dockerfile_copies_existing_paths(dockerfile: Path):
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY"):
            sources = [part for part in line.split()[1:-1] if not part.startswith("--")]
            for source in sources:
                assert (PROJECT_ROOT / source).exists(), f"{dockerfile.name}: COPY {source} does not exist"


def test_images_pin_the_locally_tested_versions():
    constraints = (PROJECT_ROOT / "constraints.txt").read_text()
    airflow = re.search(r"^apache-airflow==(\S+)$", constraints, re.M).group(1)
    mlflow = re.search(r"^mlflow==(\S+)$", constraints, re.M).group(1)
    assert f"apache/airflow:{airflow}-python3.11" in (DOCKER / "airflow.Dockerfile").read_text()
    assert f"mlflow=={mlflow}" in (DOCKER / "mlflow.Dockerfile").read_text()
