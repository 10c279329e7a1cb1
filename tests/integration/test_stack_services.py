"""The stack's services are real and reachable: S3 with keys, MLflow with artifacts in S3, Triton from S3."""

from __future__ import annotations

import dataclasses
import socket
import sys

import boto3
import numpy as np
import psutil
import pytest
from botocore.exceptions import ClientError

from factory.processes import PortInUseError, port_is_free
from factory.services import Service
from factory.settings import isolated_settings
from factory.stack import Stack, StackError, s3_client

pytestmark = pytest.mark.services


def test_buckets_exist_and_s3_roundtrips(live_stack):
    client = s3_client(live_stack.settings, live_stack.credentials)
    names = {bucket["Name"] for bucket in client.list_buckets()["Buckets"]}
    assert {"factory-data", "mlflow", "triton-models"} <= names
    client.put_object(Bucket="factory-data", Key="tests/hello.txt", Body=b"hello")
    assert client.get_object(Bucket="factory-data", Key="tests/hello.txt")["Body"].read() == b"hello"


def test_s3_refuses_wrong_keys(live_stack):
    stranger = boto3.client(
        "s3", endpoint_url=live_stack.settings.s3_endpoint, aws_access_key_id="nobody",
        aws_secret_access_key="wrong", region_name="us-east-1",
    )  # fmt: skip
    with pytest.raises(ClientError) as error:
        stranger.get_object(Bucket="factory-data", Key="tests/hello.txt")
    assert error.value.response["Error"]["Code"] in {
        "InvalidAccessKeyId",
        "AccessDenied",
        "SignatureDoesNotMatch",
    }


def test_mlflow_logs_runs_with_artifacts_proxied_to_s3(live_stack, tmp_path):
    import mlflow

    mlflow.set_tracking_uri(live_stack.settings.mlflow_url)
    mlflow.set_experiment("integration")
    with mlflow.start_run() as run:
        mlflow.log_metric("auc", 0.75)
        mlflow.log_text("evidence", "notes/evidence.txt")
    client = mlflow.MlflowClient(live_stack.settings.mlflow_url)
    assert client.get_run(run.info.run_id).data.metrics["auc"] == 0.75
    # The client has no S3 keys: the server proxied the artifact into the mlflow bucket.
    objects = s3_client(live_stack.settings, live_stack.credentials).list_objects_v2(Bucket="mlflow")
    assert any(item["Key"].endswith(f"{run.info.run_id}/artifacts/notes/evidence.txt") for item in objects["Contents"])


def test_triton_loads_a_model_from_the_s3_repository_and_answers(stack_connections):
    from factory_providers.s3.hooks import FactoryS3Hook
    from factory_providers.triton.hooks import TritonHook
    from factory_providers.triton.repository import publish_model_files

    from serving.triton.smoke import SMOKE_INPUT, SMOKE_MODEL_NAME, check_prediction, smoke_model_files

    triton = TritonHook()
    bucket, prefix = triton.repository
    publish_model_files(FactoryS3Hook(), bucket, prefix, SMOKE_MODEL_NAME, smoke_model_files())
    triton.load_model(SMOKE_MODEL_NAME)
    y = triton.infer(SMOKE_MODEL_NAME, {"x": SMOKE_INPUT}, ["y"])["y"]
    check_prediction(SMOKE_INPUT, y)
    with pytest.raises(AssertionError, match="expected"):
        check_prediction(SMOKE_INPUT, y + np.float32(0.5))


def test_up_twice_starts_no_duplicates(live_stack):
    before = {status.name: status.pid for status in live_stack.status()}
    assert all(before.values()), before
    after = {status.name: status.pid for status in live_stack.up()}
    assert after == before
    home = str(live_stack.settings.home)
    weeds = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] and home in " ".join(p.info["cmdline"])
             and p.info["cmdline"][0].endswith("weed")]  # fmt: skip
    assert len(weeds) == 1


def test_port_taken_names_the_port_and_the_process(tmp_path):
    stack = Stack(isolated_settings(tmp_path), env={}, report=lambda line: None)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", stack.settings.ports.s3))
        squatter.listen()
        with pytest.raises(PortInUseError, match=rf"port {stack.settings.ports.s3} \(needed for s3\) .* pid \d+"):
            stack.up(["s3"])
    assert all(status.state == "stopped" for status in stack.status())


def test_unhealthy_service_shows_its_log_and_leaves_nothing_behind(tmp_path):
    stack = Stack(isolated_settings(tmp_path), env={}, report=lambda line: None)
    crashing = Service(
        "s3", [sys.executable, "-c", "print('cannot open volume dir'); raise SystemExit(3)"], {}, {},
        "http://127.0.0.1:9/", startup_timeout=10,
    )  # fmt: skip
    stack.services = [crashing if s.name == "s3" else s for s in stack.services]
    with pytest.raises(StackError, match=r"(?s)s3 exited during start-up.*cannot open volume dir"):
        stack.up(["s3"])
    assert stack.status()[0].state == "stopped"


def test_down_stops_every_process_and_frees_every_port(tmp_path):
    stack = Stack(isolated_settings(tmp_path), env={}, report=lambda line: None)
    stack.up(["triton"])  # and its dependency, S3
    family = []
    for status in stack.status():
        if status.pid:
            proc = psutil.Process(status.pid)
            family += [proc, *proc.children(recursive=True)]
    assert len(family) >= 2
    ports = [port for s in stack.services if s.name in {"s3", "triton"} for port in s.ports.values()]
    assert sorted(stack.down()) == ["s3", "triton"]
    assert not [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert all(port_is_free(port) for port in ports)
    assert not list((stack.settings.run_dir).glob("*.pid"))


def test_unknown_service_is_named(live_stack):
    with pytest.raises(StackError, match="unknown service 'redis'"):
        live_stack.up(["redis"])
    assert dataclasses.is_dataclass(live_stack.settings)
