"""Read back what a registered model version was trained from, and record reproductions of it.

The run that produced a version holds its whole evidence (see `registry.log_training_run`): the run record, the
training summary (config with seeds, split), the dataset spec as used, and every metric. This adapter turns a
version reference into those records, with errors that name what is missing instead of MLflow's 404s.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from factory_providers.mlflow.hooks import MlflowHook
from pipelines.lineage import RunRecord
from pipelines.reproduction import RecordedTraining, ReproductionReport, TrainingFacts

RECORD_ARTIFACTS = ("run_record.json", "training/training.json", "spec")


class RecordNotFoundError(LookupError):
    """The version, alias or one of the run's records does not exist; the message names which."""


class VersionRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str
    version: str
    run_id: str


def resolve_version(hook: MlflowHook, model_name: str, ref: str) -> VersionRef:
    """`ref` is a version number ("7") or an alias ("@champion")."""
    from mlflow.exceptions import MlflowException

    with hook.tracking() as client:
        try:
            if ref.startswith("@"):
                found = client.get_model_version_by_alias(model_name, ref[1:])
            else:
                found = client.get_model_version(model_name, ref)
        except MlflowException as error:
            # MLflow answers a missing alias with INVALID_PARAMETER_VALUE, a missing version or model with 404.
            if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            what = f"alias {ref[1:]!r}" if ref.startswith("@") else f"version {ref!r}"
            raise RecordNotFoundError(
                f"registered model {model_name!r} has no {what} (MLflow: {error.message})"
            ) from None
    if not found.run_id:
        raise RecordNotFoundError(f"{model_name} version {found.version} was not registered from a run")
    return VersionRef(model_name=model_name, version=str(found.version), run_id=found.run_id)


def fetch_recorded_training(hook: MlflowHook, run_id: str) -> RecordedTraining:
    """The original side of a reproduction, from the run's artifacts and metrics alone."""
    from mlflow.exceptions import MlflowException

    from pipelines.assembly import TrainingSummary

    with hook.tracking() as client, tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp)
        present = {item.path for item in client.list_artifacts(run_id)} | {
            item.path for item in client.list_artifacts(run_id, "training")
        }
        missing = [name for name in RECORD_ARTIFACTS if name not in present]
        if missing:
            raise RecordNotFoundError(
                f"run {run_id} lacks {missing}: it cannot be reproduced from its record alone "
                "(runs logged before the dataset spec was recorded have no `spec/`)"
            )
        try:
            for name in RECORD_ARTIFACTS:  # a file is downloaded under its folder's name: fetch the folder
                client.download_artifacts(run_id, name.split("/")[0], str(local))
        except MlflowException as error:
            raise RecordNotFoundError(f"run {run_id}: could not download its records: {error.message}") from None
        metrics = client.get_run(run_id).data.metrics
        record = RunRecord.model_validate_json((local / "run_record.json").read_text())
        summary = TrainingSummary.model_validate_json((local / "training" / "training.json").read_text())
        specs = sorted((local / "spec").glob("*.y*ml"))
        if len(specs) != 1:
            raise RecordNotFoundError(f"run {run_id}: expected one dataset spec under spec/, found {len(specs)}")
        spec_yaml = specs[0].read_text()
    return RecordedTraining(
        dataset=record.data.dataset,
        spec_yaml=spec_yaml,
        facts=TrainingFacts(
            snapshot_id=record.data.snapshot_id,
            split=summary.split,
            features=record.features,
            config=summary.config,
            code=record.code,
            environment=record.environment,
        ),
        metrics=dict(metrics),
    )


def log_reproduction(
    hook: MlflowHook, *, experiment: str, run_name: str, report: ReproductionReport, tags: dict[str, str]
) -> str:
    """A run holding the reproduction report (FAILED when not identical), and the verdict on the version."""
    import mlflow

    with hook.tracking() as client:
        mlflow.set_experiment(experiment)
        run_tags = {
            **tags,
            "reproduction.of_run": report.original_run_id,
            "reproduction.model": f"{report.model_name}/{report.version}",
            "reproduction.identical": str(report.identical).lower(),
            "reproduction.differing_layers": ",".join(report.differing_layers) or "none",
        }
        run = mlflow.start_run(run_name=run_name, tags=run_tags)
        try:
            mlflow.log_text(json.dumps(report.model_dump(mode="json"), indent=2), "reproduction.json")
        finally:
            mlflow.end_run(status="FINISHED" if report.identical else "FAILED")
        verdict = "identical" if report.identical else "differs"
        client.set_model_version_tag(report.model_name, report.version, "reproduction.last", verdict)
        client.set_model_version_tag(report.model_name, report.version, "reproduction.run_id", run.info.run_id)
    return run.info.run_id
