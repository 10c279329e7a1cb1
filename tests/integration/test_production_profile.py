"""The production profile: Airflow's metadata DB and MLflow's backend store on the real PostgreSQL (127.0.0.1:5432).

The databases get a per-run prefix, are created by `stack up` and dropped afterwards, so CI runs never collide.
"""

from __future__ import annotations

import psycopg2
import pytest

from tests.integration.conftest import temporary_production_stack

pytestmark = pytest.mark.services


@pytest.fixture
def production_stack(tmp_path):
    with temporary_production_stack(tmp_path) as stack:
        yield stack


def _tables(dsn: str, database: str) -> set[str]:
    conn = psycopg2.connect(dsn.rsplit("/", 1)[0] + f"/{database}")
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return {row[0] for row in cursor.fetchall()}
    finally:
        conn.close()


def test_airflow_and_mlflow_run_on_postgres(production_stack):
    import mlflow

    stack = production_stack
    stack.up(["mlflow", "airflow-api-server"])
    prefix = stack.settings.database_prefix
    assert {"dag", "dag_run", "task_instance", "connection"} <= _tables(
        stack.settings.postgres_dsn, f"{prefix}_airflow"
    )

    mlflow.set_tracking_uri(stack.settings.mlflow_url)
    experiment = mlflow.set_experiment("production-profile")
    with mlflow.start_run(experiment_id=experiment.experiment_id):
        mlflow.log_metric("auc", 0.7)
    assert {"experiments", "runs", "metrics", "registered_models"} <= _tables(
        stack.settings.postgres_dsn, f"{prefix}_mlflow"
    )
    conn = psycopg2.connect(stack.settings.postgres_dsn.rsplit("/", 1)[0] + f"/{prefix}_mlflow")
    with conn, conn.cursor() as cursor:
        cursor.execute("SELECT name FROM experiments WHERE name = 'production-profile'")
        assert cursor.fetchone() == ("production-profile",)
    conn.close()
