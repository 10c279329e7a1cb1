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
from airflow.sdk import Asset, Param, dag, task
from factory_providers.notifier import EmailNotifier, WebhookNotifier

# Must match pipelines.assembly.DEFAULT_DATASET_SPEC (not imported here: it pulls pandas into DAG parsing).
DEFAULT_DATASET_SPEC = "pipelines/configs/datasets/flights.yaml"
DEFAULT_GATE_POLICY = "pipelines/configs/policies/gate.yaml"  # = pipelines.assembly.DEFAULT_GATE_POLICY


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
    "on_failure_callback": [record_failure_in_mlflow, WebhookNotifier(), EmailNotifier()],
}


def _read_snapshot(snapshot: dict[str, Any]):  # -> (SnapshotManifest, DataFrame); heavy types stay unimported
    """The snapshot an upstream task extracted, from S3, hash-verified."""
    from factory_providers.s3.snapshots import read_snapshot

    return read_snapshot(snapshot["dataset"], snapshot["snapshot_id"])


def _download(s3, key: str, path) -> None:  # s3: FactoryS3Hook, path: Path (types stay unimported at parse)
    from pipelines.assembly import DATA_BUCKET

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(s3.get_key(key, bucket_name=DATA_BUCKET).get()["Body"].read())


@dag(
    dag_id="factory_train",
    schedule=[Asset("factory://retraining/flights")],  # factory_drift's guarded retraining; manual runs still work
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
        "source": Param(
            "table", enum=["table", "files"], description="Extract from the spec's SQL table or its S3 files"
        ),
        "overrides": Param({}, type="object", description='Hyperparameter overrides, e.g. {"max_iter": 100}'),
        "interval_start": Param(
            None, type=["null", "string"], description="ISO 8601 with timezone; empty: spec's initial interval"
        ),
        "interval_end": Param(None, type=["null", "string"], description="ISO 8601 with timezone (exclusive)"),
        "owner": Param(None, type=["null", "string"], description="Accountable owner; empty: the spec's owner"),
        "gate_policy": Param(
            DEFAULT_GATE_POLICY, type="string", minLength=1, description="Gate policy YAML (relative to the repo)"
        ),
    },
)
def factory_train():
    @task
    def extract_snapshot(params: dict[str, Any] | None = None, triggering_asset_events=None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException
        from factory_providers.s3.files import extract_files_interval
        from factory_providers.s3.hooks import FactoryS3Hook
        from factory_providers.source.hooks import EmptyIntervalError, FactorySourceHook

        from pipelines.assembly import DATA_BUCKET, TrainRequestError, resolve_request, s3_uri, snapshot_keys
        from pipelines.snapshots import build_snapshot

        try:
            request = resolve_request(params or {})
            if triggering_asset_events and request.source == "table":  # drift-triggered: learn from the latest data
                newest = FactorySourceHook().newest_time(request.spec)
                request = resolve_request(params or {}, newest_row=newest)
            spec, start, end = request.spec, request.interval.start, request.interval.end
            if request.source == "files":
                extraction = extract_files_interval(spec, start, end)
                frame, source_query = extraction.frame, extraction.source_query
            else:
                source = FactorySourceHook()
                frame, source_query = source.extract_interval(spec, start, end), source.interval_query(spec)
        except (TrainRequestError, EmptyIntervalError) as error:  # retrying cannot fix the request or the data
            raise AirflowFailException(str(error)) from None
        snapshot = build_snapshot(
            frame,
            request.spec,
            source_query=source_query,
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
            "interval": {"start": start.isoformat(), "end": end.isoformat()},
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

    @task(queue="training", pool="training")
    def train_model(
        snapshot: dict[str, Any], params: dict[str, Any] | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        import tempfile
        from pathlib import Path

        from factory_providers.s3.hooks import FactoryS3Hook

        from pipelines.assembly import DATA_BUCKET, resolve_request, run_prefix
        from pipelines.train_steps import fit_on_snapshot

        request = resolve_request(params or {})
        manifest, frame = _read_snapshot(snapshot)
        fitted = fit_on_snapshot(frame, request.spec, request.config, manifest.snapshot_id)
        prefix = run_prefix(request.spec.name, run_id)
        s3 = FactoryS3Hook()
        with tempfile.TemporaryDirectory() as tmp:
            native = fitted.model.native_artifact(Path(tmp))
            s3.load_file(str(native), f"{prefix}/model/{native.name}", bucket_name=DATA_BUCKET, replace=True)
        s3.load_string(
            fitted.summary.model_dump_json(indent=2), f"{prefix}/training.json", bucket_name=DATA_BUCKET, replace=True
        )
        return {"prefix": prefix, "native_model_key": f"{prefix}/model/{native.name}"}

    @task(queue="training", pool="training")
    def evaluate_and_export(
        snapshot: dict[str, Any], trained: dict[str, Any], params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        import tempfile
        from pathlib import Path

        from factory_providers.s3.hooks import FactoryS3Hook

        from pipelines.assembly import DATA_BUCKET, resolve_request
        from pipelines.train_steps import evaluate_on_snapshot
        from pipelines.training.base import load_trained_model

        spec, prefix = resolve_request(params or {}).spec, trained["prefix"]
        _, frame = _read_snapshot(snapshot)
        s3 = FactoryS3Hook()
        with tempfile.TemporaryDirectory() as tmp:
            native = Path(s3.download_file(trained["native_model_key"], bucket_name=DATA_BUCKET, local_path=tmp))
            evaluated = evaluate_on_snapshot(load_trained_model(native), frame, spec, Path(tmp) / "plots")
            outputs = {
                "model/model.onnx": evaluated.onnx_model,
                "evaluation/evaluation.json": evaluated.report.model_dump_json(indent=2).encode(),
                "evaluation/parity.json": evaluated.parity.model_dump_json(indent=2).encode(),
            }
            for name, data in outputs.items():
                s3.load_bytes(data, f"{prefix}/{name}", bucket_name=DATA_BUCKET, replace=True)
            for name, path in evaluated.plots.items():
                s3.load_file(str(path), f"{prefix}/evaluation/plots/{name}.png", bucket_name=DATA_BUCKET, replace=True)
        return {"onnx_key": f"{prefix}/model/model.onnx", "roc_auc": evaluated.report.headline.roc_auc}

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
        from pipelines.datasets.spec import TimeInterval
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
                interval=TimeInterval.model_validate(snapshot["interval"]),
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
                attempt_key=f"factory_train/{run_id}",
                record=evidence.record,
                params=evidence.params,
                metrics=evidence.metrics,
                artifacts={
                    "evaluation": run_dir / "evaluation",
                    "native": run_dir / "model" / "model.joblib",
                    "training": run_dir / "training.json",
                    "validation": local / "validation",
                    "snapshot": local / "snapshot",
                    "spec": request.spec_path,  # the dataset spec as trained: `factory_reproduce` re-runs from it
                },
                onnx_model=(run_dir / "model" / "model.onnx").read_bytes(),
                model_name=f"{spec.name}-{summary.config.kind}",
                alias=CANDIDATE_ALIAS,
                extra_tags={"airflow.dag_id": "factory_train", "airflow.run_id": run_id or ""},
            )
        return candidate.model_dump()

    # ----- quality gate: champion vs this version on its own test rows -> (a human) -> `challenger` -----------
    @task(queue="training", pool="training")
    def gate_candidate(
        snapshot: dict[str, Any], registered: dict[str, Any], params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Decide on the registered version against the champion re-scored from the registry; report + model
        card into the version's run, verdict as version tags (a rejected version stays, with its report)."""
        import logging

        from airflow.sdk.exceptions import AirflowFailException
        from factory_providers.mlflow.aliases import AliasRegistry
        from factory_providers.mlflow.gate import gate_registered_version

        from pipelines.assembly import labelled_split, resolve_request
        from pipelines.gate import GateInputError, load_gate_policy
        from pipelines.gate.card import load_model_card_config

        request = resolve_request(params or {})
        spec = request.spec
        _, frame = _read_snapshot(snapshot)
        with AliasRegistry.connect() as registry:
            try:
                outcome, _ = gate_registered_version(
                    registry,
                    model_name=registered["model_name"],
                    version=registered["version"],
                    rows=labelled_split(frame, spec)[0].test,
                    label=spec.target.name,
                    slice_columns=spec.slices,
                    policy=load_gate_policy(request.gate_policy),
                    card=load_model_card_config(spec.name, spec.description),
                )
            except GateInputError as error:  # the inputs cannot be judged: a retry would not change that
                raise AirflowFailException(f"gate: {error}") from None
        logging.getLogger(__name__).info(
            "gate %s for %s: %s\ngate report: %s", outcome.decision, outcome.ref, outcome.summary, outcome.report_url
        )
        return outcome.model_dump(mode="json")

    @task.branch
    def route_gate_decision(gate: dict[str, Any]) -> str | None:
        """needs_approval: ask a human; promote: straight to the promotion; reject: nothing more to do."""
        return {"needs_approval": "approve_candidate", "promote": "promote_challenger"}.get(gate["decision"])

    @task(trigger_rule="none_failed_min_one_success")  # runs after the approval, or directly when none is needed
    def promote_challenger(gate: dict[str, Any], ti=None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException
        from factory_providers.mlflow.aliases import AliasRegistry
        from factory_providers.mlflow.gate import promote_to_challenger

        from pipelines.alias_log import AliasConflictError
        from pipelines.gate.outcome import GateOutcome

        outcome = GateOutcome.model_validate(gate)
        asked = outcome.decision == "needs_approval"
        approval = ti.xcom_pull(task_ids="approve_candidate", key="answer") if asked else None
        step = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}"
        with AliasRegistry.connect() as registry:
            try:
                move = promote_to_challenger(
                    registry, outcome, approval=approval, actor=f"airflow:{step}", request_id=step
                )
            except AliasConflictError as error:  # the registry moved since the gate ran: its verdict is stale
                raise AirflowFailException(f"{outcome.ref} not promoted: {error}; re-run the gate") from None
        return move.model_dump(mode="json")

    @task(trigger_rule="none_failed")  # also after a rejection, when the promotion was skipped
    def record_gate_outcome(gate: dict[str, Any], ti=None) -> dict[str, Any]:
        import logging

        from factory_providers.mlflow.gate import set_version_tags
        from factory_providers.mlflow.hooks import MlflowHook

        from pipelines.gate.outcome import GateOutcome, final_outcome

        outcome = GateOutcome.model_validate(gate)
        approval = ti.xcom_pull(task_ids="approve_candidate", key="answer")  # the approver's answer, if asked
        final = final_outcome(outcome, approval, ti.xcom_pull(task_ids="promote_challenger"))
        with MlflowHook().tracking() as client:
            set_version_tags(client, outcome.model_name, outcome.version, final.tags)
        logging.getLogger(__name__).info("%s\ngate report: %s", final.summary, outcome.report_url)
        return final.model_dump(mode="json")

    from factory_providers.approval.operators import GateApprovalOperator  # plugins/: cheap, no heavy imports

    snapshot = extract_snapshot()
    validation = validate_snapshot(snapshot)
    trained = train_model(snapshot)
    validation >> trained  # train only on validated data
    exported = evaluate_and_export(snapshot, trained)
    registered = register_model(snapshot, validation, trained, exported)
    gate = gate_candidate(snapshot, registered)
    approval = GateApprovalOperator(task_id="approve_candidate", gate_task_id="gate_candidate")
    promoted = promote_challenger(gate)
    route_gate_decision(gate) >> [approval, promoted]
    approval >> promoted  # Approve: promote; Reject (or no answer before the timeout): promotion skipped
    promoted >> record_gate_outcome(gate)


factory_train()
