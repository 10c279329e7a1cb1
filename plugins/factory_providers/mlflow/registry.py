"""Record a training run in MLflow and register its model as a `candidate` version (aliases, never stages).

One MLflow run holds the whole evidence of a model: the run record (tags for the identifying fields, params
for every section, the JSON), the metrics, and the artifacts. The registered version points at the run's ONNX
model and carries the ids needed to trace it without opening the run (run id, snapshot id, feature spec
version). Stages are deprecated in MLflow 3: promotion moves aliases (`candidate` here, `champion` in the gate).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from factory_providers.mlflow.hooks import MlflowHook
from pipelines.lineage import RunRecord

if TYPE_CHECKING:
    from mlflow import MlflowClient


class CandidateVersion(BaseModel):
    """The registered model version a training run produced (small: this is the task's XCom)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    experiment: str
    model_name: str
    version: str
    alias: str
    model_uri: str


# A run is identified across task retries by its attempt key (the Airflow dag and run id); it counts as logged
# only once its last tag is set, so a run without that tag is the debris of an attempt that died half-way.
ATTEMPT_KEY_TAG = "factory.attempt_key"
LOGGED_TAG = "factory.logged"
MODEL_URI_TAG = "factory.model_uri"


def log_training_run(
    hook: MlflowHook,
    *,
    experiment: str,
    run_name: str,
    attempt_key: str,
    record: RunRecord,
    params: Mapping[str, str],
    metrics: Mapping[str, float],
    artifacts: Mapping[str, Path],
    onnx_model: bytes,
    model_name: str,
    alias: str,
    extra_tags: Mapping[str, str] | None = None,
) -> CandidateVersion:
    """Log one run holding everything, register its ONNX model as a new version of `model_name`, move `alias`.

    `artifacts` maps an artifact folder in the run to a local file or directory. Safe to retry: a complete run of
    the same `attempt_key` is reused (and its version, if registered), half-logged runs of earlier attempts are
    deleted, and a failure while logging deletes the run it started. The version is created only from a complete run.
    """
    import mlflow

    with hook.tracking() as client:
        experiment_id = mlflow.set_experiment(experiment).experiment_id
        run_id = _complete_run_of_attempt(client, experiment_id, attempt_key)
        if run_id is None:
            run_id = _log_complete_run(
                client,
                run_name=run_name,
                tags={**record.tags(), **(extra_tags or {}), ATTEMPT_KEY_TAG: attempt_key},
                record=record,
                params=params,
                metrics=metrics,
                artifacts=artifacts,
                onnx_model=onnx_model,
            )
        version = _version_of_run(client, model_name, run_id)
        if version is None:
            version_tags = {
                "run_id": run_id,
                "snapshot_id": record.data.snapshot_id,
                "feature_spec_version": record.features.version,
            }
            model_uri = client.get_run(run_id).data.tags[MODEL_URI_TAG]
            version = str(mlflow.register_model(model_uri, model_name, tags=version_tags).version)
        # Through the alias log, not set_registered_model_alias: every alias move is recorded (who, when, why).
        from factory_providers.mlflow.aliases import record_registration

        record_registration(client, model_name, alias, version, attempt_key=attempt_key, run_id=run_id)
    return CandidateVersion(
        run_id=run_id,
        experiment=experiment,
        model_name=model_name,
        version=version,
        alias=alias,
        model_uri=f"models:/{model_name}@{alias}",
    )


def _complete_run_of_attempt(client: MlflowClient, experiment_id: str, attempt_key: str) -> str | None:
    """The complete run an earlier attempt logged, if any; half-logged runs of earlier attempts are deleted."""
    complete = None
    for run in client.search_runs([experiment_id], filter_string=f"tags.`{ATTEMPT_KEY_TAG}` = '{attempt_key}'"):
        if run.data.tags.get(LOGGED_TAG) == "true":
            complete = complete or run.info.run_id
        else:
            client.delete_run(run.info.run_id)
    return complete


def _log_complete_run(
    client: MlflowClient,
    *,
    run_name: str,
    tags: Mapping[str, str],
    record: RunRecord,
    params: Mapping[str, str],
    metrics: Mapping[str, float],
    artifacts: Mapping[str, Path],
    onnx_model: bytes,
) -> str:
    import mlflow
    import mlflow.onnx
    import onnx

    run = mlflow.start_run(run_name=run_name, tags=dict(tags))
    try:
        mlflow.log_params(dict(params))
        mlflow.log_metrics(dict(metrics))
        mlflow.log_text(record.model_dump_json(indent=2), "run_record.json")
        for folder, path in artifacts.items():
            if path.is_dir():
                mlflow.log_artifacts(str(path), folder)
            else:
                mlflow.log_artifact(str(path), folder)
        logged = mlflow.onnx.log_model(onnx.load_from_string(onnx_model), name="model")
        mlflow.set_tags({MODEL_URI_TAG: logged.model_uri, LOGGED_TAG: "true"})  # last: the run is complete
    except BaseException:
        mlflow.end_run(status="FAILED")
        with contextlib.suppress(Exception):  # the server may be what failed: the next attempt deletes it then
            client.delete_run(run.info.run_id)
        raise
    mlflow.end_run()
    return run.info.run_id


def _version_of_run(client: MlflowClient, model_name: str, run_id: str) -> str | None:
    """The version already registered from this run (a retry after registration must not register twice)."""
    versions = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    return str(min(int(version.version) for version in versions)) if versions else None


def log_failed_run(hook: MlflowHook, *, experiment: str, run_name: str, tags: Mapping[str, str]) -> str:
    """A FAILED run naming the stage and the reason, so the experiment shows failures next to successes."""
    import mlflow

    with hook.tracking():
        mlflow.set_experiment(experiment)
        run = mlflow.start_run(run_name=run_name, tags=dict(tags))
        mlflow.end_run(status="FAILED")
    return run.info.run_id
