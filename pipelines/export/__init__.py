"""Export trained models to ONNX with one serving signature, and prove parity with the native model.

Modules: `signature` (the serving contract, ONNX feeds), `onnx_export` (sklearn / torch converters),
`runtime` (onnxruntime sessions), `parity` (native vs ONNX check).
"""
