"""Serving: the Triton runtime environment, the model-repository builder and the gateway."""
