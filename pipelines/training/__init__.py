"""Trainers behind one interface: config in, TrainedModel (predict, ONNX, native artifact) out.

Modules: `config` (YAML configs, overrides), `base` (Trainer / TrainedModel), `factory` (`train_model`),
`sklearn_models` and `torch_mlp` (implementations). Nothing is re-exported here so that reading a config
(e.g. for a run record) does not import torch.
"""
