"""Run one ONNX session over a whole dynamic batch of Triton requests (copied into cpu-local version folders).

Triton's python backend hands `execute` a LIST of requests, one per client call. Looping over them runs
onnxruntime once per request, so dynamic batching would only add queueing delay. Here the rows of every valid
request are concatenated, the session runs ONCE, and the outputs are split back by row counts: that is where
the batching gain comes from (measured 2.1x throughput at concurrency 16, stack-facts).

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

    @property
    def input_names(self) -> list[str]:
        return [tensor.name for tensor in self.inputs]

    def run(self, requests: Sequence[RequestInputs]) -> list[dict[str, np.ndarray] | str]:
        """Per request: its output arrays, or an error message (a bad request never fails its neighbours)."""
        checked = [self._row_count(request) for request in requests]
        results: list[dict[str, np.ndarray] | str] = [rows if isinstance(rows, str) else {} for rows in checked]
        valid = [index for index, rows in enumerate(checked) if isinstance(rows, int)]
        if not valid:
            return results
        feeds = {
            tensor.name: to_onnx_feed(
                np.concatenate([requests[index][tensor.name] for index in valid]), tensor.data_type
            )
            for tensor in self.inputs
        }
        outputs = self.session.run([tensor.name for tensor in self.outputs], feeds)
        boundaries = np.cumsum([checked[index] for index in valid])[:-1]
        per_output = [np.split(np.asarray(values), boundaries) for values in outputs]
        for position, index in enumerate(valid):
            results[index] = {
                tensor.name: np.ascontiguousarray(parts[position])
                for tensor, parts in zip(self.outputs, per_output, strict=True)
            }
        return results

    def _row_count(self, request: RequestInputs) -> int | str:
        """How many rows `request` adds to the batch, or why it cannot join it."""
        missing = [name for name in self.input_names if request.get(name) is None]
        if missing:
            return f"request lacks inputs {missing}"
        rows = {name: len(values) for name, values in request.items() if name in self.input_names}
        if len(set(rows.values())) != 1:
            return f"inputs have different row counts {rows}"
        count = next(iter(rows.values()))
        return count if count > 0 else "request has no rows"
