"""The MLflow adapter against the real tracking server: retry-safe logging, no half-logged runs, clear errors.

A task can die anywhere (worker lost, server gone mid-upload). What must hold: a run counts only once complete,
an attempt that failed half-way leaves no visible run, a retry registers exactly one version, and a server
that is down is named in the error within seconds instead of after minutes of client retries.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from factory_providers.mlflow.hooks import MlflowHook, MlflowUnavailableError
from factory_providers.mlflow.records import RecordNotFoundError, fetch_recorded_training, resolve_version
from factory_providers.mlflow.registry import ATTEMPT_KEY_TAG, log_training_run

from factory.processes import free_ports
from factory.stack import Stack
from pipelines.lineage import (
    CodeLineage,
    DataLineage,
    EnvironmentLineage,
    FeatureLineage,
    Governance,
    RunRecord,
)
from pipelines.training.config import default_training_config

pytestmark = pytest.mark.services
EXPERIMENT = "factory/records-test"


def identity_onnx() -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def record() -> RunRecord:
    return RunRecord(
        code=CodeLineage(commit="0" * 40, branch="main", dirty=False),
        data=DataLineage(dataset="records-test", spec_version="1", snapshot_id="f" * 64),
        features=FeatureLineage(version="1", numeric=["x"], categorical=[]),
        config=default_training_config("logreg"),
        environment=EnvironmentLineage(
            python="3.11", platform="test", packages={}, cpu_count=2, cuda_available=False, image_digest=None
        ),
        metrics={"test.roc_auc": 0.5},
        artifacts={},
        governance=Governance(owner="tests"),
    )


def log(model_name: str, attempt_key: str, artifacts: dict[str, Path]):
    return log_training_run(
        MlflowHook(),
        experiment=EXPERIMENT,
        run_name=attempt_key,
        attempt_key=attempt_key,
        record=record(),
        params={"config.kind": "logreg"},
        metrics={"test.roc_auc": 0.5},
        artifacts=artifacts,
        onnx_model=identity_onnx(),
        model_name=model_name,
        alias="candidate",
    )


@pytest.fixture
def client(stack_connections: Stack):
    import mlflow

    return mlflow.MlflowClient(stack_connections.settings.mlflow_url)


def runs_of(client, attempt_key: str):
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.`{ATTEMPT_KEY_TAG}` = '{attempt_key}'")


def test_a_failure_mid_logging_leaves_no_run_and_the_retry_registers_exactly_one_version(client, tmp_path):
    notes = tmp_path / "notes.json"
    notes.write_text(json.dumps({"ok": True}))
    with pytest.raises(OSError):  # the second artifact does not exist: logging dies after params and metrics
        log("records-retry", "attempt-1", {"notes": notes, "gone": tmp_path / "no-such-file"})
    assert runs_of(client, "attempt-1") == []  # deleted: not visible in the experiment
    assert client.search_model_versions("name = 'records-retry'") == []

    first = log("records-retry", "attempt-1", {"notes": notes})
    again = log("records-retry", "attempt-1", {"notes": notes})  # e.g. the task died after registering
    assert again == first
    assert [run.info.run_id for run in runs_of(client, "attempt-1")] == [first.run_id]
    assert [v.version for v in client.search_model_versions("name = 'records-retry'")] == [first.version]
    assert client.get_model_version_by_alias("records-retry", "candidate").version == first.version


def test_a_half_logged_run_of_an_earlier_attempt_is_deleted_by_the_retry(client, tmp_path):
    existing = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = existing.experiment_id if existing else client.create_experiment(EXPERIMENT)
    debris = client.create_run(experiment_id, tags={ATTEMPT_KEY_TAG: "attempt-2"})  # as if the worker was killed
    logged = log("records-debris", "attempt-2", {})
    assert [run.info.run_id for run in runs_of(client, "attempt-2")] == [logged.run_id]
    assert client.get_run(debris.info.run_id).info.lifecycle_stage == "deleted"


def test_mlflow_down_is_named_within_seconds(stack_connections, monkeypatch, tmp_path):
    (port,) = free_ports(1)
    monkeypatch.setenv(
        "AIRFLOW_CONN_FACTORY_MLFLOW", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": port})
    )
    started = time.monotonic()
    with pytest.raises(MlflowUnavailableError, match=rf"MLflow tracking server http://127.0.0.1:{port} .* unreachable"):
        log("records-down", "attempt-3", {})
    assert time.monotonic() - started < 15


def test_missing_versions_aliases_and_records_are_named(client, tmp_path):
    logged = log("records-lookup", "attempt-4", {})
    hook = MlflowHook()
    assert resolve_version(hook, "records-lookup", "@candidate").run_id == logged.run_id
    assert resolve_version(hook, "records-lookup", logged.version).run_id == logged.run_id
    with pytest.raises(RecordNotFoundError, match="registered model 'records-lookup' has no alias 'champion'"):
        resolve_version(hook, "records-lookup", "@champion")
    with pytest.raises(RecordNotFoundError, match="has no version '99'"):
        resolve_version(hook, "records-lookup", "99")
    with pytest.raises(RecordNotFoundError, match=r"lacks \['training/training.json', 'spec'\]"):
        fetch_recorded_training(hook, logged.run_id)
