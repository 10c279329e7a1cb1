"""Feedback ingestion, daily: labels that landed in the window are joined to the predictions the gateway logged
(by request id), each served version is scored online and compared with its own training-time metrics, and
data, concept and model drift are named separately (`pipelines.monitoring.feedback`).

`join_and_assess` reads the labels landed in the data interval
(`s3://factory-data/feedback/<model>/labels/date=.../*.parquet`, written by `factory replay --labels` or a
labelling pipeline), the logged predictions of the `prediction_lookback_hours` before it, the served versions'
training runs (MLflow) and factory_drift's verdicts for the serving period, and stores
`monitoring/<dataset>/<model>/feedback/<window>/feedback_report.json`. `send_alerts` raises model and concept
drift through the rubric (`alerts.yaml`, deduplicated). Too few labels is "insufficient data", not an error.
The labels also feed the retraining guardrail `new_labelled_data` when factory_drift runs with
`labelled_rows_from=feedback`. Runbook: docs/runbook.md (model-drift, concept-drift).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task
from factory_providers.notifier import EmailNotifier, WebhookNotifier

DEFAULT_DATASET_SPEC = "pipelines/configs/datasets/flights.yaml"  # = pipelines.assembly.DEFAULT_DATASET_SPEC
DATA_BUCKET = "factory-data"  # = pipelines.assembly.DATA_BUCKET

DEFAULT_ARGS = {
    "owner": "ml-platform",
    "retries": 1,
    "retry_delay": timedelta(seconds=30),
    "on_failure_callback": [WebhookNotifier(), EmailNotifier()],
}


@dag(
    dag_id="factory_feedback",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["factory", "monitoring"],
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    params={
        "dataset_spec": Param(DEFAULT_DATASET_SPEC, type="string", minLength=1, description="Dataset spec YAML"),
        "model_name": Param("flights-hgb", type="string", minLength=1, description="Registered model"),
        "serving_model": Param(
            None, type=["null", "string"], description="Model name on the gateway; empty: the registered name"
        ),
        "log_prefix": Param("gateway-samples", type="string", minLength=1, description="Key prefix of the log"),
        "window_start": Param(
            None, type=["null", "string"], description="Labels landed from (ISO 8601); empty: the data interval"
        ),
        "window_end": Param(None, type=["null", "string"], description="Labels landed before (exclusive)"),
        "feedback_policy": Param("pipelines/configs/policies/feedback.yaml", type="string", minLength=1),
        "alert_policy": Param("pipelines/configs/policies/alerts.yaml", type="string", minLength=1),
    },
)
def factory_feedback():
    @task
    def join_and_assess(
        params: dict[str, Any] | None = None, data_interval_start=None, data_interval_end=None
    ) -> dict[str, Any]:
        import logging
        from datetime import UTC, datetime

        from factory_providers.mlflow.hooks import MlflowHook
        from factory_providers.monitoring.feedback import (
            drift_windows,
            read_labels,
            read_predictions,
            training_metrics,
        )
        from factory_providers.s3.hooks import FactoryS3Hook

        from pipelines.assembly import REPOSITORY_ROOT, s3_uri
        from pipelines.datasets.spec import load_dataset_spec
        from pipelines.monitoring.feedback import (
            build_report,
            business_on_labels,
            feedback_prefix,
            join_labels,
            load_feedback_policy,
        )
        from pipelines.monitoring.monitor import resolve_window

        log = logging.getLogger(__name__)
        params = params or {}
        spec = load_dataset_spec(REPOSITORY_ROOT / params["dataset_spec"])  # an absolute Param stays absolute
        policy = load_feedback_policy(params["feedback_policy"])  # relative to the repository unless absolute
        start, end = resolve_window(
            params.get("window_start"), params.get("window_end"), data_interval_start, data_interval_end,
            datetime.now(UTC),
        )  # fmt: skip
        model, served_as = params["model_name"], params.get("serving_model") or params["model_name"]
        s3 = FactoryS3Hook()
        labels = read_labels(served_as, start=start, end=end, hook=s3)
        lookback = start - timedelta(hours=policy.prediction_lookback_hours)
        predictions = read_predictions(
            served_as, start=lookback, end=end, bucket=DATA_BUCKET, prefix=params["log_prefix"], hook=s3
        )
        join = join_labels(predictions, labels)
        versions = sorted(join.joined["version"].astype(str).unique()) if len(join.joined) else []
        with MlflowHook().tracking() as client:
            metrics, notes = training_metrics(client, model, versions)
        served_at = join.joined["timestamp"] if len(join.joined) else None
        windows = (
            drift_windows(spec.name, model, served_at.min().to_pydatetime(), served_at.max().to_pydatetime()
                          + timedelta(seconds=1), hook=s3)
            if served_at is not None else []
        )  # fmt: skip
        report = build_report(
            dataset=spec.name, model_name=model, window=(start, end), join=join, run_metrics=metrics,
            slices=spec.slices, drift_windows=windows, policy=policy,
            business=business_on_labels(spec.business_metric, join.joined, spec.target.name), notes=notes,
        )  # fmt: skip
        key = feedback_prefix(spec.name, model, start, end) + "feedback_report.json"
        report = report.model_copy(update={"uris": {"feedback_report": s3_uri(DATA_BUCKET, key)}})
        s3.load_string(report.model_dump_json(indent=2), key, bucket_name=DATA_BUCKET, replace=True)
        counts = report.join
        log.info(
            "labels %d, logged rows %d, joined %d (unmatched %d, repeated labels %d, conflicting %d, repeated "
            "predictions %d)", counts.labels, counts.predictions, counts.joined, counts.unmatched_labels,
            counts.repeated_labels, counts.conflicting_labels, counts.repeated_predictions,
        )  # fmt: skip
        for family, signal in report.signals.items():
            log.info("%s drift: %s - %s", family, signal.status, signal.summary)
        return report.model_dump(mode="json")

    @task
    def send_alerts(report: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
        import logging
        from datetime import UTC, datetime

        from factory_providers.notifier.channels import AlertDeliveryError
        from factory_providers.notifier.ledger import S3AlertLedger
        from factory_providers.notifier.notifiers import deliver_alerts
        from factory_providers.s3.hooks import FactoryS3Hook

        from pipelines.monitoring.alerts import load_alert_policy
        from pipelines.monitoring.feedback import FeedbackReport, feedback_alerts, feedback_prefix

        params = params or {}
        record = FeedbackReport.model_validate(report)
        uri = record.uris["feedback_report"]
        alerts = feedback_alerts(
            record, load_alert_policy(params["alert_policy"]), report_uri=uri, raised_at=datetime.now(UTC)
        )
        deliveries = deliver_alerts(alerts, ledger=S3AlertLedger.connect())
        body = {
            "alerts": [alert.model_dump(mode="json") for alert in alerts],
            "deliveries": [delivery.as_dict() for delivery in deliveries],
        }
        prefix = feedback_prefix(record.dataset, record.model_name, record.label_window_start, record.label_window_end)
        FactoryS3Hook().load_string(
            json.dumps(body, indent=2), prefix + "alerts.json", bucket_name=DATA_BUCKET, replace=True
        )
        log = logging.getLogger(__name__)
        for alert in alerts:
            log.info("alert %s [%s]: %s", alert.alert_type.value, alert.severity.value, alert.title)
        failed = [d for d in deliveries if d.status == "failed"]
        if failed:  # claims were released: the retry delivers them (and nothing twice)
            raise AlertDeliveryError("; ".join(f"{d.alert_key} on {d.channel}: {d.detail}" for d in failed))
        return {"alerts": len(alerts), "deliveries": body["deliveries"]}

    send_alerts(join_and_assess())


factory_feedback()
