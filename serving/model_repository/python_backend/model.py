"""Triton python-backend entry point of a cpu-local model: adapts Triton requests to `factory_onnx_batching`.

Kept tiny on purpose; the batching logic (concatenate every request, run onnxruntime once, split) is in the
unit-tested sibling module, which Triton's stub can import because it puts this folder on sys.path.
"""

import json
import os

import triton_python_backend_utils as pb_utils
from factory_onnx_batching import OnnxBatchRunner, tensors_from_model_config


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        onnx_path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.runner = OnnxBatchRunner(
            onnx_path, tensors_from_model_config(config, "input"), tensors_from_model_config(config, "output")
        )

    def execute(self, requests):
        # request.inputs() once per request: pb_utils.get_input_tensor_by_name lists every input on each call.
        batch = [{tensor.name(): tensor.as_numpy() for tensor in request.inputs()} for request in requests]
        responses = []
        for result in self.runner.run(batch):
            if isinstance(result, str):
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(result)))
            else:
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(n, v) for n, v in result.items()]))
        return responses
