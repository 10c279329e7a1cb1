"""Traffic replay through the real gateway + Triton, then factory_feedback (dag.test) on the delayed labels.

Set-up on the live stack: an HGB trained on Q1 2013 flights (the spec's features) is logged to MLflow with its
test metrics under the names factory_train uses, registered, published into Triton's S3 repository, loaded,
and routed by the stack's gateway (Redis route table). A day of July 2013 is replayed through the gateway with
`factory.replay` (bearer token, stable request ids) and its labels land in the feedback store; the replay is
then repeated (a retry: same ids, the label object is not written twice). factory_feedback joins the labels to
the gateway's sampled predictions and names data, concept and model drift: Q1 -> July is real seasonal drift.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import tritonclient.http as triton_http
from threadpoolctl import threadpool_limits

from factory.replay import replay
from factory.settings import PROJECT_ROOT
from factory.stack import Stack, s3_client
from pipelines.datasets.demo import load_demo_flights
from pipelines.datasets.spec import load_dataset_spec
from pipelines.evaluation.metrics import compute_metrics, metrics_by_slice
from pipelines.export.signature import signature_for
from pipelines.monitoring.feedback import feedback_prefix
from pipelines.monitoring.replay import plan_replay
from pipelines.training.config import default_training_config, merge_overrides
from pipelines.training.sklearn_models import HGBTrainer
from serving.gateway import Routes, RouteStore
from serving.model_repository import RepositoryConfig, build_model_repository
from tests.integration.conftest import stack_subprocess_env

pytestmark = pytest.mark.services

MODEL = "flights_feedback"
SPEC = load_dataset_spec(PROJECT_ROOT / "pipelines/configs/datasets/flights.yaml")
REPLAY = (datetime(2013, 7, 1, tzinfo=UTC), datetime(2013, 7, 2, tzinfo=UTC))

CHILD = f"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(PROJECT_ROOT / "dags")!r})
assert not bag.import_errors, bag.import_errors
run = bag.get_dag("factory_feedback").test(run_conf=json.loads(sys.argv[1]))
print("RUN " + json.dumps({{"state": str(run.state), "run_id": run.run_id}}), flush=True)
"""


def train_and_register(stack: Stack) -> tuple[str, bytes]:
    """A Q1 model registered with its test metrics under the names factory_train logs them
    (`pipelines.assembly.evaluation_metrics`: test.<metric>, test.slice.<column>.<value>.<metric>); (version, onnx)."""
    import mlflow
    from mlflow import MlflowClient

    flights = load_demo_flights()
    q1 = flights[(flights["month"] <= 3) & flights["arr_delay"].notna()].sort_values("time_hour")
    q1 = q1.iloc[:: max(1, len(q1) // 24_000)].reset_index(drop=True)  # ~24k rows, time order kept
    y = (q1["arr_delay"] > 15).astype(int).to_numpy()
    cut_val, cut_test = int(len(q1) * 0.7), int(len(q1) * 0.85)
    X = q1[SPEC.features.columns]
    config = merge_overrides(default_training_config("hgb"), {"max_iter": 60, "early_stopping": False})
    with threadpool_limits(limits=1):
        model = HGBTrainer(config, SPEC.features).fit(
            X[:cut_val], y[:cut_val], X[cut_val:cut_test], y[cut_val:cut_test]
        )
        p = model.predict_proba(X[cut_test:])
    y_test = y[cut_test:]
    metrics = {f"test.{k}": float(v) for k, v in compute_metrics(y_test, p).model_dump().items()
               if isinstance(v, int | float) and not isinstance(v, bool)}  # fmt: skip
    for column in SPEC.slices:
        for item in metrics_by_slice(y_test, p, q1[column].to_numpy()[cut_test:], 300):
            metrics |= {f"test.slice.{column}.{item.value}.{k}": float(v) for k, v in item.metrics.model_dump().items()
                        if isinstance(v, int | float) and not isinstance(v, bool)}  # fmt: skip
    mlflow.set_tracking_uri(stack.settings.mlflow_url)
    client = MlflowClient(stack.settings.mlflow_url)
    experiment = mlflow.set_experiment("factory/feedback-tests").experiment_id
    run = client.create_run(experiment)
    for name, value in metrics.items():
        client.log_metric(run.info.run_id, name, value)
    client.set_terminated(run.info.run_id)
    client.create_registered_model(MODEL)
    version = client.create_model_version(MODEL, f"runs:/{run.info.run_id}/model", run.info.run_id).version
    return str(version), model.to_onnx()


def serve(stack: Stack, version: str, onnx_model: bytes) -> None:
    """Publish into Triton's S3 repository, load, and route the gateway to the version."""
    settings = stack.settings
    files = build_model_repository(
        onnx_model, signature_for(SPEC.features), MODEL, int(version), config=RepositoryConfig(max_batch_size=64)
    )
    s3 = s3_client(settings, stack.credentials)
    for relative in sorted(files, key=lambda path: path.endswith("config.pbtxt")):
        s3.put_object(Bucket=settings.triton_bucket, Key=f"{settings.triton_prefix}/{relative}", Body=files[relative])
    triton = triton_http.InferenceServerClient(settings.triton_http_url.removeprefix("http://"), network_timeout=120)
    try:
        triton.load_model(MODEL)
    finally:
        triton.close()
    store = RouteStore(settings.redis_url, settings.gateway_redis_prefix)
    try:
        current = store.get_routes(MODEL)
        table = store.set_routes(MODEL, Routes.single(int(version)), current.state_version if current else 0)
        store.wait_until_applied(MODEL, table.state_version, timeout=15)
    finally:
        store.close()


def logged_ids(stack: Stack, expected: int, timeout: float = 40.0) -> pd.DataFrame:
    """The gateway's sampled prediction rows of MODEL, once at least `expected` rows are flushed."""
    s3, bucket = s3_client(stack.settings, stack.credentials), stack.settings.data_bucket
    deadline = time.monotonic() + timeout
    while True:
        listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"gateway-samples/{MODEL}/predictions/")
        frames = [
            pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())).to_pandas()
            for item in listing.get("Contents", [])
        ]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"request_id": []})
        if len(frame) >= expected or time.monotonic() > deadline:
            return frame
        time.sleep(0.5)


@pytest.fixture(scope="module")
def scenario(live_stack: Stack) -> dict[str, Any]:
    started = time.monotonic()
    version, onnx_model = train_and_register(live_stack)
    serve(live_stack, version, onnx_model)
    prepared = time.monotonic()
    settings, creds = live_stack.settings, live_stack.credentials
    plan = plan_replay(load_demo_flights(), SPEC, *REPLAY)
    s3 = s3_client(settings, creds)
    kwargs = {"gateway_url": settings.gateway_url, "token": creds.gateway_token, "model": MODEL, "plan": plan,
              "s3": s3, "bucket": settings.data_bucket, "with_labels": True}  # fmt: skip
    first = replay(**kwargs)
    retry = replay(**kwargs)  # the same window again: same request ids, the labels already landed
    replayed = time.monotonic()
    log = logged_ids(live_stack, 2 * first.answered)
    now = datetime.now(UTC)
    window = (now - timedelta(hours=1), now + timedelta(hours=1))
    conf = {"model_name": MODEL, "window_start": window[0].isoformat(), "window_end": window[1].isoformat()}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(conf)], env=stack_subprocess_env(live_stack)
        | {"PYTHONPATH": f"{PROJECT_ROOT}:{PROJECT_ROOT / 'plugins'}"}, cwd=PROJECT_ROOT, capture_output=True,
        text=True, timeout=300, check=False,
    )  # fmt: skip
    runs = [json.loads(line[4:]) for line in result.stdout.splitlines() if line.startswith("RUN ")]
    assert runs, result.stdout[-3000:] + result.stderr[-3000:]
    finished = time.monotonic()
    print(
        f"feedback scenario: train+register+serve {prepared - started:.1f} s, replay 2 x {len(plan.requests)} "
        f"requests {replayed - prepared:.1f} s ({first.seconds:.1f} s + {retry.seconds:.1f} s sending), "
        f"factory_feedback dag.test {finished - replayed:.1f} s"
    )
    key = feedback_prefix("flights", MODEL, *window) + "feedback_report.json"
    report = json.loads(s3.get_object(Bucket=settings.data_bucket, Key=key)["Body"].read())
    return {"plan": plan, "first": first, "retry": retry, "log": log, "run": runs[0], "report": report,
            "version": version, "stdout": result.stdout[-3000:]}  # fmt: skip


def test_replay_goes_through_the_gateway_with_stable_ids_and_lands_labels_once(scenario) -> None:
    plan, first, retry, log = scenario["plan"], scenario["first"], scenario["retry"], scenario["log"]
    assert first.requested == len(plan.requests) > 500
    assert first.answered == first.requested and not first.failures, first.as_dict()
    assert dict(first.versions) == {scenario["version"]: first.answered}
    assert first.labels_written and not retry.labels_written and retry.labels_key == first.labels_key
    ids = {request.request_id for request in plan.requests}
    counts = log["request_id"].value_counts()
    assert set(counts.index) == ids and set(counts) == {2}  # every id logged by both sends, nothing else


def test_feedback_dag_joins_labels_by_request_id_and_names_the_drift(scenario) -> None:
    assert scenario["run"]["state"] == "success", scenario["stdout"]
    report, plan = scenario["report"], scenario["plan"]
    join = report["join"]
    assert join["labels"] == len(plan.labels)  # the retry landed no second label object
    assert join["joined"] == len(plan.labels) and join["unmatched_labels"] == 0
    assert join["repeated_predictions"] == len(plan.requests)  # the retried sends count once
    (version,) = report["versions"]
    assert version["version"] == scenario["version"] and version["status"] == "judged"
    assert {s["column"] for s in version["slices"]} == {"carrier", "origin"}
    assert version["online"]["positive_rate"] == pytest.approx(plan.labels["label"].mean())
    signals = report["signals"]
    assert set(signals) == {"data", "concept", "model"}
    assert signals["data"]["status"] == "not_evaluated"  # factory_drift did not run for this period
    print({family: (signal["status"], signal["summary"]) for family, signal in signals.items()})
    # Q1 -> July: the summer delay rate is far above what a winter model predicts (real seasonal drift).
    assert signals["concept"]["status"] == "alert", signals["concept"]
    assert report["business"]["name"] == "delayed_share"
    assert report["business"]["value"] == pytest.approx(float(np.mean(plan.labels["label"])))


def test_system_signals_from_the_live_gateway_and_triton(scenario, stack_connections) -> None:
    from factory_providers.monitoring.system import scrape_with_previous

    from pipelines.monitoring.alerts import load_alert_policy
    from pipelines.monitoring.system_signals import evaluate_system

    policy = load_alert_policy().system
    pairs, notes = scrape_with_previous(MODEL)
    assert set(pairs) == {"gateway", "triton"} and notes == []
    signal = evaluate_system(pairs["gateway"], pairs["triton"], policy, model=MODEL)
    by_name = {metric.name: metric for metric in signal.metrics}
    print("system signal since start:", signal.summary)
    assert signal.requests == 2 * len(scenario["plan"].requests)  # both replays, nothing else of this model
    assert by_name["gateway_error_rate"].value == 0.0
    assert 0 < by_name["gateway_p99_ms"].value < 1000
    assert by_name["triton_queue_ms"].value is not None and by_name["triton_failure_rate"].value == 0.0
    assert signal.interval_seconds is None  # the first scrape: totals since the gateway started
    # The next run judges only the interval since this scrape: no traffic in between.
    pairs, _ = scrape_with_previous(MODEL)
    again = evaluate_system(pairs["gateway"], pairs["triton"], policy, model=MODEL)
    assert again.requests == 0 and again.status == "insufficient_data" and again.interval_seconds > 0
