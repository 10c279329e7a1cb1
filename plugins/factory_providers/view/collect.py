"""Fetch what the factory view shows from MLflow, S3, Redis and the Airflow metadata DB, one source at a time.

Each source is read under `guarded`: a source that fails (S3 down, Redis unreachable, a record of another
schema) becomes a `FetchError` naming it, shown on its panel, while the other panels still render. The
decisions about what to show are pure (`pipelines/factory_view`); this module only reads.

Airflow's plugin manager imports every module under plugins/ in every component, so nothing heavy is imported
at the top here: MLflow, boto3, redis, SQLAlchemy models and the view's pipelines are imported when a page is
asked for, which happens in the API server only.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pipelines.factory_view.links import Paths
    from pipelines.factory_view.records import DagRunRecord, DriftWindow, FetchError, RegistryRecord, TrafficRecord
    from pipelines.factory_view.view import IndexView, ModelView
    from pipelines.rollout.records import StepRecord

log = logging.getLogger(__name__)

DATA_BUCKET = "factory-data"  # = pipelines.assembly.DATA_BUCKET (not imported: it pulls in the training stack)
MAX_VERSIONS = 12  # newest versions listed per model (every alias holder is listed too)
RUNS_PER_DAG = 3
MONITORING_PREFIX = "monitoring/"
# Model names the view accepts: what the alias log and MLflow's filter syntax can carry unquoted.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+ -]*$")
T = TypeVar("T")


class NotFoundError(LookupError):
    """The model, report or artifact asked for does not exist (the plugin answers 404 with this message)."""


class SourceUnavailableError(RuntimeError):
    """A client this read needs could not be built; the message is that client's FetchError."""


def guarded(source: str, fetch: Callable[[], T]) -> T | FetchError:
    """`fetch()`, or the FetchError that names `source` and what went wrong: one panel's problem, not the page's."""
    from pipelines.factory_view.records import FetchError

    try:
        return fetch()
    except NotFoundError:
        raise
    except Exception as error:  # any failure of one source is shown on its panel; the page still renders
        log.warning("factory view: %s failed: %s: %s", source, type(error).__name__, error)
        return FetchError(source, f"{type(error).__name__}: {error}")


@dataclass
class Sources:
    """The clients of one request (each may be a FetchError when it could not be built)."""

    s3: Any
    mlflow: Any
    bucket: str = DATA_BUCKET

    def require_s3(self) -> Any:
        return _require(self.s3)

    def require_mlflow(self) -> Any:
        return _require(self.mlflow)


@contextmanager
def open_sources(bucket: str = DATA_BUCKET) -> Iterator[Sources]:
    """S3 (connection factory_s3) and MLflow (connection factory_mlflow) clients, each guarded on its own."""
    from factory_providers.mlflow.hooks import MlflowHook
    from factory_providers.s3.hooks import FactoryS3Hook

    with ExitStack() as stack:
        s3 = guarded("S3 (connection factory_s3)", lambda: FactoryS3Hook().get_conn())
        mlflow = guarded("MLflow (connection factory_mlflow)", lambda: stack.enter_context(MlflowHook().tracking()))
        yield Sources(s3=s3, mlflow=mlflow, bucket=bucket)


def view_paths(app_base: str) -> Paths:
    """Link bases: Airflow's base path ([api] base_url), the plugin's mount point, MLflow's URL (if readable)."""
    from urllib.parse import urlsplit

    from airflow.configuration import conf

    from factory_providers.mlflow.hooks import MlflowHook
    from pipelines.factory_view.links import Paths

    airflow_base = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    mlflow_url = guarded("MLflow connection", lambda: MlflowHook().get_tracking_uri())
    return Paths(
        airflow_base=airflow_base,
        app_base=app_base.rstrip("/"),
        mlflow_url=mlflow_url if isinstance(mlflow_url, str) else None,
        data_bucket=DATA_BUCKET,
    )


def check_model_name(model: str) -> str:
    if not _MODEL_NAME.match(model) or model != model.strip():
        raise NotFoundError(f"{model!r} is not a registered model name")
    return model


# ----- pages -------------------------------------------------------------------------------------------------
def collect_model_view(model: str, *, paths: Paths, can_read_dag: Callable[[str], bool]) -> ModelView:
    """Everything the model's page shows; NotFoundError if neither MLflow nor the alias log knows the model."""
    from factory_providers.mlflow.aliases import LOG_PREFIX, AliasRegistry
    from pipelines.factory_view.records import FetchError
    from pipelines.factory_view.view import assemble_model_view

    check_model_name(model)
    with open_sources() as sources:
        bucket = sources.bucket
        alias_log = guarded(
            f"alias log (s3://{bucket}/{LOG_PREFIX}/{model}/)",
            lambda: AliasRegistry(sources.require_s3(), None, bucket=bucket).alias_history(model),  # type: ignore[arg-type]
        )
        holders = set(alias_log[-1].aliases.values()) if isinstance(alias_log, list) and alias_log else set()
        try:
            registry = guarded(
                "MLflow registry", lambda: fetch_registry(sources.require_mlflow(), model, holders=holders)
            )
        except NotFoundError as missing:
            if not (isinstance(alias_log, list) and alias_log):
                raise
            registry = FetchError("MLflow registry", str(missing))
        rollout = guarded(
            f"rollout records (s3://{bucket}/rollouts/{model}/)",
            lambda: fetch_latest_rollout(sources.require_s3(), model, bucket=bucket),
        )
        drift = guarded(
            f"monitoring windows (s3://{bucket}/{MONITORING_PREFIX}<dataset>/{model}/drift/)",
            lambda: fetch_latest_drift(sources.require_s3(), model, bucket=bucket),
        )
    traffic = guarded("gateway routes (Redis of connection factory_gateway)", lambda: fetch_traffic(model))
    runs = guarded("Airflow DAG runs (metadata DB)", lambda: fetch_dag_runs(can_read_dag))
    return assemble_model_view(
        model, alias_log=alias_log, registry=registry, rollout=rollout, traffic=traffic, drift=drift, runs=runs,
        paths=paths, now=datetime.now(UTC),
    )  # fmt: skip


def collect_index(*, paths: Paths, can_read_dag: Callable[[str], bool]) -> IndexView:
    from pipelines.factory_view.view import assemble_index

    with open_sources() as sources:
        models = guarded("MLflow registry", lambda: list_models(sources.require_mlflow()))
    runs = guarded("Airflow DAG runs (metadata DB)", lambda: fetch_dag_runs(can_read_dag))
    return assemble_index(models, runs, paths, datetime.now(UTC))


def read_report(key: str) -> tuple[bytes, str]:
    """An HTML or JSON report of the data bucket (monitoring windows, rollout records) and its media type."""
    from pipelines.factory_view.links import media_type, served_key

    try:
        served_key(key)
    except ValueError as refused:
        raise NotFoundError(str(refused)) from None
    with open_sources() as sources:
        body = _get_object(sources.require_s3(), sources.bucket, key)
    if body is None:
        raise NotFoundError(f"s3://{DATA_BUCKET}/{key} does not exist")
    return body, media_type(key)


def read_version_artifact(model: str, version: str, name: str) -> bytes:
    """The gate report or model card (`name`: gate-report | model-card) of a registered version's run."""
    from mlflow.exceptions import MlflowException

    from pipelines.factory_view.links import SERVED_ARTIFACTS

    check_model_name(model)
    if name not in SERVED_ARTIFACTS or not version.isdigit():
        raise NotFoundError(f"no artifact {name!r} of {model} v{version}")
    path = SERVED_ARTIFACTS[name]
    with open_sources() as sources:
        client = sources.require_mlflow()
        try:
            run_id = client.get_model_version(model, version).run_id
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise NotFoundError(f"registered model {model!r} has no version {version}") from None
            raise
        if not run_id:
            raise NotFoundError(f"{model} v{version} was not registered from a run: it has no {path}")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                return Path(client.download_artifacts(run_id, path, tmp)).read_bytes()
            except (MlflowException, OSError) as error:
                raise NotFoundError(f"run {run_id} of {model} v{version} has no {path} ({error})") from None


# ----- sources -----------------------------------------------------------------------------------------------
def fetch_registry(client: Any, model: str, *, holders: set[str], max_versions: int = MAX_VERSIONS) -> RegistryRecord:
    """The registered model's aliases and its newest versions (plus every alias holder), with their runs' tags."""
    from mlflow.exceptions import MlflowException

    from factory_providers.mlflow.aliases import APPLIED_SEQ_TAG
    from pipelines.factory_view.records import RegistryRecord

    try:
        registered = client.get_registered_model(model)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFoundError(f"MLflow has no registered model {model!r}") from None
        raise
    found = sorted(client.search_model_versions(f"name = '{model}'"), key=lambda v: int(v.version), reverse=True)
    chosen = [v for index, v in enumerate(found) if index < max_versions or str(v.version) in holders]
    applied = (registered.tags or {}).get(APPLIED_SEQ_TAG, "")
    return RegistryRecord(
        versions=[_version_record(client, version) for version in chosen],
        total_versions=len(found),
        mlflow_aliases={alias: str(version) for alias, version in (registered.aliases or {}).items()},
        applied_seq=int(applied) if applied.isdigit() else None,
    )


def list_models(client: Any) -> list[tuple[str, dict[str, str], str | None]]:
    """(name, MLflow aliases, newest version) of every registered model."""
    models = []
    for registered in client.search_registered_models(max_results=1000):
        versions = [int(v.version) for v in (registered.latest_versions or [])]
        aliases = {alias: str(version) for alias, version in (registered.aliases or {}).items()}
        models.append((registered.name, aliases, str(max(versions)) if versions else None))
    return models


def fetch_latest_rollout(s3: Any, model: str, *, bucket: str = DATA_BUCKET) -> list[StepRecord]:
    """The step records of the model's latest rollout or rollback ([] when there was none)."""
    from pipelines.factory_view.records import StoredObject, latest_rollout, parse_step_records, rollouts_prefix

    prefix = rollouts_prefix(model)
    objects = [
        StoredObject(key=item["Key"], last_modified=item["LastModified"])
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
    ]
    rollout_id = latest_rollout(objects, model)
    if rollout_id is None:
        return []
    keys = [
        item.key for item in objects if item.key.startswith(f"{prefix}{rollout_id}/") and item.key.endswith(".json")
    ]
    blobs = {key: body for key in keys if (body := _get_object(s3, bucket, key)) is not None}
    return parse_step_records(blobs)


def fetch_latest_drift(s3: Any, model: str, *, bucket: str = DATA_BUCKET) -> DriftWindow | None:
    """The newest monitoring window of the model (over every dataset it is monitored for); None: none yet."""
    from pipelines.factory_view.records import DRIFT_FILES, EVIDENTLY, newest_window, parse_drift_window

    candidates = []
    for dataset in _folders(s3, bucket, MONITORING_PREFIX):
        window = newest_window(_folders(s3, bucket, f"{MONITORING_PREFIX}{dataset}/{model}/drift/"))
        if window is not None:
            candidates.append((window, dataset))
    if not candidates:
        return None
    window, dataset = max(candidates)
    prefix = f"{MONITORING_PREFIX}{dataset}/{model}/drift/{window}"

    def read(name: str) -> bytes | None:
        key = f"{prefix}/{name}"
        if name == EVIDENTLY:  # only checked: the browser fetches the HTML itself, through the report route
            return b"present" if _exists(s3, bucket, key) else None
        return _get_object(s3, bucket, key)

    blobs: dict[str, bytes | FetchError | None] = {
        name: guarded(f"s3://{bucket}/{prefix}/{name}", lambda name=name: read(name)) for name in DRIFT_FILES
    }
    return parse_drift_window(dataset, window, prefix, blobs)


def fetch_traffic(model: str) -> TrafficRecord:
    """The gateway's routes of the model and what every live replica applies (RouteStore in Redis)."""
    from factory_providers.gateway.hooks import GatewayHook
    from pipelines.factory_view.records import TrafficRecord

    with GatewayHook().route_store() as store:
        return TrafficRecord(table=store.get_routes(model), replicas=store.applied_versions(model))


def fetch_dag_runs(can_read_dag: Callable[[str], bool], per_dag: int = RUNS_PER_DAG) -> list[DagRunRecord]:
    """The latest runs of each factory DAG the user may read, from the metadata DB of the API server."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from pipelines.factory_view.links import FACTORY_DAGS
    from pipelines.factory_view.records import DagRunRecord

    records = []
    with create_session() as session:
        for dag_id in FACTORY_DAGS:
            if not can_read_dag(dag_id):
                continue
            query = select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.run_after.desc()).limit(per_dag)
            for run in session.scalars(query):
                records.append(
                    DagRunRecord(
                        dag_id=run.dag_id, run_id=run.run_id, state=_enum_value(run.state),
                        run_type=_enum_value(run.run_type), run_after=run.run_after, start_date=run.start_date,
                        end_date=run.end_date,
                    )
                )  # fmt: skip
    return records


# ----- helpers -----------------------------------------------------------------------------------------------
def _version_record(client: Any, version: Any) -> Any:  # -> VersionRecord
    from pipelines.factory_view.records import VersionRecord

    run_tags: dict[str, str] = {}
    experiment_id = run_error = None
    if version.run_id:
        try:
            run = client.get_run(version.run_id)
            run_tags, experiment_id = dict(run.data.tags), run.info.experiment_id
        except Exception as error:  # the version still shows, with the reason its run is missing
            run_error = f"run {version.run_id} unreadable: {type(error).__name__}: {error}"
    created = version.creation_timestamp
    return VersionRecord(
        version=str(version.version),
        run_id=version.run_id or None,
        created_at=datetime.fromtimestamp(created / 1000, UTC) if created else None,
        status=str(version.status) if version.status else None,
        tags=dict(version.tags or {}),
        run_tags=run_tags,
        experiment_id=experiment_id,
        run_error=run_error,
    )


def _folders(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Names of the 'folders' directly under `prefix`."""
    names = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        names += [item["Prefix"].removeprefix(prefix).rstrip("/") for item in page.get("CommonPrefixes", [])]
    return [name for name in names if name]


def _get_object(s3: Any, bucket: str, key: str) -> bytes | None:
    """The object's bytes; None if it does not exist (any other failure raises)."""
    from botocore.exceptions import ClientError

    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if _is_missing(error):
            return None
        raise


def _exists(s3: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if _is_missing(error):
            return False
        raise
    return True


def _is_missing(error: Any) -> bool:
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in {"NoSuchKey", "404", "NotFound"} or status == 404


def _require(client: Any) -> Any:
    from pipelines.factory_view.records import FetchError

    if isinstance(client, FetchError):
        raise SourceUnavailableError(str(client))
    return client


def _enum_value(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))
