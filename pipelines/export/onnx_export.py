"""Convert fitted models into ONNX graphs that take raw feature columns and return `probability`.

Both converters build "body -> head" and merge the two graphs with `onnx.compose`:

- scikit-learn: body = skl2onnx conversion of the whole Pipeline (preprocessing + estimator, zipmap off),
  head = a Slice keeping the positive-class column of `probabilities` [batch, 2] as `probability` [batch, 1].
- PyTorch MLP: body = skl2onnx conversion of the fitted ColumnTransformer (raw columns -> float32 matrix),
  head = the torch module exported with `torch.onnx.export(dynamo=True)`. A torch graph cannot take string
  tensors, so one-hot encoding in torch would force categorical inputs to become integer codes and break the
  shared input signature; composing the sklearn preprocessing graph in front keeps one signature for every
  model kind and one preprocessing implementation (the fitted sklearn one) for training, batch scoring and
  serving.

Every export is checked against `signature_for(spec)` before it is returned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import compose, helper, numpy_helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from pipelines.export.signature import (
    OUTPUT_NAME,
    ModelSignature,
    SignatureError,
    read_onnx_signature,
    signature_for,
)
from pipelines.features import FeatureSpec

if TYPE_CHECKING:
    import torch

# sklearn models: opset 17 / ai.onnx.ml 3, the verified pair (stack-facts). The MLP graph uses opset 18
# for both halves (merged graphs must agree): 18 is the lowest opset torch's dynamo exporter implements;
# asking it for 17 triggers a version down-conversion that may fail. onnxruntime runs opset 18 since 1.14.
SKLEARN_TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
TORCH_TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
_HEAD_PREFIX = "head_"


def sklearn_pipeline_to_onnx(pipeline: Pipeline, spec: FeatureSpec) -> bytes:
    """ONNX for a fitted Pipeline(preprocessor, classifier) trained on `prepare_frame(..., spec)` output."""
    signature = signature_for(spec)
    estimator = pipeline.steps[-1][1]
    body = to_onnx(
        pipeline,
        initial_types=_initial_types(signature),
        options={id(estimator): {"zipmap": False}},
        target_opset=SKLEARN_TARGET_OPSET,
    )
    head = _positive_class_head(body)
    return _finish(_append(body, "probabilities", head), signature, spec)


def torch_mlp_to_onnx(preprocessor: BaseEstimator, module: torch.nn.Module, spec: FeatureSpec) -> bytes:
    """ONNX for a fitted preprocessor followed by a torch module mapping its float32 matrix to probability."""
    import torch

    signature = signature_for(spec)
    body = to_onnx(preprocessor, initial_types=_initial_types(signature), target_opset=TORCH_TARGET_OPSET)
    (body_output,) = body.graph.output
    n_features = body_output.type.tensor_type.shape.dim[1].dim_value
    program = torch.onnx.export(
        module.eval(),
        (torch.zeros(2, n_features),),
        dynamo=True,
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        input_names=["features"],
        output_names=[OUTPUT_NAME],
        opset_version=TORCH_TARGET_OPSET[""],
        verbose=False,
    )
    return _finish(_append(body, body_output.name, program.model_proto), signature, spec)


def _initial_types(signature: ModelSignature) -> list[tuple[str, FloatTensorType | StringTensorType]]:
    tensor_types = {"FP32": FloatTensorType, "BYTES": StringTensorType}
    return [(tensor.name, tensor_types[tensor.dtype]([None, 1])) for tensor in signature.inputs]


def _positive_class_head(body: onnx.ModelProto) -> onnx.ModelProto:
    """A graph `probabilities` [batch, 2] -> `probability` [batch, 1] (column 1 = positive class)."""
    slice_bounds = [
        numpy_helper.from_array(np.array([value], dtype=np.int64), name)
        for name, value in (("starts", 1), ("ends", 2), ("axes", 1))
    ]
    graph = helper.make_graph(
        [helper.make_node("Slice", ["probabilities", "starts", "ends", "axes"], [OUTPUT_NAME])],
        "positive_class",
        [helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["batch", 1])],
        initializer=slice_bounds,
    )
    default_opset = next(entry.version for entry in body.opset_import if entry.domain == "")
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", default_opset)], ir_version=body.ir_version)


def _append(body: onnx.ModelProto, body_output: str, head: onnx.ModelProto) -> onnx.ModelProto:
    """Feed `body_output` into the head's single input; the only output left is the head's `probability`."""
    head = compose.add_prefix(head, _HEAD_PREFIX, rename_outputs=False)
    # merge_models needs equal IR versions; raising the older one is safe (IR is backward compatible).
    body.ir_version = head.ir_version = max(body.ir_version, head.ir_version)
    (head_input,) = head.graph.input
    return compose.merge_models(body, head, io_map=[(body_output, head_input.name)], outputs=[OUTPUT_NAME])


def _finish(model: onnx.ModelProto, signature: ModelSignature, spec: FeatureSpec) -> bytes:
    onnx.checker.check_model(model)
    actual = read_onnx_signature(model)
    if actual != signature:
        raise SignatureError(f"exported graph signature {actual} differs from the contract {signature}")
    helper.set_model_props(model, {"feature_spec_version": spec.version})
    return model.SerializeToString()
