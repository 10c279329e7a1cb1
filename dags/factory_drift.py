"""Production monitor, hourly: one window of logged traffic vs the champion's training data -> drift report,
Evidently report for humans, alerts per the rubric, and a guarded retraining decision.

`resolve_reference` picks the version holding `champion` (before any promotion: `candidate`, and says so) and
builds its reference profile once from its training snapshot and its own ONNX scores. `check_drift` reads the
data interval's window of the gateway's inference log (`gateway-samples/<model>/predictions/date=...`), runs the
fast drift path (the verdict) and Evidently's DataDriftPreset on a bounded sample (HTML + JSON for humans), and
stores everything under `s3://factory-data/monitoring/<dataset>/<model>/drift/<window>/`; data, prediction and
concept drift are named separately, with the spec's business proxy beside them. `check_system` scrapes the
gateway's and Triton's metrics (latency p99, error rate, queue time, throughput since the previous run).
An empty or small window is "insufficient data", not an error.
`decide_retraining` gathers the guardrail facts and records the decision with every reason;
`send_alerts` delivers per `alerts.yaml` (deduplicated); `request_retraining` emits the asset event
`factory://retraining/<dataset>` (report URI, drifted features, interval) that schedules `factory_train`,
and is skipped whenever the decision is not to retrain. Runbook: docs/runbook.md.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, task
from factory_providers.notifier import EmailNotifier, WebhookNotifier

# The retraining asset names the dataset at parse time; `resolve_reference` checks the spec agrees.
DATASET = "flights"
RETRAINING_ASSET = Asset(f"factory://retraining/{DATASET}")
DEFAULT_DATASET_SPEC = "pipelines/configs/datasets/flights.yaml"  # = pipelines.assembly.DEFAULT_DATASET_SPEC
DATA_BUCKET = "factory-data"  # = pipelines.assembly.DATA_BUCKET

DEFAULT_ARGS = {
    "owner": "ml-platform",
    "retries": 1,
    "retry_delay": timedelta(seconds=30),
    # A task that fails for good is an alert too (rubric: task_failure), deduplicated like every other.
    "on_failure_callback": [WebhookNotifier(), EmailNotifier()],
}


def _repo_path(value: str):  # -> Path, relative to the repository unless absolute
    from pathlib import Path

    from pipelines.assembly import REPOSITORY_ROOT

    path = Path(value)
    return path if path.is_absolute() else REPOSITORY_ROOT / path


def _spec(params: dict[str, Any]):  # -> DatasetSpec (types stay unimported at parse)
    from pipelines.datasets.spec import load_dataset_spec

    return load_dataset_spec(_repo_path(params["dataset_spec"]))


def _window(params: dict[str, Any], context_start, context_end):
    from datetime import UTC, datetime

    from pipelines.monitoring.monitor import resolve_window

    return resolve_window(
        params.get("window_start"), params.get("window_end"), context_start, context_end, datetime.now(UTC)
    )


@dag(
    dag_id="factory_drift",
    schedule=CronDataIntervalTimetable("@hourly", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # decisions read the previous decision's cooldown record: one window at a time
    tags=["factory", "monitoring"],
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    params={
        "dataset_spec": Param(DEFAULT_DATASET_SPEC, type="string", minLength=1, description="Dataset spec YAML"),
        "model_name": Param("flights-hgb", type="string", minLength=1, description="Registered model to monitor"),
        "serving_model": Param(
            None, type=["null", "string"], description="Model name in the inference log; empty: the registered name"
        ),
        "log_bucket": Param(DATA_BUCKET, type="string", minLength=1, description="Bucket of the inference log"),
        "log_prefix": Param("gateway-samples", type="string", minLength=1, description="Key prefix of the log"),
        "window_start": Param(
            None, type=["null", "string"], description="ISO 8601 with timezone; empty: the run's data interval"
        ),
        "window_end": Param(None, type=["null", "string"], description="ISO 8601 with timezone (exclusive)"),
        "evidently_sample_rows": Param(5000, type="integer", minimum=100, description="Rows per side for Evidently"),
        "drift_policy": Param("pipelines/configs/policies/drift.yaml", type="string", minLength=1),
        "alert_policy": Param("pipelines/configs/policies/alerts.yaml", type="string", minLength=1),
        "retraining_policy": Param("pipelines/configs/policies/retraining.yaml", type="string", minLength=1),
        "labelled_rows_from": Param(
            "source",
            enum=["source", "feedback"],
            description="Where the guardrail counts new labelled rows: the training source (what a retraining "
            "learns from) or the feedback label store (factory_feedback)",
        ),
    },
)
def factory_drift():
    @task
    def resolve_reference(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException
        from factory_providers.mlflow.aliases import AliasRegistry
        from factory_providers.monitoring.reference import ReferenceNotFoundError, ensure_reference

        from pipelines.monitoring.policy import load_drift_policy

        params = params or {}
        spec = _spec(params)
        if spec.name != DATASET:
            raise AirflowFailException(
                f"dataset spec {params['dataset_spec']} is {spec.name!r}, this DAG's retraining asset is for "
                f"{DATASET!r}: copy the DAG per dataset"
            )
        with AliasRegistry.connect() as registry:
            try:
                reference = ensure_reference(
                    registry,
                    model_name=params["model_name"],
                    spec=spec,
                    policy=load_drift_policy(_repo_path(params["drift_policy"])),
                )
            except ReferenceNotFoundError as error:  # nothing to compare with: a retry cannot create a model
                raise AirflowFailException(str(error)) from None
        if reference.alias != "champion":
            import logging

            logging.getLogger(__name__).warning(
                "no champion for %s yet: comparing with the candidate v%s", reference.model_name, reference.version
            )
        return reference.model_dump(mode="json")

    @task
    def check_drift(
        reference: dict[str, Any],
        params: dict[str, Any] | None = None,
        data_interval_start=None,
        data_interval_end=None,
    ) -> dict[str, Any]:
        import dataclasses
        import logging
        import tempfile
        from pathlib import Path

        from factory_providers.mlflow.gate import fetch_version_onnx
        from factory_providers.mlflow.hooks import MlflowHook
        from factory_providers.monitoring.reference import load_reference_profile, score_rows
        from factory_providers.monitoring.window import read_window
        from factory_providers.s3.hooks import FactoryS3Hook

        from pipelines.assembly import s3_uri
        from pipelines.features import FeatureTypeError, MissingFeatureColumnsError
        from pipelines.monitoring.drift import detect_drift
        from pipelines.monitoring.evidently_adapter import evidently_feature_verdicts, evidently_report
        from pipelines.monitoring.monitor import (
            SCORE_COLUMN,
            MonitorReport,
            ReferenceModel,
            ServingSkew,
            monitor_keys,
            serving_skew,
            signals_of,
        )
        from pipelines.monitoring.policy import load_drift_policy

        log = logging.getLogger(__name__)
        params = params or {}
        spec, policy = _spec(params), load_drift_policy(_repo_path(params["drift_policy"]))
        ref = ReferenceModel.model_validate(reference)
        start, end = _window(params, data_interval_start, data_interval_end)
        s3 = FactoryS3Hook()
        profile, reference_sample = load_reference_profile(ref, s3)
        window = read_window(
            bucket=params["log_bucket"], prefix=params["log_prefix"], spec=spec.features, start=start, end=end,
            model=params.get("serving_model") or ref.model_name, hook=s3,
        )  # fmt: skip
        inputs, notes, skew = window.inputs, [], ServingSkew(rows_compared=0, max_abs_diff=None)
        if window.rows >= policy.min_window_rows:
            with MlflowHook().tracking() as client:
                onnx_model = fetch_version_onnx(client, ref.model_name, ref.version)
            try:
                if onnx_model is None:
                    raise LookupError(f"the registry holds no model.onnx for {ref.model_name} v{ref.version}")
                scores = score_rows(onnx_model, inputs)
            except (LookupError, MissingFeatureColumnsError, FeatureTypeError) as error:
                # Broken inputs (the schema findings say how) or no model to score with: no score to compare.
                profile = dataclasses.replace(profile, prediction=None)
                notes.append(f"prediction drift not evaluated: the window cannot be scored ({error})")
            else:
                inputs = inputs.assign(**{SCORE_COLUMN: scores})
                skew = serving_skew(window.served, scores, ref.version)
        report = detect_drift(profile, inputs, policy)
        keys = monitor_keys(spec.name, ref.model_name, start, end)
        uris = {"drift_report": s3_uri(DATA_BUCKET, keys.drift_report), "monitor": s3_uri(DATA_BUCKET, keys.monitor)}
        evidently_drifted = None
        if report.verdict != "insufficient_data":
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    html, evidently_json = evidently_report(
                        reference_sample, inputs, spec.features, html_path=Path(tmp) / "evidently.html",
                        sample_size=int(params["evidently_sample_rows"]),
                    )  # fmt: skip
                    s3.load_file(str(html), keys.evidently_html, bucket_name=DATA_BUCKET, replace=True)
                s3.load_string(json.dumps(evidently_json), keys.evidently_json, bucket_name=DATA_BUCKET, replace=True)
                uris |= {
                    "evidently_html": s3_uri(DATA_BUCKET, keys.evidently_html),
                    "evidently_json": s3_uri(DATA_BUCKET, keys.evidently_json),
                }
                verdicts = evidently_feature_verdicts(evidently_json)
                evidently_drifted = sorted(name for name, verdict in verdicts.items() if verdict.drifted)
            except Exception as error:  # the human report must not hide the fast path's verdict
                log.exception("Evidently report failed")
                notes.append(f"Evidently report failed: {type(error).__name__}: {error}"[:500])
        business = None
        if spec.business_proxy is not None:
            from pipelines.monitoring.business import business_signal

            business = business_signal(spec.business_proxy, inputs, reference_sample, min_rows=policy.min_window_rows)
        monitor = MonitorReport(
            dataset=spec.name, reference=ref, interval_start=start, interval_end=end, window_rows=window.rows,
            served_versions=window.served_versions(), verdict=report.verdict, summary=report.summary,
            drifted_features=report.drifted_features, signals=signals_of(report), serving_skew=skew,
            evidently_drifted_features=evidently_drifted, uris=uris, notes=notes, business=business,
        )  # fmt: skip
        s3.load_string(report.model_dump_json(indent=2), keys.drift_report, bucket_name=DATA_BUCKET, replace=True)
        s3.load_string(monitor.model_dump_json(indent=2), keys.monitor, bucket_name=DATA_BUCKET, replace=True)
        for family, signal in monitor.signals.items():
            log.info("%s drift: %s - %s", family, signal.status, signal.summary)
        if business is not None:
            log.info("business: %s - %s", business.status, business.summary)
        log.info("window %s..%s: %s (%s)", start.isoformat(), end.isoformat(), report.summary, uris["monitor"])
        return monitor.model_dump(mode="json") | {
            "finding_kinds": sorted({f.kind for f in report.findings if f.severity.value != "ok"}),
            "feature_spec_version": report.feature_spec_version,
        }

    @task
    def check_system(
        reference: dict[str, Any], params: dict[str, Any] | None = None, data_interval_start=None,
        data_interval_end=None,
    ) -> dict[str, Any]:  # fmt: skip
        import logging

        from factory_providers.monitoring.system import scrape_with_previous
        from factory_providers.s3.hooks import FactoryS3Hook

        from pipelines.assembly import s3_uri
        from pipelines.monitoring.alerts import load_alert_policy
        from pipelines.monitoring.monitor import monitor_keys
        from pipelines.monitoring.system_signals import evaluate_system

        params = params or {}
        served_as = params.get("serving_model") or reference["model_name"]
        pairs, notes = scrape_with_previous(served_as)
        policy = load_alert_policy(_repo_path(params["alert_policy"])).system
        signal = evaluate_system(pairs.get("gateway"), pairs.get("triton"), policy, model=served_as)
        signal = signal.model_copy(update={"notes": signal.notes + notes})
        start, end = _window(params, data_interval_start, data_interval_end)
        key = monitor_keys(_spec(params).name, reference["model_name"], start, end).system
        FactoryS3Hook().load_string(signal.model_dump_json(indent=2), key, bucket_name=DATA_BUCKET, replace=True)
        logging.getLogger(__name__).info("system: %s - %s %s", signal.status, signal.summary, signal.notes)
        return signal.model_dump(mode="json") | {"uri": s3_uri(DATA_BUCKET, key)}

    @task
    def decide_retraining(check: dict[str, Any], params: dict[str, Any] | None = None, ti=None) -> dict[str, Any]:
        import logging
        from datetime import UTC, datetime

        from factory_providers.mlflow.aliases import AliasRegistry
        from factory_providers.monitoring.facts import (
            count_feedback_labelled_rows,
            count_new_labelled_rows,
            established,
            last_retraining_request,
            running_trainings,
        )
        from factory_providers.s3.hooks import FactoryS3Hook

        from pipelines.assembly import run_key
        from pipelines.monitoring.monitor import ReferenceModel, decision_log_key, monitor_keys
        from pipelines.monitoring.retraining import RetrainingFacts, decide_retraining, load_retraining_policy

        params = params or {}
        spec = _spec(params)
        ref = ReferenceModel.model_validate(check["reference"])
        notes: dict[str, str] = {}
        with AliasRegistry.connect() as registry:
            rollback = established("rollback_version", notes, lambda: registry.current(ref.model_name).get("champion"))
        facts = RetrainingFacts(
            dataset=spec.name,
            model_name=ref.model_name,
            reference_alias=ref.alias,
            reference_version=ref.version,
            drift_verdict=check["verdict"],
            finding_kinds=check["finding_kinds"],
            drifted_features=check["drifted_features"],
            report_feature_spec_version=check["feature_spec_version"],
            champion_feature_spec_version=ref.feature_spec_version,
            rollback_version=rollback,
            running_trainings=established("running_trainings", notes, lambda: running_trainings(ti)),
            last_retrain_requested_at=established(
                "last_retrain_requested_at", notes,
                lambda: last_retraining_request(
                    dataset=spec.name, model_name=ref.model_name, excluding_run=run_key(ti.run_id), bucket=DATA_BUCKET
                ),
            ),
            new_labelled_rows=established(
                "new_labelled_rows", notes,
                lambda: count_new_labelled_rows(spec, ref.interval_end)
                if params.get("labelled_rows_from", "source") == "source"
                else count_feedback_labelled_rows(params.get("serving_model") or ref.model_name, ref.interval_end),
            ),
            labelled_since=ref.interval_end,
            now=datetime.now(UTC),
            notes=notes,
        )  # fmt: skip
        decision = decide_retraining(facts, load_retraining_policy(_repo_path(params["retraining_policy"])))
        start, end = datetime.fromisoformat(check["interval_start"]), datetime.fromisoformat(check["interval_end"])
        keys = monitor_keys(spec.name, ref.model_name, start, end)
        body = decision.model_dump_json(indent=2)
        s3 = FactoryS3Hook()
        s3.load_string(body, keys.decision, bucket_name=DATA_BUCKET, replace=True)
        log_key = decision_log_key(spec.name, ref.model_name, facts.now, run_key(ti.run_id))
        s3.load_string(body, log_key, bucket_name=DATA_BUCKET, replace=True)
        log = logging.getLogger(__name__)
        log.info("retraining decision: %s", decision.summary)
        for check_ in decision.checks:
            log.info("  %-20s %s  %s", check_.name, "pass" if check_.passed else "FAIL", check_.detail)
        return decision.model_dump(mode="json") | {"decision_uri": f"s3://{DATA_BUCKET}/{keys.decision}"}

    @task
    def send_alerts(
        check: dict[str, Any], decision: dict[str, Any], system: dict[str, Any], params: dict[str, Any] | None = None
    ) -> dict:
        import logging
        from datetime import UTC, datetime

        from factory_providers.notifier.channels import AlertDeliveryError
        from factory_providers.notifier.ledger import S3AlertLedger
        from factory_providers.notifier.notifiers import deliver_alerts
        from factory_providers.s3.hooks import FactoryS3Hook

        from pipelines.monitoring.alerts import AlertType, drift_alerts, load_alert_policy, make_alert
        from pipelines.monitoring.monitor import monitor_keys
        from pipelines.monitoring.report import DriftReport

        params = params or {}
        policy = load_alert_policy(_repo_path(params["alert_policy"]))
        s3 = FactoryS3Hook()
        model = check["reference"]["model_name"]
        start, end = datetime.fromisoformat(check["interval_start"]), datetime.fromisoformat(check["interval_end"])
        keys = monitor_keys(check["dataset"], model, start, end)
        report = DriftReport.model_validate_json(s3.read_key(keys.drift_report, bucket_name=DATA_BUCKET))
        uris = check["uris"]
        now = datetime.now(UTC)
        alerts = drift_alerts(
            report, policy, scope=model, report_uri=uris.get("evidently_html", uris["drift_report"]), raised_at=now
        )
        outcome = decision["outcome"]
        if outcome in ("retrain", "blocked"):
            alert_type = AlertType.RETRAINING_REQUESTED if outcome == "retrain" else AlertType.RETRAINING_BLOCKED
            alerts.append(
                make_alert(
                    policy, alert_type, level="default", scope=model, title=f"{alert_type.value.replace('_', ' ')}: "
                    f"{model}", summary=decision["summary"], report_uri=decision["decision_uri"], raised_at=now,
                    details={"blocked_by": decision["blocked_by"], "drift_report": uris["drift_report"]},
                )
            )  # fmt: skip
        from pipelines.monitoring.business import BusinessSignal, business_alerts
        from pipelines.monitoring.system_signals import SystemSignal, system_alerts

        system_uri = system.pop("uri")
        alerts += system_alerts(
            SystemSignal.model_validate(system), policy, scope=model, report_uri=system_uri, raised_at=now
        )
        if check.get("business") is not None:
            business = BusinessSignal.model_validate(check["business"])
            alerts += business_alerts(business, policy, scope=model, report_uri=uris["monitor"], raised_at=now)
        alerts = [alert.model_copy(update={"details": alert.details | {"uris": uris}}) for alert in alerts]
        deliveries = deliver_alerts(alerts, ledger=S3AlertLedger.connect())
        record = {
            "alerts": [alert.model_dump(mode="json") for alert in alerts],
            "deliveries": [delivery.as_dict() for delivery in deliveries],
        }
        s3.load_string(json.dumps(record, indent=2), keys.alerts, bucket_name=DATA_BUCKET, replace=True)
        log = logging.getLogger(__name__)
        for alert in alerts:
            log.info(
                "alert %s [%s]: %s -> %s", alert.alert_type.value, alert.severity.value, alert.title, alert.channels
            )
        for delivery in deliveries:
            log.info("  %s on %s: %s (%s)", delivery.alert_key, delivery.channel, delivery.status, delivery.detail)
        failed = [d for d in deliveries if d.status == "failed"]
        if failed:  # claims were released: the retry delivers them (and nothing twice)
            raise AlertDeliveryError("; ".join(f"{d.alert_key} on {d.channel}: {d.detail}" for d in failed))
        return {
            "alerts": len(alerts),
            "deliveries": record["deliveries"],
            "alerts_uri": f"s3://{DATA_BUCKET}/{keys.alerts}",
        }

    @task(outlets=[RETRAINING_ASSET])
    def request_retraining(
        decision: dict[str, Any], check: dict[str, Any], outlet_events=None, ti=None
    ) -> dict[str, Any]:
        from datetime import UTC, datetime

        from airflow.sdk.exceptions import AirflowSkipException
        from factory_providers.s3.hooks import FactoryS3Hook

        from pipelines.assembly import run_key
        from pipelines.monitoring.monitor import request_log_key

        if not decision["retrain"]:  # skipped: no asset event, factory_train is not scheduled
            raise AirflowSkipException(decision["summary"])
        ref = check["reference"]
        extra = {
            "dataset": check["dataset"],
            "model_name": ref["model_name"],
            "reference_version": ref["version"],
            "report_uri": check["uris"]["monitor"],
            "drift_report_uri": check["uris"]["drift_report"],
            "decision_uri": decision["decision_uri"],
            "drifted_features": check["drifted_features"],
            "finding_kinds": check["finding_kinds"],
            "interval_start": check["interval_start"],
            "interval_end": check["interval_end"],
            "labelled_since": ref["interval_end"],  # new training data starts after the reference's interval
        }
        # The cooldown record: the next decisions count from here (this run's own record is ignored on retry).
        key = request_log_key(check["dataset"], ref["model_name"], datetime.now(UTC), run_key(ti.run_id))
        FactoryS3Hook().load_string(json.dumps(extra, indent=2), key, bucket_name=DATA_BUCKET, replace=True)
        outlet_events[RETRAINING_ASSET].extra = extra
        return extra

    reference = resolve_reference()
    check = check_drift(reference)
    system = check_system(reference)
    decision = decide_retraining(check)
    send_alerts(check, decision, system)
    request_retraining(decision, check)


factory_drift()
