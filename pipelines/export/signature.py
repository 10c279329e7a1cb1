"""The serving contract of an exported model, shared by every model kind.

Every ONNX model the factory exports has the same shape of interface, so the Triton config generator, the
gateway and the monitoring jobs never need to know which trainer produced it:

- inputs: one tensor per feature column, named after the column, in `FeatureSpec.columns` order; numeric
  columns are FP32, categorical columns are BYTES (ONNX string); each is [batch, 1]. A missing categorical
  value is the empty string (see `pipelines.features.MISSING_CATEGORY`), a missing numeric value is NaN.
- output: one tensor "probability", FP32 [batch, 1]: the positive-class probability.

`dims` are per row, without the batch dimension (Triton's convention when max_batch_size > 0); the ONNX graph
itself declares a dynamic leading batch dimension in front of them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import onnx
import pandas as pd
from pydantic import BaseModel, ConfigDict

from pipelines.features import FeatureSpec, prepare_frame

OUTPUT_NAME = "probability"

TritonDtype = Literal["FP32", "BYTES"]
_ONNX_TO_TRITON: dict[int, TritonDtype] = {
    onnx.TensorProto.FLOAT: "FP32",
    onnx.TensorProto.STRING: "BYTES",
}
# onnxruntime takes string tensors as numpy object arrays of str.
_NUMPY_DTYPES: dict[TritonDtype, type] = {"FP32": np.float32, "BYTES": object}


class SignatureError(ValueError):
    """An ONNX graph does not expose the factory's serving contract."""


class TensorSpec(BaseModel):
    """One named tensor of the serving contract."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    dtype: TritonDtype
    dims: list[int]


class ModelSignature(BaseModel):
    """Inputs and outputs of an exported model, as the Triton config generator reads them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def feature_spec(self) -> FeatureSpec:
        """The feature spec these inputs encode (FP32 inputs are numeric, BYTES inputs categorical)."""
        return FeatureSpec(
            numeric=[tensor.name for tensor in self.inputs if tensor.dtype == "FP32"],
            categorical=[tensor.name for tensor in self.inputs if tensor.dtype == "BYTES"],
        )


def signature_for(spec: FeatureSpec) -> ModelSignature:
    """The signature every model trained on `spec` must export."""
    inputs = [TensorSpec(name=column, dtype="FP32", dims=[1]) for column in spec.numeric]
    inputs += [TensorSpec(name=column, dtype="BYTES", dims=[1]) for column in spec.categorical]
    return ModelSignature(inputs=inputs, outputs=[TensorSpec(name=OUTPUT_NAME, dtype="FP32", dims=[1])])


def read_onnx_signature(onnx_model: bytes | onnx.ModelProto) -> ModelSignature:
    """Read the signature an ONNX graph actually declares (to check an export against `signature_for`)."""
    model = onnx_model if isinstance(onnx_model, onnx.ModelProto) else onnx.load_from_string(onnx_model)
    return ModelSignature(
        inputs=[_tensor_spec(value) for value in model.graph.input],
        outputs=[_tensor_spec(value) for value in model.graph.output],
    )


def onnx_inputs_from_frame(frame: pd.DataFrame, signature: ModelSignature) -> dict[str, np.ndarray]:
    """The onnxruntime feed for `frame`: one [rows, 1] array per input, float32 or object-of-str.

    Goes through `prepare_frame`, so batch scoring casts exactly as training did.
    """
    prepared = prepare_frame(frame, signature.feature_spec())
    return {
        tensor.name: prepared[tensor.name].to_numpy(dtype=_NUMPY_DTYPES[tensor.dtype]).reshape(-1, 1)
        for tensor in signature.inputs
    }


def _tensor_spec(value: onnx.ValueInfoProto) -> TensorSpec:
    tensor_type = value.type.tensor_type
    dtype = _ONNX_TO_TRITON.get(tensor_type.elem_type)
    if dtype is None:
        name = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
        raise SignatureError(f"tensor {value.name!r} has ONNX type {name}; the contract allows FLOAT and STRING")
    dims = list(tensor_type.shape.dim)
    if not dims or dims[0].HasField("dim_value"):
        raise SignatureError(f"tensor {value.name!r} has no dynamic batch dimension")
    per_row = []
    for dim in dims[1:]:
        if not dim.HasField("dim_value"):
            raise SignatureError(f"tensor {value.name!r} has a dynamic dimension after the batch dimension")
        per_row.append(dim.dim_value)
    return TensorSpec(name=value.name, dtype=dtype, dims=per_row)
