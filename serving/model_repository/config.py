"""Triton `config.pbtxt` generated from a model's serving signature, for both deployment profiles.

One source, two profiles:

- `gpu`: the official Triton container's onnxruntime backend (`platform: "onnxruntime_onnx"`, KIND_GPU) runs
  `model.onnx` directly.
- `cpu-local`: the local tritonserver has only the python backend, so `model.py` runs the same `model.onnx`
  with onnxruntime (KIND_CPU).

The config is built as Triton's own `ModelConfig` protobuf (shipped with tritonclient) and rendered with
protobuf's text format, so a misspelt field fails here instead of at model load, and the output is exactly
what Triton parses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from google.protobuf import text_format
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from tritonclient.grpc import model_config_pb2 as mc

from pipelines.export.signature import ModelSignature, TensorSpec

Profile = Literal["gpu", "cpu-local"]
PROFILES: tuple[Profile, ...] = ("gpu", "cpu-local")

_TRITON_DTYPES = {"FP32": mc.TYPE_FP32, "BYTES": mc.TYPE_STRING}
# Triton model names are directory names in the repository (and S3 key segments).
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
WARMUP_NAME = "zero_row"


class RepositoryConfigError(ValueError):
    """A repository config (YAML or trigger params) is invalid; the message names the source and field."""


class RepositoryConfig(BaseModel):
    """How Triton schedules a model; the defaults are what benchmarks/triton_batching.py measured best.

    Queue delay 0: Triton's dynamic batcher waits the FULL delay whenever the pending batch is below
    max_batch_size, even with the instance idle and no other client. Measured on 2 shared cores (2026-11-24,
    single-row HTTP): at concurrency 1 a 500 us delay made p50 1.18 ms against 0.41-0.48 ms without; at
    concurrency 16 a batch still forms from what queues while the instance is busy, and delay 0 gave the best
    throughput and p99 (median of 3 interleaved rounds: 6,454 req/s p99 6.8 ms; 500 us 4,930 req/s p99 7.6 ms;
    100 us 5,346 req/s; batching off 3,088 req/s). Earlier sweeps: preferred sizes and a second instance were
    no better (a second instance competes with Triton's HTTP threads for the same cores; each onnxruntime
    session has one intra-op thread). max_batch_size 256 bounds a client-side batch. Warmup on, so the first
    client call does not pay session initialisation.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_batch_size: int = Field(default=256, ge=1)
    dynamic_batching: bool = True
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_microseconds: int = Field(default=0, ge=0)
    instance_count: int = Field(default=1, ge=1)
    warmup: bool = True

    @model_validator(mode="after")
    def _check_preferred_sizes(self) -> RepositoryConfig:
        sizes = self.preferred_batch_sizes
        if list(sizes) != sorted(set(sizes)):
            raise ValueError(f"preferred_batch_sizes must be strictly increasing, got {list(sizes)}")
        out_of_range = [size for size in sizes if not 1 <= size <= self.max_batch_size]
        if out_of_range:
            raise ValueError(
                f"preferred_batch_sizes {out_of_range} are outside 1..max_batch_size ({self.max_batch_size})"
            )
        return self


def repository_config_from(data: Mapping[str, Any] | None, source: str) -> RepositoryConfig:
    """Validate a config read from YAML or trigger params; errors name `source` and the offending field."""
    try:
        return RepositoryConfig.model_validate(data or {})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc']) or '<config>'}: {issue['msg']}" for issue in error.errors()
        )
        raise RepositoryConfigError(f"{source}: invalid repository config: {problems}") from None


def check_model_name(model_name: str) -> None:
    if not _MODEL_NAME.match(model_name):
        raise ValueError(f"model name {model_name!r} is not a valid Triton model directory name")


def check_live_versions(live_versions: Sequence[int]) -> list[int]:
    """The versions Triton must serve, sorted; registry versions are positive and listed at least once."""
    if not live_versions:
        raise ValueError("at least one live version is needed")
    bad = [version for version in live_versions if isinstance(version, bool) or version < 1]
    if bad:
        raise ValueError(f"model versions must be positive integers, got {bad}")
    return sorted(set(live_versions))


def build_model_config(
    model_name: str,
    signature: ModelSignature,
    live_versions: Sequence[int],
    profile: Profile,
    config: RepositoryConfig,
) -> mc.ModelConfig:
    """Triton's ModelConfig for `signature`, serving exactly `live_versions` (e.g. champion + challenger)."""
    check_model_name(model_name)
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {list(PROFILES)}")
    model = mc.ModelConfig(name=model_name, max_batch_size=config.max_batch_size)
    if profile == "gpu":
        model.platform = "onnxruntime_onnx"
    else:
        model.backend = "python"
    model.input.extend(_tensor(tensor, mc.ModelInput) for tensor in signature.inputs)
    model.output.extend(_tensor(tensor, mc.ModelOutput) for tensor in signature.outputs)
    model.version_policy.specific.versions.extend(check_live_versions(live_versions))
    if config.dynamic_batching:
        model.dynamic_batching.preferred_batch_size.extend(config.preferred_batch_sizes)
        model.dynamic_batching.max_queue_delay_microseconds = config.max_queue_delay_microseconds
    kind = mc.ModelInstanceGroup.KIND_GPU if profile == "gpu" else mc.ModelInstanceGroup.KIND_CPU
    model.instance_group.add(count=config.instance_count, kind=kind)
    if config.warmup:
        model.model_warmup.append(_zero_row_warmup(signature))
    return model


def model_config_pbtxt(
    model_name: str,
    signature: ModelSignature,
    live_versions: Sequence[int],
    profile: Profile,
    config: RepositoryConfig,
) -> str:
    """`config.pbtxt` text; also what a rollback or retirement rewrites (only the live versions change)."""
    model = build_model_config(model_name, signature, live_versions, profile, config)
    header = f"# Generated by serving.model_repository ({profile} profile) from the signature; do not edit.\n"
    return header + text_format.MessageToString(model)


def _tensor(tensor: TensorSpec, message: type[mc.ModelInput] | type[mc.ModelOutput]) -> Any:
    return message(name=tensor.name, data_type=_TRITON_DTYPES[tensor.dtype], dims=tensor.dims)


def _zero_row_warmup(signature: ModelSignature) -> mc.ModelWarmup:
    """One sample row: 0.0 for FP32 inputs; for BYTES Triton's zero data is the empty string, which is the
    factory's missing-category token (pipelines.features.MISSING_CATEGORY), a value every model accepts."""
    warmup = mc.ModelWarmup(name=WARMUP_NAME, batch_size=1)
    for tensor in signature.inputs:
        warmup.inputs[tensor.name].CopyFrom(
            mc.ModelWarmup.Input(data_type=_TRITON_DTYPES[tensor.dtype], dims=tensor.dims, zero_data=True)
        )
    return warmup
