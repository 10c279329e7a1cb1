"""Files copied verbatim into every cpu-local version folder: `model.py` (Triton's entry point) and
`factory_onnx_batching.py` (the batching logic it delegates to). A package only so tests can import
the latter."""
