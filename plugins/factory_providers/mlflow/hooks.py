"""MLflow tracking/registry access through an Airflow Connection (http; login/password for basic-auth servers)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from mlflow import MlflowClient

HEALTH_TIMEOUT_S = 5.0


class MlflowUnavailableError(ConnectionError):
    """The tracking server does not answer: a retry later can help, nothing has been logged."""


class MlflowHook(BaseHook):
    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "factory_mlflow"
    conn_type = "http"
    hook_name = "MLflow"

    def __init__(self, mlflow_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.mlflow_conn_id = mlflow_conn_id

    def get_tracking_uri(self) -> str:
        conn = self.get_connection(self.mlflow_conn_id)
        if not conn.host:
            raise ValueError(f"connection {self.mlflow_conn_id!r} has no host: set AIRFLOW_CONN_FACTORY_MLFLOW")
        port = f":{conn.port}" if conn.port else ""
        return f"{conn.schema or 'http'}://{conn.host}{port}"

    @contextmanager
    def tracking(self) -> Iterator[MlflowClient]:
        """Point the mlflow module at this connection's server for the duration of the block."""
        import mlflow

        conn = self.get_connection(self.mlflow_conn_id)
        auth = {"MLFLOW_TRACKING_USERNAME": conn.login, "MLFLOW_TRACKING_PASSWORD": conn.password}
        saved = {key: os.environ.get(key) for key in auth}
        previous_uri = mlflow.get_tracking_uri()
        try:
            for key, value in auth.items():
                if value:
                    os.environ[key] = value
            uri = self.get_tracking_uri()
            self.check_health(uri)
            mlflow.set_tracking_uri(uri)
            yield mlflow.MlflowClient(tracking_uri=uri)
        finally:
            mlflow.set_tracking_uri(previous_uri)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def check_health(self, uri: str) -> None:
        """Fail fast, naming the server, instead of inside MLflow's client after minutes of retries."""
        import requests

        try:
            response = requests.get(f"{uri}/health", timeout=HEALTH_TIMEOUT_S)
        except requests.RequestException as error:
            raise MlflowUnavailableError(
                f"MLflow tracking server {uri} (connection {self.mlflow_conn_id!r}) is unreachable: "
                f"{type(error).__name__}"
            ) from None
        if response.status_code != 200:
            raise MlflowUnavailableError(
                f"MLflow tracking server {uri} (connection {self.mlflow_conn_id!r}) is unhealthy: "
                f"/health answered {response.status_code}"
            )
