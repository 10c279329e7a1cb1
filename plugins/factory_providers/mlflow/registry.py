"""Record a training run in MLflow and register its model as a `candidate` version (aliases, never stages).

One MLflow run holds the whole evidence of a model: the run record (tags for the identifying fields, params
for every section, the JSON), the metrics, and the artifacts. The registered version points at the run's ONNX
model and carries the ids needed to trace it without opening the run (run id, snapshot id, feature spec
version). Stages are deprecated in MLflow 3: promotion moves aliases (`candidate` here, `champion` in the gate).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from factory_providers.mlflow.hooks import MlflowHook
from pipelines.lineage import RunRecord


class CandidateVersion(BaseModel):
    """The registered model version a training run produced (small: this is the task's XCom)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    experiment: str
    model_name: str
    version: str
    alias: str
    model_uri: str


def log_training_run(
    hook: MlflowHook,
    *,
    experiment: str,
    run_name: str,
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

    `artifacts` maps an artifact folder in the run to a local file or directory.
    """
    import mlflow
    import mlflow.onnx
    import onnx

    with hook.tracking() as client:
        mlflow.set_experiment(experiment)
        with mlflow.start_run(run_name=run_name) as run:
            mlflow.set_tags({**record.tags(), **(extra_tags or {})})
            mlflow.log_params(dict(params))
            mlflow.log_metrics(dict(metrics))
            mlflow.log_text(record.model_dump_json(indent=2), "run_record.json")
            for folder, path in artifacts.items():
                if path.is_dir():
                    mlflow.log_artifacts(str(path), folder)
                else:
                    mlflow.log_artifact(str(path), folder)
            logged = mlflow.onnx.log_model(onnx.load_from_string(onnx_model), name="model")
        version_tags = {
            "run_id": run.info.run_id,
            "snapshot_id": record.data.snapshot_id,
            "feature_spec_version": record.features.version,
        }
        registered = mlflow.register_model(logged.model_uri, model_name, tags=version_tags)
        client.set_registered_model_alias(model_name, alias, registered.version)
    return CandidateVersion(
        run_id=run.info.run_id,
        experiment=experiment,
        model_name=model_name,
        version=str(registered.version),
        alias=alias,
        model_uri=f"models:/{model_name}@{alias}",
    )


def log_failed_run(hook: MlflowHook, *, experiment: str, run_name: str, tags: Mapping[str, str]) -> str:
    """A FAILED run naming the stage and the reason, so the experiment shows failures next to successes."""
    import mlflow

    with hook.tracking():
        mlflow.set_experiment(experiment)
        run = mlflow.start_run(run_name=run_name, tags=dict(tags))
        mlflow.end_run(status="FAILED")
    return run.info.run_id
