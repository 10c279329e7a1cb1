"""Assembly line: extract an interval -> content-addressed snapshot -> validate -> train -> evaluate + ONNX export ->
one MLflow run holding all the evidence -> a registered model version with alias `candidate`.

Trigger it with Params (dataset spec, trainer kind, hyperparameter overrides, interval, owner); an empty interval
defaults to the spec's `split.initial_interval`. Re-running an interval reuses its snapshot (same rows, same id,
nothing written twice). Tasks hand each other S3 URIs and ids only; every file lives in S3 (`factory-data`) until
the register task puts it into the MLflow run. A task that fails for good leaves a FAILED run in the experiment
naming the stage and the reason.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

# Must match pipelines.assembly.DEFAULT_DATASET_SPEC (not imported here: it pulls pandas into DAG parsing).
DEFAULT_DATASET_SPEC = "pipelines/configs/datasets/flights.yaml"


def record_failure_in_mlflow(context: dict[str, Any]) -> None:
    """on_failure_callback: a FAILED MLflow run in the dataset's experiment naming the failed stage and why.

    Best effort by design: a tracking server that is down must not replace the task's own error in the log.
    """
    import logging

    ti = context["ti"]
    try:
        from factory_providers.mlflow.hooks import MlflowHook
        from factory_providers.mlflow.registry import log_failed_run

        from pipelines.assembly import failure_experiment, run_key

        run_id = context["run_id"]
        log_failed_run(
            MlflowHook(),
            experiment=failure_experiment(context["params"]),
            run_name=f"failed-{ti.task_id}-{run_key(run_id)}",
            tags={
                "status": "failed",
                "failed_stage": ti.task_id,
                "failure_reason": str(context.get("exception") or "unknown")[:5000],
                "airflow.dag_id": ti.dag_id,
                "airflow.run_id": run_id,
                "airflow.try_number": str(ti.try_number),
            },
        )
    except Exception:
        logging.getLogger(__name__).exception("could not record the failure of %s in MLflow", ti.task_id)


DEFAULT_ARGS = {
    "owner": "ml-platform",
    "retries": 1,
    "retry_delay": timedelta(seconds=15),
    "on_failure_callback": record_failure_in_mlflow,
}


def _read_snapshot(snapshot: dict[str, Any]):  # -> (SnapshotManifest, DataFrame); heavy types stay unimported
    """The snapshot's manifest and rows from S3, hash-verified (a changed object fails here, not in training)."""
    from factory_providers.s3.hooks import FactoryS3Hook

    from pipelines.assembly import DATA_BUCKET, snapshot_keys
    from pipelines.snapshots import SnapshotManifest, load_snapshot

    s3 = FactoryS3Hook()
    keys = snapshot_keys(snapshot["dataset"], snapshot["snapshot_id"])
    manifest = SnapshotManifest.model_validate_json(s3.read_key(keys.manifest, bucket_name=DATA_BUCKET))
    data = s3.get_key(keys.data, bucket_name=DATA_BUCKET).get()["Body"].read()
    return manifest, load_snapshot(data, manifest)


def _download(s3, key: str, path) -> None:  # s3: FactoryS3Hook, path: Path (types stay unimported at parse)
    from pipelines.assembly import DATA_BUCKET

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(s3.get_key(key, bucket_name=DATA_BUCKET).get()["Body"].read())


@dag(
    dag_id="factory_train",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["factory", "training"],
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    params={
        "dataset_spec": Param(
            DEFAULT_DATASET_SPEC, type="string", minLength=1, description="Dataset spec YAML (relative to the repo)"
        ),
        "trainer": Param("hgb", enum=["hgb", "logreg", "mlp"], description="Trainer kind"),
        "overrides": Param({}, type="object", description='Hyperparameter overrides, e.g. {"max_iter": 100}'),
        "interval_start": Param(
            None, type=["null", "string"], description="ISO 8601 with timezone; empty: spec's initial interval"
        ),
        "interval_end": Param(None, type=["null", "string"], description="ISO 8601 with timezone (exclusive)"),
        "owner": Param(None, type=["null", "string"], description="Accountable owner; empty: the spec's owner"),
    },
)
def factory_train():
    @task
    def extract_snapshot(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException
        from factory_providers.s3.hooks import FactoryS3Hook
        from factory_providers.source.hooks import EmptyIntervalError, FactorySourceHook

        from pipelines.assembly import DATA_BUCKET, TrainRequestError, resolve_request, s3_uri, snapshot_keys
        from pipelines.snapshots import build_snapshot

        try:
            request = resolve_request(params or {})
            source = FactorySourceHook()
            frame = source.extract_interval(request.spec, request.interval.start, request.interval.end)
        except (TrainRequestError, EmptyIntervalError) as error:  # retrying cannot fix the request or the data
            raise AirflowFailException(str(error)) from None
        snapshot = build_snapshot(
            frame,
            request.spec,
            source_query=source.interval_query(request.spec),
            interval_start=request.interval.start,
            interval_end=request.interval.end,
        )
        manifest = snapshot.manifest
        keys = snapshot_keys(manifest.dataset, manifest.snapshot_id)
        s3 = FactoryS3Hook()
        # Data first, manifest last: a manifest in S3 means its data is complete.
        wrote_data = s3.put_if_absent(snapshot.data, DATA_BUCKET, keys.data)
        wrote_manifest = s3.put_if_absent(manifest.model_dump_json(indent=2).encode(), DATA_BUCKET, keys.manifest)
        return {
            "dataset": manifest.dataset,
            "snapshot_id": manifest.snapshot_id,
            "rows": manifest.rows,
            "data_uri": s3_uri(DATA_BUCKET, keys.data),
            "manifest_uri": s3_uri(DATA_BUCKET, keys.manifest),
            "written": wrote_data or wrote_manifest,
        }

    @task
    def validate_snapshot(
        snapshot: dict[str, Any], params: dict[str, Any] | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        import logging
        import tempfile
        from pathlib import Path

        logging.getLogger("great_expectations").setLevel(logging.WARNING)  # before GX is imported
        from airflow.sdk.exceptions import AirflowFailException
        from factory_providers.s3.hooks import FactoryS3Hook

        from pipelines.assembly import DATA_BUCKET, resolve_request, run_key, s3_uri, snapshot_keys
        from pipelines.validation import validate_frame
        from pipelines.validation.data_docs import write_data_docs

        spec = resolve_request(params or {}).spec
        manifest, frame = _read_snapshot(snapshot)
        report = validate_frame(
            frame, spec, interval_end=manifest.interval_end, engine="fast", snapshot_id=manifest.snapshot_id
        )
        prefix = snapshot_keys(manifest.dataset, manifest.snapshot_id).validation_prefix(run_key(run_id))
        s3 = FactoryS3Hook()
        s3.load_string(report.to_json(), f"{prefix}/report.json", bucket_name=DATA_BUCKET, replace=True)
        with tempfile.TemporaryDirectory() as tmp:
            docs = write_data_docs(report, spec, Path(tmp))
            s3.load_file(str(docs), f"{prefix}/data_docs.html", bucket_name=DATA_BUCKET, replace=True)
        if not report.success:
            failed = ", ".join(check.name for check in report.blocking_failures)
            raise AirflowFailException(
                f"snapshot {manifest.snapshot_id[:12]} failed blocking checks: {failed} "
                f"(report: {s3_uri(DATA_BUCKET, prefix)}/report.json)"
            )
        return {
            "report_uri": s3_uri(DATA_BUCKET, f"{prefix}/report.json"),
            "data_docs_uri": s3_uri(DATA_BUCKET, f"{prefix}/data_docs.html"),
            "warnings": [check.name for check in report.warnings],
        }

    @task
    def train_model(
        snapshot: dict[str, Any], params: dict[str, Any] | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        import tempfile
        from datetime import UTC, datetime
        from pathlib import Path

        from factory_providers.s3.hooks import FactoryS3Hook

        from pipelines.assembly import DATA_BUCKET, TrainingSummary, labelled_split, resolve_request, run_prefix
        from pipelines.training.factory import train_model as fit_model

        request = resolve_request(params or {})
        spec, label = request.spec, request.spec.target.name
        manifest, frame = _read_snapshot(snapshot)
        split, target = labelled_split(frame, spec)
        model = fit_model(
            request.config, spec.features, split.train, split.train[label], split.validation, split.validation[label]
        )
        prefix = run_prefix(spec.name, run_id)
        summary = TrainingSummary(
            snapshot_id=manifest.snapshot_id,
            config=request.config,
            target=target,
            split=split.record,
            fit_summary=model.fit_summary,
            trained_at=datetime.now(UTC),
        )
        s3 = FactoryS3Hook()
        with tempfile.TemporaryDirectory() as tmp:
            native = model.native_artifact(Path(tmp))
            s3.load_file(str(native), f"{prefix}/model/{native.name}", bucket_name=DATA_BUCKET, replace=True)
        s3.load_string(
            summary.model_dump_json(indent=2), f"{prefix}/training.json", bucket_name=DATA_BUCKET, replace=True
        )
        return {"prefix": prefix, "native_model_key": f"{prefix}/model/{native.name}"}

    @task
    def evaluate_and_export(
        snapshot: dict[str, Any], trained: dict[str, Any], params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        import tempfile
        from pathlib import Path

        from factory_providers.s3.hooks import FactoryS3Hook

        from pipelines.assembly import DATA_BUCKET, labelled_split, resolve_request
        from pipelines.evaluation.plots import write_evaluation_plots
        from pipelines.evaluation.report import evaluate_model
        from pipelines.export.parity import export_checked
        from pipelines.export.signature import onnx_inputs_from_frame
        from pipelines.training.base import load_trained_model

        spec = resolve_request(params or {}).spec
        label, prefix = spec.target.name, trained["prefix"]
        _, frame = _read_snapshot(snapshot)
        test = labelled_split(frame, spec)[0].test
        s3 = FactoryS3Hook()
        with tempfile.TemporaryDirectory() as tmp:
            native = Path(s3.download_file(trained["native_model_key"], bucket_name=DATA_BUCKET, local_path=tmp))
            model = load_trained_model(native)
            onnx_model, parity = export_checked(model, test)  # raises ParityError beyond 1e-5
            proba = model.predict_proba(test)
            report = evaluate_model(
                test[label],
                proba,
                slices={column: test[column] for column in spec.slices},
                onnx_model=onnx_model,
                onnx_feeds=onnx_inputs_from_frame(test.head(1000), model.signature),
            )
            outputs = {
                "model/model.onnx": onnx_model,
                "evaluation/evaluation.json": report.model_dump_json(indent=2).encode(),
                "evaluation/parity.json": parity.model_dump_json(indent=2).encode(),
            }
            for name, data in outputs.items():
                s3.load_bytes(data, f"{prefix}/{name}", bucket_name=DATA_BUCKET, replace=True)
            for name, path in write_evaluation_plots(test[label], proba, Path(tmp) / "plots").items():
                s3.load_file(str(path), f"{prefix}/evaluation/plots/{name}.png", bucket_name=DATA_BUCKET, replace=True)
        return {"onnx_key": f"{prefix}/model/model.onnx", "roc_auc": report.headline.roc_auc}

    @task
    def register_model(
        snapshot: dict[str, Any],
        validation: dict[str, Any],
        trained: dict[str, Any],
        exported: dict[str, Any],
        params: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        import tempfile
        from pathlib import Path

        from factory_providers.mlflow.hooks import MlflowHook
        from factory_providers.mlflow.registry import log_training_run
        from factory_providers.s3.hooks import FactoryS3Hook

        from pipelines.assembly import (
            CANDIDATE_ALIAS,
            DATA_BUCKET,
            REPOSITORY_ROOT,
            TrainingSummary,
            experiment_name,
            resolve_request,
            run_evidence,
            run_key,
            s3_uri,
            snapshot_keys,
        )
        from pipelines.evaluation.report import EvaluationReport
        from pipelines.export.parity import ParityReport
        from pipelines.lineage import code_lineage, environment_lineage

        request = resolve_request(params or {})
        spec, prefix = request.spec, trained["prefix"]
        keys = snapshot_keys(snapshot["dataset"], snapshot["snapshot_id"])
        s3 = FactoryS3Hook()
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp)
            # The run's working area, the snapshot's manifest and this run's validation evidence, as MLflow folders.
            sources = {f"{prefix}/": local / "run", keys.validation_prefix(run_key(run_id)) + "/": local / "validation"}
            for key_prefix, folder in sources.items():
                for key in s3.list_keys(DATA_BUCKET, prefix=key_prefix):
                    _download(s3, key, folder / key.removeprefix(key_prefix))
            _download(s3, keys.manifest, local / "snapshot" / "manifest.json")
            run_dir = local / "run"
            summary = TrainingSummary.model_validate_json((run_dir / "training.json").read_text())
            evidence = run_evidence(
                request,
                snapshot_id=snapshot["snapshot_id"],
                snapshot_uri=snapshot["data_uri"],
                summary=summary,
                evaluation=EvaluationReport.model_validate_json((run_dir / "evaluation/evaluation.json").read_text()),
                parity=ParityReport.model_validate_json((run_dir / "evaluation/parity.json").read_text()),
                artifact_uris={
                    "snapshot": snapshot["data_uri"],
                    "snapshot_manifest": snapshot["manifest_uri"],
                    "validation_report": validation["report_uri"],
                    "data_docs": validation["data_docs_uri"],
                    "onnx_model": s3_uri(DATA_BUCKET, exported["onnx_key"]),
                    "native_model": s3_uri(DATA_BUCKET, trained["native_model_key"]),
                },
                validation_warnings=validation["warnings"],
                code=code_lineage(REPOSITORY_ROOT),
                environment=environment_lineage(),
            )
            candidate = log_training_run(
                MlflowHook(),
                experiment=experiment_name(spec.name),
                run_name=f"{summary.config.kind}-{run_key(run_id)}",
                record=evidence.record,
                params=evidence.params,
                metrics=evidence.metrics,
                artifacts={
                    "evaluation": run_dir / "evaluation",
                    "native": run_dir / "model" / "model.joblib",
                    "training": run_dir / "training.json",
                    "validation": local / "validation",
                    "snapshot": local / "snapshot",
                },
                onnx_model=(run_dir / "model" / "model.onnx").read_bytes(),
                model_name=f"{spec.name}-{summary.config.kind}",
                alias=CANDIDATE_ALIAS,
                extra_tags={"airflow.dag_id": "factory_train", "airflow.run_id": run_id or ""},
            )
        return candidate.model_dump()

    snapshot = extract_snapshot()
    validation = validate_snapshot(snapshot)
    trained = train_model(snapshot)
    validation >> trained  # train only on validated data
    exported = evaluate_and_export(snapshot, trained)
    register_model(snapshot, validation, trained, exported)


factory_train()
