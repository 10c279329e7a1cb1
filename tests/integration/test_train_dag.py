"""factory_train end to end on the live stack: seeded source DB -> S3 snapshot -> MLflow run -> `candidate` version.

One child process (Airflow binds its metadata DB at import: the child must use the live stack's) runs four
dag.test() runs back to back, sharing its warm imports: the full DAG on two weeks of January, the same interval
again with everything after extraction marked success (the snapshot must be reused, not rewritten), an empty
interval (extraction must fail, and the failure must show up in MLflow), and `factory_reproduce` of the first
run's version (identical metrics from the record alone). The tests then check the real services.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from factory.airflow_api import AirflowClient
from factory.settings import PROJECT_ROOT
from factory.source_data import seed_source_database
from factory.stack import Stack, s3_client
from pipelines.assembly import DATA_BUCKET, resolve_request, snapshot_keys
from pipelines.lineage import RunRecord
from tests.integration.conftest import stack_subprocess_env

pytestmark = pytest.mark.services

DAG_ID = "factory_train"
REPRODUCE_DAG_ID = "factory_reproduce"
# The override also proves the trigger form's hyperparameters reach the model and its record.
TWO_WEEKS = {
    "interval_start": "2013-01-01T00:00:00Z",
    "interval_end": "2013-01-15T00:00:00Z",
    "owner": "tests",
    "overrides": {"max_iter": 150},
}
EMPTY_INTERVAL = {"interval_start": "2015-01-01T00:00:00Z", "interval_end": "2015-01-15T00:00:00Z"}
AFTER_EXTRACTION = "(?!extract_snapshot$).*"  # every task but the extraction (dag.test() fullmatches task ids)

CHILD = f"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(PROJECT_ROOT / "dags")!r})
assert not bag.import_errors, bag.import_errors
for name, dag_id, conf, skip in json.loads(sys.argv[1]):
    run = bag.get_dag(dag_id).test(run_conf=conf, mark_success_pattern=skip)
    print("DAGRUN " + json.dumps({{"name": name, "state": str(run.state), "run_id": run.run_id}}), flush=True)
"""


@pytest.fixture(scope="module")
def seeded_stack(live_stack: Stack) -> Stack:
    seed_source_database(live_stack.settings)
    return live_stack


@pytest.fixture(scope="module")
def train_runs(seeded_stack: Stack) -> dict[str, dict[str, Any]]:
    """name -> {state, run_id}: train (first, rerun, empty interval), then reproduce the first run's version."""
    plan = [
        ("first", DAG_ID, TWO_WEEKS, None),
        ("rerun", DAG_ID, TWO_WEEKS, AFTER_EXTRACTION),
        ("empty", DAG_ID, EMPTY_INTERVAL, None),
        ("reproduce", REPRODUCE_DAG_ID, {"model_name": "flights-hgb", "version": "@candidate"}, None),
    ]
    result = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(plan)], env=stack_subprocess_env(seeded_stack), capture_output=True,
        text=True, timeout=900, check=False,
    )  # fmt: skip
    runs = {
        (run := json.loads(line.removeprefix("DAGRUN ")))["name"]: run
        for line in result.stdout.splitlines()
        if line.startswith("DAGRUN ")
    }
    assert set(runs) == {name for name, *_ in plan}, result.stdout[-3000:] + result.stderr[-3000:]
    for run in runs.values():  # task errors of the child, for the assertion message of a run that failed
        run["errors"] = [
            line for line in (result.stdout + result.stderr).splitlines() if "ERROR" in line or "Error" in line
        ][-30:]
    return runs


@pytest.fixture(scope="module")
def airflow(live_stack: Stack):
    creds = live_stack.credentials
    client = AirflowClient(live_stack.settings.airflow_url, creds.airflow_admin_user, creds.airflow_admin_password)
    yield client
    client.close()


@pytest.fixture(scope="module")
def mlflow_client(live_stack: Stack):
    import mlflow

    return mlflow.MlflowClient(live_stack.settings.mlflow_url)


def _training_run(mlflow_client, airflow_run_id: str):
    experiment = mlflow_client.get_experiment_by_name("factory/flights")
    runs = mlflow_client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`airflow.run_id` = '{airflow_run_id}'"
    )
    assert len(runs) == 1, f"expected one MLflow run for {airflow_run_id}, found {len(runs)}"
    return runs[0]


def test_first_run_writes_a_snapshot_whose_hash_matches_its_manifest(train_runs, airflow, live_stack):
    assert train_runs["first"]["state"] == "success", train_runs["first"]["errors"]
    snapshot = airflow.xcom(DAG_ID, train_runs["first"]["run_id"], "extract_snapshot")
    # written may be False: test_file_source extracts the same interval (same rows, same id) earlier in a session
    keys = snapshot_keys("flights", snapshot["snapshot_id"])
    s3 = s3_client(live_stack.settings, live_stack.credentials)
    data = s3.get_object(Bucket=DATA_BUCKET, Key=keys.data)["Body"].read()
    manifest = json.loads(s3.get_object(Bucket=DATA_BUCKET, Key=keys.manifest)["Body"].read())
    assert hashlib.sha256(data).hexdigest() == manifest["snapshot_id"] == snapshot["snapshot_id"]
    assert manifest["rows"] == snapshot["rows"] > 10_000  # about 12k departures in two weeks of January
    assert (manifest["interval_start"], manifest["interval_end"]) == ("2013-01-01T00:00:00Z", "2013-01-15T00:00:00Z")
    listed = s3.list_objects_v2(Bucket=DATA_BUCKET, Prefix=f"{keys.prefix}/validation/")["Contents"]
    assert {item["Key"].rsplit("/", 1)[1] for item in listed} == {"report.json", "data_docs.html"}


def test_mlflow_run_holds_record_params_metrics_and_artifacts(train_runs, airflow, mlflow_client, tmp_path):
    snapshot = airflow.xcom(DAG_ID, train_runs["first"]["run_id"], "extract_snapshot")
    run = _training_run(mlflow_client, train_runs["first"]["run_id"])
    spec = resolve_request(TWO_WEEKS).spec
    assert run.info.status == "FINISHED"
    assert run.data.tags["data.snapshot_id"] == snapshot["snapshot_id"]
    assert run.data.tags["governance.owner"] == "tests"
    params = run.data.params
    assert params["config.kind"] == "hgb"
    assert params["config.params.max_iter"] == "150"  # the Params override, not the checked-in 300
    assert params["features.version"] == spec.features.version
    assert params["interval.start"] == "2013-01-01T00:00:00Z"
    assert params["source"] == "table"
    assert int(params["split.rows.train"]) > int(params["split.rows.test"]) > 0
    metrics = run.data.metrics
    assert 0.5 < metrics["test.roc_auc"] <= 1.0
    assert metrics["parity.max_abs_diff"] <= 1e-5
    assert any(name.startswith("test.slice.carrier.") for name in metrics)
    assert any(name.startswith("test.slice.origin.") for name in metrics)

    def files(path: str = "") -> set[str]:
        found: set[str] = set()
        for item in mlflow_client.list_artifacts(run.info.run_id, path):
            found |= files(item.path) if item.is_dir else {item.path}
        return found

    assert {
        "run_record.json", "native/model.joblib", "snapshot/manifest.json", "training/training.json",
        "validation/report.json", "validation/data_docs.html", "evaluation/evaluation.json", "evaluation/parity.json",
        "evaluation/plots/roc.png", "evaluation/plots/calibration.png",
    } <= files()  # fmt: skip
    record_path = mlflow_client.download_artifacts(run.info.run_id, "run_record.json", str(tmp_path))
    record = RunRecord.model_validate_json(Path(record_path).read_text())
    assert record.data.snapshot_id == snapshot["snapshot_id"]
    assert record.artifacts["snapshot"] == snapshot["data_uri"]
    assert record.metrics["test.roc_auc"] == pytest.approx(metrics["test.roc_auc"])


def test_model_version_has_alias_candidate_and_lineage_tags(train_runs, mlflow_client, airflow, live_stack, tmp_path):
    import mlflow

    from pipelines.export.signature import read_onnx_signature, signature_for

    registered = airflow.xcom(DAG_ID, train_runs["first"]["run_id"], "register_model")
    version = mlflow_client.get_model_version_by_alias("flights-hgb", "candidate")
    run = _training_run(mlflow_client, train_runs["first"]["run_id"])
    assert version.version == registered["version"]
    assert version.run_id == run.info.run_id
    assert {key: version.tags[key] for key in ("run_id", "snapshot_id", "feature_spec_version")} == {
        "run_id": run.info.run_id,
        "snapshot_id": run.data.tags["data.snapshot_id"],
        "feature_spec_version": resolve_request(TWO_WEEKS).spec.features.version,
    }
    # Through the registry's own answer (a models:/ URI would be resolved against the default registry).
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=mlflow_client.get_model_version_download_uri("flights-hgb", version.version),
        dst_path=str(tmp_path),
        tracking_uri=live_stack.settings.mlflow_url,
    )
    onnx_model = (Path(local) / "model.onnx").read_bytes()
    assert read_onnx_signature(onnx_model) == signature_for(resolve_request(TWO_WEEKS).spec.features)


def test_rerunning_the_interval_reuses_the_snapshot_and_writes_nothing(train_runs, airflow, live_stack):
    assert train_runs["rerun"]["state"] == "success"
    first = airflow.xcom(DAG_ID, train_runs["first"]["run_id"], "extract_snapshot")
    again = airflow.xcom(DAG_ID, train_runs["rerun"]["run_id"], "extract_snapshot")
    assert again["snapshot_id"] == first["snapshot_id"]
    assert again["written"] is False
    extraction = next(
        t for t in airflow.task_timings(DAG_ID, train_runs["rerun"]["run_id"]) if t.task_id == "extract_snapshot"
    )
    s3 = s3_client(live_stack.settings, live_stack.credentials)
    keys = snapshot_keys("flights", first["snapshot_id"])
    for key in (keys.data, keys.manifest):
        assert s3.head_object(Bucket=DATA_BUCKET, Key=key)["LastModified"] < extraction.start, f"{key} was rewritten"


def test_empty_interval_fails_extraction_with_a_clear_message_recorded_in_mlflow(train_runs, airflow, mlflow_client):
    assert train_runs["empty"]["state"] == "failed"
    states = {t.task_id: t.state for t in airflow.task_timings(DAG_ID, train_runs["empty"]["run_id"])}
    assert states["extract_snapshot"] == "failed"
    assert states["register_model"] == "upstream_failed"
    run = _training_run(mlflow_client, train_runs["empty"]["run_id"])
    assert run.info.status == "FAILED"
    assert run.data.tags["failed_stage"] == "extract_snapshot"
    assert "no rows in source table 'flights' with time_hour in [2015-01-01" in run.data.tags["failure_reason"]


def test_source_hook_names_a_missing_table_and_missing_columns(seeded_stack, stack_connections):
    from factory_providers.source.hooks import FactorySourceHook, SourceExtractionError

    request = resolve_request(TWO_WEEKS)
    spec, interval = request.spec, request.interval
    no_table = spec.model_copy(update={"source": spec.source.model_copy(update={"table": "no_such_table"})})
    with pytest.raises(SourceExtractionError, match="source table 'no_such_table' does not exist"):
        FactorySourceHook().extract_interval(no_table, interval.start, interval.end)
    columns = dict(spec.expectations.columns) | {"gate": spec.expectations.columns["dest"]}
    extra_column = spec.model_copy(update={"expectations": spec.expectations.model_copy(update={"columns": columns})})
    with pytest.raises(SourceExtractionError, match=r"lacks columns \['gate'\]"):
        FactorySourceHook().extract_interval(extra_column, interval.start, interval.end)


def test_reproducing_the_version_from_its_record_gives_identical_metrics(train_runs, airflow, mlflow_client, tmp_path):
    assert train_runs["reproduce"]["state"] == "success", train_runs["reproduce"]["errors"]
    recorded = airflow.xcom(REPRODUCE_DAG_ID, train_runs["reproduce"]["run_id"], "fetch_record")
    original = _training_run(mlflow_client, train_runs["first"]["run_id"])
    assert recorded["run_id"] == original.info.run_id
    outcome = airflow.xcom(REPRODUCE_DAG_ID, train_runs["reproduce"]["run_id"], "compare_and_record")
    report_path = mlflow_client.download_artifacts(outcome["mlflow_run_id"], "reproduction.json", str(tmp_path))
    report = json.loads(Path(report_path).read_text())
    assert report["identical"] is True
    compared = {metric["name"]: metric for metric in report["metrics"]}
    # Bit-identical quality metrics, read back from MLflow on both sides; timings are not compared.
    assert compared["test.roc_auc"]["original"] == original.data.metrics["test.roc_auc"]
    assert compared["test.roc_auc"]["reproduced"] == original.data.metrics["test.roc_auc"]
    assert any(name.startswith("test.slice.carrier.") for name in compared)
    assert not any(name.startswith("latency.") for name in compared)
    layers = {layer["layer"]: layer for layer in report["layers"]}
    assert layers["data"]["same"] and layers["features"]["same"] and layers["config"]["same"]
    version = mlflow_client.get_model_version("flights-hgb", recorded["version"])
    assert version.tags["reproduction.last"] == "identical"
