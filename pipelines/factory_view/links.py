"""Where the view links to: Airflow UI pages, the plugin's own routes, and the records behind them.

Links are root-relative paths under the Airflow base path (`airflow_base`, "" unless Airflow is served under a
prefix) so they work in the Airflow UI's iframe and opened directly; MLflow URLs come from the tracking URI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

ACTOR_PREFIX = "airflow:"
# The factory's DAGs, in the order of the loop: the runs panel lists their latest runs.
FACTORY_DAGS = (
    "factory_train",
    "factory_rollout",
    "factory_rollback",
    "factory_drift",
    "factory_feedback",
    "factory_reproduce",
    "factory_smoke",
)
# S3 objects the plugin serves (reports for humans and the JSON records beside them); nothing else in the bucket.
SERVED_PREFIXES = ("monitoring/", "rollouts/")
SERVED_SUFFIXES = {".html": "text/html; charset=utf-8", ".json": "application/json"}
# MLflow run artifacts the plugin serves, by the name used in its routes.
SERVED_ARTIFACTS = {"gate-report": "gate/gate_report.html", "model-card": "model_card/model_card.html"}
_DAG_ID = re.compile(r"^[A-Za-z0-9_.-]+$")

# How a link leaves the view: inside the view's frame, the Airflow UI's own page (the top window), a new tab.
Target = Literal["self", "top", "tab"]


class Link(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    href: str
    target: Target = "self"


@dataclass(frozen=True)
class RunRef:
    """An Airflow DAG run (and task) named by an alias-log actor such as `airflow:factory_train/<run id>/task`."""

    dag_id: str
    run_id: str
    task_id: str | None = None


@dataclass(frozen=True)
class Paths:
    """Bases of the links: the Airflow UI (root-relative), the plugin app, the MLflow tracking server."""

    airflow_base: str = ""
    app_base: str = "/factory"
    mlflow_url: str | None = None
    data_bucket: str = "factory-data"

    def dag_run(self, run: RunRef) -> Link:
        href = f"{self.airflow_base}/dags/{quote(run.dag_id, safe='')}/runs/{quote(run.run_id, safe='')}"
        if run.task_id:
            href += f"/tasks/{quote(run.task_id, safe='')}"
        label = f"{run.dag_id} / {run.run_id}" + (f" / {run.task_id}" if run.task_id else "")
        return Link(label=label, href=href, target="top")

    def dag(self, dag_id: str) -> Link:
        return Link(label=dag_id, href=f"{self.airflow_base}/dags/{quote(dag_id, safe='')}", target="top")

    def model_page(self, model: str) -> str:
        return f"{self.app_base}/models/{quote(model, safe='')}"

    def model_json(self, model: str) -> str:
        return f"{self.app_base}/api/models/{quote(model, safe='')}"

    def report(self, key: str, label: str) -> Link:
        """An S3 object of the data bucket through the plugin (`/factory/reports/<key>`)."""
        return Link(label=label, href=f"{self.app_base}/reports/{quote(key)}")

    def report_of_uri(self, uri: str | None) -> Link | None:
        """A link to `s3://<data bucket>/<key>` if the plugin serves that key (a report or record), else None."""
        key = s3_key_of(uri or "", self.data_bucket)
        if key is None:
            return None
        try:
            served_key(key)
        except ValueError:
            return None
        return self.report(key, key.rsplit("/", 1)[-1])

    def artifact(self, model: str, version: str, name: str, label: str) -> Link:
        """A run artifact of a registered version through the plugin (gate report, model card)."""
        return Link(label=label, href=f"{self.model_page(model)}/versions/{quote(version, safe='')}/{name}")

    def mlflow_run(self, experiment_id: str, run_id: str) -> Link | None:
        if not self.mlflow_url:
            return None
        href = f"{self.mlflow_url.rstrip('/')}/#/experiments/{quote(experiment_id)}/runs/{quote(run_id)}"
        return Link(label="MLflow run", href=href, target="tab")

    def mlflow_model(self, model: str) -> Link | None:
        if not self.mlflow_url:
            return None
        return Link(label="MLflow", href=f"{self.mlflow_url.rstrip('/')}/#/models/{quote(model)}", target="tab")


def parse_actor(actor: str) -> RunRef | None:
    """The DAG run an alias-log actor names (`airflow:<dag>/<run id>[/<task>]`), or None for anyone else.

    DAGs write `airflow:{dag_id}/{run_id}` (rollout, rollback, registration) or
    `airflow:{dag_id}/{run_id}/{task_id}` (the gate's promotion); run ids hold no '/'.
    """
    if not actor.startswith(ACTOR_PREFIX):
        return None
    dag_id, _, rest = actor.removeprefix(ACTOR_PREFIX).partition("/")
    run_id, _, task_id = rest.partition("/")
    if not _DAG_ID.match(dag_id) or not run_id:
        return None
    return RunRef(dag_id=dag_id, run_id=run_id, task_id=task_id or None)


def served_key(key: str) -> str:
    """`key` if the plugin may serve it (a report or record under the monitoring/rollout prefixes), else
    ValueError naming why: the report route must not become a reader of the whole bucket."""
    if ".." in key.split("/") or key.startswith("/") or "//" in key:
        raise ValueError(f"{key!r} is not a plain object key")
    if not key.startswith(SERVED_PREFIXES):
        raise ValueError(f"{key!r} is outside {', '.join(SERVED_PREFIXES)}: the view serves only reports")
    if not any(key.endswith(suffix) for suffix in SERVED_SUFFIXES):
        raise ValueError(f"{key!r} is not a report ({', '.join(SERVED_SUFFIXES)})")
    return key


def media_type(key: str) -> str:
    return next(kind for suffix, kind in SERVED_SUFFIXES.items() if key.endswith(suffix))


def s3_key_of(uri: str, bucket: str) -> str | None:
    """The key of `s3://<bucket>/<key>` in the data bucket, None for any other URI."""
    prefix = f"s3://{bucket}/"
    return uri.removeprefix(prefix) if uri.startswith(prefix) else None
