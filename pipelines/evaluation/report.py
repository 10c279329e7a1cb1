"""The evaluation report of one trained model: quality, calibration, slices and serving cost in one record."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict

from pipelines.evaluation.metrics import (
    DEFAULT_N_BINS,
    DEFAULT_THRESHOLD,
    ConfusionMatrix,
    MetricSet,
    ReliabilityBin,
    SliceMetrics,
    as_binary_arrays,
    compute_metrics,
    confusion,
    metrics_by_slice,
    reliability_curve,
)
from pipelines.export.runtime import onnx_session
from pipelines.export.signature import OUTPUT_NAME


class LatencyReport(BaseModel):
    """In-process onnxruntime latency of the exported model (1 intra-op thread, like one Triton instance).

    This is the model's own cost, the floor under any served latency; network and batching come on top.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    single_row_p50_ms: float
    single_row_p99_ms: float
    batch_size: int
    batch_p50_ms: float
    batch_p99_ms: float
    repeats: int


class EvaluationReport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    headline: MetricSet
    slices: dict[str, list[SliceMetrics]]
    calibration: list[ReliabilityBin]
    confusion: ConfusionMatrix
    latency: LatencyReport
    model_size_bytes: int


def measure_onnx_latency(
    onnx_model: bytes,
    feeds: Mapping[str, np.ndarray],
    *,
    batch_size: int = 256,
    repeats: int = 200,
    warmup: int = 20,
) -> LatencyReport:
    """p50/p99 of single-row calls (cycling through the feed's rows) and of `batch_size`-row calls."""
    rows = len(next(iter(feeds.values())))
    if rows == 0:
        raise ValueError("latency needs at least one feed row")
    session = onnx_session(onnx_model)
    batch_rows = np.arange(batch_size) % rows
    batch = {name: values[batch_rows] for name, values in feeds.items()}
    singles = [{name: values[i : i + 1] for name, values in feeds.items()} for i in range(min(rows, repeats))]

    def timed_ms(feed: Mapping[str, np.ndarray]) -> float:
        start = time.perf_counter_ns()
        session.run([OUTPUT_NAME], feed)
        return (time.perf_counter_ns() - start) / 1e6

    for i in range(warmup):
        session.run([OUTPUT_NAME], singles[i % len(singles)])
        session.run([OUTPUT_NAME], batch)
    single_ms = [timed_ms(singles[i % len(singles)]) for i in range(repeats)]
    batch_ms = [timed_ms(batch) for _ in range(repeats)]
    return LatencyReport(
        single_row_p50_ms=float(np.percentile(single_ms, 50)),
        single_row_p99_ms=float(np.percentile(single_ms, 99)),
        batch_size=batch_size,
        batch_p50_ms=float(np.percentile(batch_ms, 50)),
        batch_p99_ms=float(np.percentile(batch_ms, 99)),
        repeats=repeats,
    )


def evaluate_model(
    y_true: ArrayLike,
    proba: ArrayLike,
    *,
    slices: Mapping[str, ArrayLike],
    onnx_model: bytes,
    onnx_feeds: Mapping[str, np.ndarray],
    min_slice_size: int = 200,
    threshold: float = DEFAULT_THRESHOLD,
    n_bins: int = DEFAULT_N_BINS,
    latency_repeats: int = 200,
) -> EvaluationReport:
    """Everything the gate and the model card need about one model on one evaluation split.

    `slices` maps a slice column name (e.g. "carrier") to its per-row values; `onnx_feeds` are the exported
    model's inputs for (a sample of) the same rows, from `pipelines.export.signature.onnx_inputs_from_frame`.
    """
    y, p = as_binary_arrays(y_true, proba)
    return EvaluationReport(
        headline=compute_metrics(y, p, threshold, n_bins),
        slices={
            column: metrics_by_slice(y, p, values, min_slice_size, threshold, n_bins)
            for column, values in slices.items()
        },
        calibration=reliability_curve(y, p, n_bins),
        confusion=confusion(y, p, threshold),
        latency=measure_onnx_latency(onnx_model, onnx_feeds, repeats=latency_repeats),
        model_size_bytes=len(onnx_model),
    )
