"""Run an exported ONNX model in-process with onnxruntime (parity checks, latency, batch scoring)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pandas as pd

from pipelines.export.signature import OUTPUT_NAME, onnx_inputs_from_frame, read_onnx_signature


def onnx_session(onnx_model: bytes, *, intra_op_threads: int = 1) -> ort.InferenceSession:
    """A CPU session; one intra-op thread by default, as each Triton model instance runs (stack-facts)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_model, sess_options=options, providers=["CPUExecutionProvider"])


def onnx_predict_proba(onnx_model: bytes, frame: pd.DataFrame) -> np.ndarray:
    """Positive-class probabilities (1-D float64) of the exported model for the rows of `frame`."""
    feeds = onnx_inputs_from_frame(frame, read_onnx_signature(onnx_model))
    (probability,) = onnx_session(onnx_model).run([OUTPUT_NAME], feeds)
    return probability[:, 0].astype(np.float64)
