"""Run one ONNX session over a whole dynamic batch of Triton requests (copied into cpu-local version folders).

Triton's python backend hands `execute` a LIST of requests, one per client call. Looping over them runs
onnxruntime once per request, so dynamic batching would only add queueing delay. Here the rows of every valid
request are concatenated, the session runs ONCE, and the outputs are split back by row counts: that is where
the batching gain comes from (2.47x throughput at concurrency 16, docs/benchmarks.md).

This file is copied verbatim next to `model.py` and runs inside the Triton environment (numpy 1.x,
onnxruntime, no project packages), so it imports nothing from the project. It is also imported by the unit
tests, which is why the logic lives here and not in `model.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

# Triton config dtype -> how the rows are handed to onnxruntime.
_FLOAT_TYPES = {"TYPE_FP32": np.float32}
_STRING_TYPES = {"TYPE_STRING"}

# One request as model.py reads it: input name -> rows (None when the client did not send that input).
RequestInputs = Mapping[str, np.ndarray | None]


@dataclass(frozen=True)
class TensorConfig:
    """One input or output of the Triton model config (name and Triton dtype)."""

    name: str
    data_type: str


def tensors_from_model_config(model_config: Mapping[str, object], key: str) -> list[TensorConfig]:
    """The `input` or `output` list of the JSON model config Triton passes to `initialize`."""
    return [TensorConfig(tensor["name"], tensor["data_type"]) for tensor in model_config[key]]  # type: ignore[index,union-attr]


def to_onnx_feed(values: np.ndarray, data_type: str) -> np.ndarray:
    """Triton input rows -> the array onnxruntime expects for that dtype.

    BYTES arrive as an object array of `bytes`; onnxruntime string inputs need an object array of `str`.
    `astype(str)` decodes ASCII ~5x faster than an explicit UTF-8 decode, so it is the fast path; a non-ASCII
    category (UnicodeDecodeError) falls back to UTF-8, the encoding Triton clients send.
    """
    if data_type in _FLOAT_TYPES:
        return np.asarray(values, dtype=_FLOAT_TYPES[data_type])
    if data_type in _STRING_TYPES:
        try:
            return values.astype(str).astype(object)
        except UnicodeDecodeError:
            return np.char.decode(values.astype(bytes), "utf-8").astype(object)
    raise ValueError(f"unsupported Triton data type {data_type}")


class OnnxBatchRunner:
    """An onnxruntime session (1 intra-op thread) that serves a list of requests with a single `run`."""

    def __init__(self, onnx_path: str, inputs: Sequence[TensorConfig], outputs: Sequence[TensorConfig]) -> None:
        options = ort.SessionOptions()
        # One thread per model instance: Triton scales with instance_group count, and a multi-threaded session
        # per instance oversubscribes the cores (OpenMP spin-waits) under concurrent load.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(onnx_path, sess_options=options, providers=["CPUExecutionProvider"])
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self._input_names = [tensor.name for tensor in self.inputs]
        self._output_names = [tensor.name for tensor in self.outputs]

    def run(self, requests: Sequence[RequestInputs]) -> list[dict[str, np.ndarray] | str]:
        """Per request: its output arrays, or an error message (a bad request never fails its neighbours).

        Written for the per-request cost, which is what limits throughput once batches form (the session run
        itself is ~40 us for 16 rows): one pass over the requests, no concatenation for a single request,
        outputs handed back as row slices (views) of the session's output.
        """
        results: list[dict[str, np.ndarray] | str] = [""] * len(requests)
        valid: list[int] = []
        bounds = [0]
        for index, request in enumerate(requests):
            rows = self._row_count(request)
            if isinstance(rows, int):
                valid.append(index)
                bounds.append(bounds[-1] + rows)
            else:
                results[index] = rows  # type: ignore[assignment]
        if not valid:
            return results
        if len(valid) == 1:
            feeds = {t.name: to_onnx_feed(requests[valid[0]][t.name], t.data_type) for t in self.inputs}  # type: ignore[arg-type]
        else:
            feeds = {
                t.name: to_onnx_feed(np.concatenate([requests[index][t.name] for index in valid]), t.data_type)  # type: ignore[misc]
                for t in self.inputs
            }
        outputs = list(zip(self._output_names, self.session.run(self._output_names, feeds), strict=True))
        for position, index in enumerate(valid):
            start, stop = bounds[position], bounds[position + 1]
            results[index] = {name: values[start:stop] for name, values in outputs}
        return results

    def _row_count(self, request: RequestInputs) -> int | str:
        """How many rows `request` adds to the batch, or why it cannot join it."""
        try:
            counts = {len(request[name]) for name in self._input_names}  # type: ignore[arg-type]
        except (KeyError, TypeError):  # an input is absent (or None): the slow path names which
            return f"request lacks inputs {[name for name in self._input_names if request.get(name) is None]}"
        if len(counts) != 1:
            rows = {name: len(request[name]) for name in self._input_names}  # type: ignore[arg-type]
            return f"inputs have different row counts {rows}"
        count = counts.pop()
        return count if count > 0 else "request has no rows"
