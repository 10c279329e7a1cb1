"""Reproduce a registered model version from its record alone: same snapshot, same spec, same config, today's code.

`fetch_record` reads what the version's MLflow run recorded (run record, training summary with the seeds and the
split, the dataset spec as used, every metric). `retrain_from_record` re-trains and re-evaluates on the recorded
snapshot (hash-verified in S3) through the same steps as `factory_train`. `compare_and_record` compares layer by
layer (data, features, config, code, environment) and metric by metric, logs the report as an MLflow run, tags
the version with the verdict, and fails the run when a metric differs, naming the layers that differ.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task
from factory_providers.notifier import EmailNotifier, WebhookNotifier

DEFAULT_ARGS = {
    "owner": "ml-platform",
    "retries": 1,
    "retry_delay": timedelta(seconds=15),
    "on_failure_callback": [WebhookNotifier(), EmailNotifier()],
}


def _reproduction_prefix(model_name: str, version: str, run_id: str | None) -> str:
    from pipelines.assembly import run_key

    return f"reproductions/{model_name}/v{version}/{run_key(run_id)}"


@dag(
    dag_id="factory_reproduce",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["factory", "training", "lineage"],
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    params={
        "model_name": Param("flights-hgb", type="string", minLength=1, description="Registered model name"),
        "version": Param(
            "@candidate", type="string", pattern=r"^(@[A-Za-z0-9_-]+|[1-9][0-9]*)$", description='"7" or "@champion"'
        ),
        "tolerance": Param(
            0.0, type="number", minimum=0, description="Largest metric difference accepted (0: bit-identical)"
        ),
    },
)
def factory_reproduce():
    @task
    def fetch_record(params: dict[str, Any] | None = None, run_id: str | None = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException
        from factory_providers.mlflow.hooks import MlflowHook
        from factory_providers.mlflow.records import RecordNotFoundError, fetch_recorded_training, resolve_version
        from factory_providers.s3.hooks import FactoryS3Hook

        from pipelines.assembly import DATA_BUCKET

        params = params or {}
        hook = MlflowHook()
        try:
            ref = resolve_version(hook, params["model_name"], params["version"])
            original = fetch_recorded_training(hook, ref.run_id)
        except RecordNotFoundError as error:  # a retry cannot create a missing version or record
            raise AirflowFailException(str(error)) from None
        prefix = _reproduction_prefix(ref.model_name, ref.version, run_id)
        FactoryS3Hook().load_string(
            original.model_dump_json(indent=2), f"{prefix}/original.json", bucket_name=DATA_BUCKET, replace=True
        )
        return ref.model_dump() | {"prefix": prefix, "dataset": original.dataset}

    @task
    def retrain_from_record(recorded: dict[str, Any]) -> str:
        import tempfile
        from pathlib import Path

        from factory_providers.s3.hooks import FactoryS3Hook
        from factory_providers.s3.snapshots import read_snapshot

        from pipelines.assembly import DATA_BUCKET, REPOSITORY_ROOT, run_metrics
        from pipelines.datasets.spec import load_dataset_spec
        from pipelines.lineage import FeatureLineage, code_lineage, environment_lineage
        from pipelines.reproduction import RecordedTraining, TrainingFacts
        from pipelines.train_steps import evaluate_on_snapshot, fit_on_snapshot

        s3 = FactoryS3Hook()
        original = RecordedTraining.model_validate_json(
            s3.read_key(f"{recorded['prefix']}/original.json", bucket_name=DATA_BUCKET)
        )
        snapshot_id, config = original.facts.snapshot_id, original.facts.config
        manifest, frame = read_snapshot(original.dataset, snapshot_id, hook=s3)
        with tempfile.TemporaryDirectory() as tmp:
            spec_path = Path(tmp) / "spec.yaml"
            spec_path.write_text(original.spec_yaml)
            spec = load_dataset_spec(spec_path)
            fitted = fit_on_snapshot(frame, spec, config, manifest.snapshot_id)
            evaluated = evaluate_on_snapshot(fitted.model, frame, spec, Path(tmp) / "plots")
        reproduced = RecordedTraining(
            dataset=spec.name,
            spec_yaml=original.spec_yaml,
            facts=TrainingFacts(
                snapshot_id=manifest.snapshot_id,
                split=fitted.summary.split,
                features=FeatureLineage.from_spec(spec.features),
                config=fitted.summary.config,
                code=code_lineage(REPOSITORY_ROOT),
                environment=environment_lineage(),
            ),
            metrics=run_metrics(evaluated.report, fitted.summary, evaluated.parity),
        )
        key = f"{recorded['prefix']}/reproduced.json"
        s3.load_string(reproduced.model_dump_json(indent=2), key, bucket_name=DATA_BUCKET, replace=True)
        return key

    @task
    def compare_and_record(
        recorded: dict[str, Any], reproduced_key: str, params: dict[str, Any] | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        import logging

        from airflow.sdk.exceptions import AirflowFailException
        from factory_providers.mlflow.hooks import MlflowHook
        from factory_providers.mlflow.records import log_reproduction
        from factory_providers.s3.hooks import FactoryS3Hook

        from pipelines.assembly import DATA_BUCKET, experiment_name, run_key
        from pipelines.reproduction import RecordedTraining, compare_reproduction

        s3 = FactoryS3Hook()
        original, reproduced = (
            RecordedTraining.model_validate_json(s3.read_key(key, bucket_name=DATA_BUCKET))
            for key in (f"{recorded['prefix']}/original.json", reproduced_key)
        )
        report = compare_reproduction(
            model_name=recorded["model_name"],
            version=recorded["version"],
            original_run_id=recorded["run_id"],
            original=original.facts,
            reproduced=reproduced.facts,
            original_metrics=original.metrics,
            reproduced_metrics=reproduced.metrics,
            tolerance=float((params or {}).get("tolerance", 0.0)),
        )
        s3.load_string(
            report.model_dump_json(indent=2), f"{recorded['prefix']}/report.json", bucket_name=DATA_BUCKET, replace=True
        )
        reproduction_run = log_reproduction(
            MlflowHook(),
            experiment=experiment_name(original.dataset),
            run_name=f"reproduce-{recorded['model_name']}-v{recorded['version']}-{run_key(run_id)}",
            report=report,
            tags={"airflow.dag_id": "factory_reproduce", "airflow.run_id": run_id or ""},
        )
        for layer in report.layers:
            logging.getLogger(__name__).info("%s: %s", layer.layer, "same" if layer.same else layer.differences)
        if not report.identical:
            raise AirflowFailException(f"{report.verdict} (MLflow run {reproduction_run})")
        return {"identical": True, "verdict": report.verdict, "mlflow_run_id": reproduction_run}

    recorded = fetch_record()
    compare_and_record(recorded, retrain_from_record(recorded))


factory_reproduce()
