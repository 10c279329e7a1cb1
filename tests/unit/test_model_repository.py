"""Triton model-repository builder: config.pbtxt for both profiles, sha256 manifest, write-once uploads, and
the python-backend batching module run on a real exported model."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from itertools import pairwise

import numpy as np
import onnx
import pandas as pd
import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc

from pipelines.export.runtime import onnx_predict_proba
from pipelines.export.signature import (
    ModelSignature,
    SignatureError,
    onnx_inputs_from_frame,
    signature_for,
)
from pipelines.features import FeatureSpec
from pipelines.training.config import default_training_config, merge_overrides
from pipelines.training.sklearn_models import HGBTrainer
from serving.model_repository import (
    ManifestMismatch,
    RepositoryConfig,
    RepositoryConfigError,
    RepositoryManifest,
    VersionFolderConflict,
    build_model_repository,
    model_config_pbtxt,
    plan_upload,
    repository_config_from,
    verify_manifest,
)
from serving.model_repository.builder import python_backend_files
from serving.model_repository.config import build_model_config
from serving.model_repository.manifest import sha256_hex
from serving.model_repository.python_backend.factory_onnx_batching import (
    OnnxBatchRunner,
    tensors_from_model_config,
    to_onnx_feed,
)

SPEC = FeatureSpec(numeric=["dep_delay", "sched_dep_time", "distance"], categorical=["carrier", "origin", "dest"])
SIGNATURE = signature_for(SPEC)
MODEL = "flights_delay"


pytestmark = pytest.mark.usefixtures("one_thread_per_library")


@pytest.fixture(scope="module")
def flights(labelled_flights: Callable[[int], pd.DataFrame]) -> pd.DataFrame:
    return labelled_flights(3_000)


@pytest.fixture(scope="module")
def onnx_model(flights: pd.DataFrame) -> bytes:
    """A real HGB trained on January flights and exported with the factory's converter."""
    labels = (flights["arr_delay"] > 15).to_numpy()
    config = merge_overrides(default_training_config("hgb"), {"max_iter": 30})
    model = HGBTrainer(config, SPEC).fit(flights.iloc[:2_000], labels[:2_000], flights.iloc[2_000:], labels[2_000:])
    return model.to_onnx()


@pytest.fixture(scope="module")
def built(onnx_model: bytes) -> dict[str, bytes]:
    return build_model_repository(onnx_model, SIGNATURE, MODEL, 3, live_versions=[2, 3])


def parse_config(text: str | bytes) -> mc.ModelConfig:
    """Parse config.pbtxt with Triton's own schema, as the server does."""
    return text_format.Parse(text.decode() if isinstance(text, bytes) else text, mc.ModelConfig())


# --- config.pbtxt -----------------------------------------------------------------------------------------


def test_cpu_local_config_serves_the_signature_with_dynamic_batching_and_live_versions() -> None:
    config = RepositoryConfig(max_batch_size=128, preferred_batch_sizes=(8, 32), max_queue_delay_microseconds=700)
    parsed = parse_config(model_config_pbtxt(MODEL, SIGNATURE, [3, 2, 3], "cpu-local", config))

    assert (parsed.name, parsed.backend, parsed.platform) == (MODEL, "python", "")
    assert parsed.max_batch_size == 128
    assert [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in parsed.input] == [
        ("dep_delay", "TYPE_FP32", [1]),
        ("sched_dep_time", "TYPE_FP32", [1]),
        ("distance", "TYPE_FP32", [1]),
        ("carrier", "TYPE_STRING", [1]),
        ("origin", "TYPE_STRING", [1]),
        ("dest", "TYPE_STRING", [1]),
    ]
    assert [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in parsed.output] == [
        ("probability", "TYPE_FP32", [1])
    ]
    assert list(parsed.version_policy.specific.versions) == [2, 3]
    assert list(parsed.dynamic_batching.preferred_batch_size) == [8, 32]
    assert parsed.dynamic_batching.max_queue_delay_microseconds == 700
    (group,) = parsed.instance_group
    assert (group.count, group.kind) == (1, mc.ModelInstanceGroup.KIND_CPU)


def test_warmup_is_one_zero_row_covering_every_input() -> None:
    parsed = parse_config(model_config_pbtxt(MODEL, SIGNATURE, [1], "cpu-local", RepositoryConfig()))

    (warmup,) = parsed.model_warmup
    assert warmup.batch_size == 1
    assert set(warmup.inputs) == set(SPEC.columns)
    assert all(value.zero_data and list(value.dims) == [1] for value in warmup.inputs.values())
    assert warmup.inputs["carrier"].data_type == mc.TYPE_STRING
    assert warmup.inputs["distance"].data_type == mc.TYPE_FP32


def test_gpu_profile_runs_the_same_tensors_on_the_onnxruntime_platform() -> None:
    config = RepositoryConfig(instance_count=2)
    gpu = parse_config(model_config_pbtxt(MODEL, SIGNATURE, [4], "gpu", config))
    cpu = parse_config(model_config_pbtxt(MODEL, SIGNATURE, [4], "cpu-local", config))

    assert (gpu.platform, gpu.backend) == ("onnxruntime_onnx", "")
    (group,) = gpu.instance_group
    assert (group.count, group.kind) == (2, mc.ModelInstanceGroup.KIND_GPU)
    assert list(gpu.input) == list(cpu.input)
    assert list(gpu.output) == list(cpu.output)
    assert gpu.dynamic_batching == cpu.dynamic_batching
    assert list(gpu.version_policy.specific.versions) == [4]


def test_batching_and_warmup_can_be_switched_off() -> None:
    config = RepositoryConfig(dynamic_batching=False, warmup=False)
    parsed = parse_config(model_config_pbtxt(MODEL, SIGNATURE, [1], "cpu-local", config))

    assert not parsed.HasField("dynamic_batching")
    assert len(parsed.model_warmup) == 0
    assert parsed.max_batch_size == 256


def test_batching_without_delay_or_preferred_sizes_stays_on() -> None:
    config = RepositoryConfig(max_queue_delay_microseconds=0)
    parsed = parse_config(model_config_pbtxt(MODEL, SIGNATURE, [1], "cpu-local", config))

    assert parsed.HasField("dynamic_batching")
    assert "dynamic_batching {\n}" in model_config_pbtxt(MODEL, SIGNATURE, [1], "cpu-local", config)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"preferred_batch_sizes": (16, 512)}, r"\[512\] are outside 1..max_batch_size \(256\)"),
        ({"preferred_batch_sizes": (32, 8)}, "strictly increasing"),
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"instance_count": 0}, "instance_count"),
        ({"queue_delay": 100}, "queue_delay"),
    ],
)
def test_repository_config_errors_name_the_source_and_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(RepositoryConfigError, match=rf"^configs/rollout\.yaml: invalid repository config: .*{message}"):
        repository_config_from(fields, "configs/rollout.yaml")


def test_repository_config_from_empty_source_gives_the_defaults() -> None:
    assert repository_config_from(None, "params") == RepositoryConfig()


@pytest.mark.parametrize(
    ("model", "versions", "message"),
    [
        ("flights/delay", [1], "not a valid Triton model directory name"),
        ("", [1], "not a valid Triton model directory name"),
        (MODEL, [], "at least one live version"),
        (MODEL, [0, 2], r"positive integers, got \[0\]"),
    ],
)
def test_config_refuses_bad_names_and_versions(model: str, versions: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model_config(model, SIGNATURE, versions, "cpu-local", RepositoryConfig())


# --- build_model_repository ----------------------------------------------------------------------------


def test_cpu_local_build_lays_out_the_registry_version_folder(onnx_model: bytes, built: dict[str, bytes]) -> None:
    assert sorted(built) == [
        f"{MODEL}/3/factory_onnx_batching.py",
        f"{MODEL}/3/manifest.json",
        f"{MODEL}/3/model.onnx",
        f"{MODEL}/3/model.py",
        f"{MODEL}/config.pbtxt",
    ]
    assert built[f"{MODEL}/3/model.onnx"] == onnx_model
    assert {name: built[f"{MODEL}/3/{name}"] for name in ("model.py", "factory_onnx_batching.py")} == (
        python_backend_files()
    )
    assert list(parse_config(built[f"{MODEL}/config.pbtxt"]).version_policy.specific.versions) == [2, 3]


def test_manifest_records_hashes_signature_and_profile(onnx_model: bytes, built: dict[str, bytes]) -> None:
    manifest = RepositoryManifest.model_validate_json(built[f"{MODEL}/3/manifest.json"])

    assert (manifest.model, manifest.version, manifest.profile) == (MODEL, 3, "cpu-local")
    assert manifest.signature == SIGNATURE
    assert manifest.files == {
        name: sha256_hex(built[f"{MODEL}/3/{name}"]) for name in ("model.onnx", "model.py", "factory_onnx_batching.py")
    }
    assert manifest.files["model.onnx"] == sha256_hex(onnx_model)


def test_gpu_build_ships_only_the_onnx_graph(onnx_model: bytes) -> None:
    files = build_model_repository(onnx_model, SIGNATURE, MODEL, 7, profile="gpu")

    assert sorted(files) == [f"{MODEL}/7/manifest.json", f"{MODEL}/7/model.onnx", f"{MODEL}/config.pbtxt"]
    assert parse_config(files[f"{MODEL}/config.pbtxt"]).platform == "onnxruntime_onnx"
    assert json.loads(files[f"{MODEL}/7/manifest.json"])["profile"] == "gpu"
    verify_manifest(files)


def test_build_is_deterministic(onnx_model: bytes, built: dict[str, bytes]) -> None:
    assert build_model_repository(onnx_model, SIGNATURE, MODEL, 3, live_versions=[3, 2]) == built


def test_build_refuses_a_version_that_would_not_be_served(onnx_model: bytes) -> None:
    with pytest.raises(ValueError, match=r"version 5 is not among the live versions \[3, 4\]"):
        build_model_repository(onnx_model, SIGNATURE, MODEL, 5, live_versions=[3, 4])


def test_build_refuses_a_graph_that_does_not_declare_the_signature(onnx_model: bytes) -> None:
    other = signature_for(FeatureSpec(numeric=["dep_delay"], categorical=["carrier"]))
    with pytest.raises(SignatureError, match=r"flights_delay v3: ONNX graph declares"):
        build_model_repository(onnx_model, other, MODEL, 3)


# --- verify_manifest -----------------------------------------------------------------------------------


def test_verify_manifest_accepts_an_untouched_build_and_ignores_config_changes(
    built: dict[str, bytes],
) -> None:
    verify_manifest(built)
    verify_manifest({**built, f"{MODEL}/config.pbtxt": b"# rewritten on rollback\n"})


def test_tampered_artifact_is_named(built: dict[str, bytes]) -> None:
    onnx = bytearray(built[f"{MODEL}/3/model.onnx"])
    onnx[-1] ^= 0x01
    with pytest.raises(ManifestMismatch, match=r"^flights_delay/3/model\.onnx: sha256 differs") as caught:
        verify_manifest({**built, f"{MODEL}/3/model.onnx": bytes(onnx)})
    assert caught.value.path == f"{MODEL}/3/model.onnx"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda f: {k: v for k, v in f.items() if not k.endswith("model.py")},
            r"3/model\.py: listed .* but missing",
        ),
        (lambda f: {**f, f"{MODEL}/3/extra.py": b"import os"}, r"3/extra\.py: not listed in the manifest"),
        (
            lambda f: {k: v for k, v in f.items() if not k.endswith("manifest.json")},
            r"3/manifest\.json: missing",
        ),
        (lambda f: {**f, f"{MODEL}/3/manifest.json": b"{}"}, r"3/manifest\.json: not a valid manifest"),
        (
            lambda f: {k.replace("/3/", "/4/"): v for k, v in f.items()},
            r"describes flights_delay/3, but sits in .*/4",
        ),
        (lambda f: {f"{MODEL}/config.pbtxt": f[f"{MODEL}/config.pbtxt"]}, "no version folder to verify"),
    ],
)
def test_verify_manifest_failures(
    built: dict[str, bytes], change: Callable[[dict[str, bytes]], dict[str, bytes]], message: str
) -> None:
    with pytest.raises(ManifestMismatch, match=message):
        verify_manifest(change(built))


# --- plan_upload -------------------------------------------------------------------------------------------


class RecordingStore(Mapping[str, bytes]):
    """An S3 listing whose bytes are 'downloaded' on access; records which keys were read."""

    def __init__(self, objects: Mapping[str, bytes]) -> None:
        self.objects = dict(objects)
        self.reads: list[str] = []

    def __getitem__(self, key: str) -> bytes:
        self.reads.append(key)
        return self.objects[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.objects)

    def __len__(self) -> int:
        return len(self.objects)


def test_first_upload_writes_files_then_manifest_then_config(built: dict[str, bytes]) -> None:
    plan = plan_upload({}, built)

    assert plan.unchanged == ()
    assert plan.writes == (
        f"{MODEL}/3/factory_onnx_batching.py",
        f"{MODEL}/3/model.onnx",
        f"{MODEL}/3/model.py",
        f"{MODEL}/3/manifest.json",
        f"{MODEL}/config.pbtxt",
    )


def test_repeating_an_upload_is_a_no_op(built: dict[str, bytes]) -> None:
    plan = plan_upload(dict(built), built)

    assert plan.writes == ()
    assert sorted(plan.unchanged) == sorted(built)


def test_an_interrupted_upload_is_completed(built: dict[str, bytes]) -> None:
    stored = {f"{MODEL}/3/model.onnx": built[f"{MODEL}/3/model.onnx"]}

    plan = plan_upload(stored, built)

    assert plan.unchanged == (f"{MODEL}/3/model.onnx",)
    assert f"{MODEL}/3/manifest.json" in plan.writes


def test_existing_version_folder_with_other_content_is_refused(onnx_model: bytes, built: dict[str, bytes]) -> None:
    graph = onnx.load_from_string(onnx_model)
    graph.doc_string = "retrained"
    retrained = build_model_repository(graph.SerializeToString(), SIGNATURE, MODEL, 3, live_versions=[2, 3])
    with pytest.raises(VersionFolderConflict, match=r"^flights_delay/3/model\.onnx: already exists with different"):
        plan_upload(dict(built), retrained)


def test_existing_version_folder_with_a_file_the_build_lacks_is_refused(
    onnx_model: bytes, built: dict[str, bytes]
) -> None:
    gpu_build = build_model_repository(onnx_model, SIGNATURE, MODEL, 3, live_versions=[2, 3], profile="gpu")
    with pytest.raises(VersionFolderConflict, match=r"flights_delay/3/.*\.py: exists in the repository but not in"):
        plan_upload(dict(built), gpu_build)


def test_new_version_rewrites_only_the_config_and_reads_only_what_it_compares(
    onnx_model: bytes, built: dict[str, bytes]
) -> None:
    store = RecordingStore(built)
    next_version = build_model_repository(onnx_model, SIGNATURE, MODEL, 4, live_versions=[3, 4])

    plan = plan_upload(store, next_version)

    assert plan.writes[-1] == f"{MODEL}/config.pbtxt"
    assert {path.split("/")[1] for path in plan.writes[:-1]} == {"4"}
    assert store.reads == [f"{MODEL}/config.pbtxt"]


# --- python-backend batching module (runs inside Triton's stub) -------------------------------------------


def triton_rows(frame: pd.DataFrame, signature: ModelSignature) -> dict[str, np.ndarray]:
    """Rows as Triton hands them to model.py: FP32 arrays, and BYTES as object arrays of utf-8 bytes."""
    feeds = onnx_inputs_from_frame(frame, signature)
    return {
        name: np.vectorize(str.encode, otypes=[object])(values) if values.dtype == object else values
        for name, values in feeds.items()
    }


@pytest.fixture(scope="module")
def runner(onnx_model: bytes, tmp_path_factory: pytest.TempPathFactory) -> OnnxBatchRunner:
    """Built from the JSON model config, as Triton passes it to `initialize`."""
    path = tmp_path_factory.mktemp("version") / "model.onnx"
    path.write_bytes(onnx_model)
    triton_json = json_format.MessageToDict(
        build_model_config(MODEL, SIGNATURE, [1], "cpu-local", RepositoryConfig()),
        preserving_proto_field_name=True,
    )
    return OnnxBatchRunner(
        str(path),
        tensors_from_model_config(triton_json, "input"),
        tensors_from_model_config(triton_json, "output"),
    )


def test_one_run_over_a_dynamic_batch_returns_each_request_its_own_rows(
    runner: OnnxBatchRunner, onnx_model: bytes, flights: pd.DataFrame
) -> None:
    rows = flights.iloc[2_000:2_012].copy()
    rows.loc[rows.index[0], "dep_delay"] = np.nan
    rows.loc[rows.index[1], "carrier"] = None
    rows.loc[rows.index[2], "dest"] = "ZZZ"
    expected = onnx_predict_proba(onnx_model, rows)
    sizes = [1, 5, 2, 4]
    bounds = np.cumsum([0, *sizes])
    requests = [triton_rows(rows.iloc[start:stop], SIGNATURE) for start, stop in pairwise(bounds)]

    results = runner.run(requests)

    assert [result["probability"].shape for result in results] == [(size, 1) for size in sizes]
    served = np.concatenate([result["probability"][:, 0] for result in results])
    assert served.dtype == np.float32
    assert np.max(np.abs(served - expected)) <= 1e-6


def test_a_bad_request_fails_alone(runner: OnnxBatchRunner, flights: pd.DataFrame) -> None:
    good = triton_rows(flights.iloc[:2], SIGNATURE)
    missing_input = {**good, "carrier": None}
    ragged = {**good, "origin": good["origin"][:1]}

    results = runner.run([missing_input, good, ragged])

    assert results[0] == "request lacks inputs ['carrier']"
    assert results[1]["probability"].shape == (2, 1)
    assert "different row counts" in results[2]


def test_bytes_inputs_decode_ascii_fast_and_utf8_on_fallback() -> None:
    ascii_rows = np.array([[b"UA"], [b""]], dtype=object)
    utf8_rows = np.array([["Zürich".encode()], [b"JFK"]], dtype=object)

    assert to_onnx_feed(ascii_rows, "TYPE_STRING").tolist() == [["UA"], [""]]
    assert to_onnx_feed(utf8_rows, "TYPE_STRING").tolist() == [["Zürich"], ["JFK"]]
    assert to_onnx_feed(np.array([[1.5]], dtype=np.float64), "TYPE_FP32").dtype == np.float32
    with pytest.raises(ValueError, match="unsupported Triton data type TYPE_INT64"):
        to_onnx_feed(np.array([[1]]), "TYPE_INT64")
