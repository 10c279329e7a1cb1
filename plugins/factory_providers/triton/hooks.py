"""Triton Inference Server control through an Airflow Connection: repository API, readiness, inference.

The Connection (http) holds the HTTP endpoint; its extra holds `grpc_port`, `metrics_port`, where the model
repository lives in S3 (`repository_bucket`, `repository_prefix`) and optionally the fleet: `pools`, a mapping
of pool name to the HTTP URLs of its hosts (`{"blue": ["http://gpu-1:8000", ...], "green": [...]}`), the
same pools the serving gateway routes to. Without `pools`, the fleet is the one host of the Connection.
`repository_profile` (`cpu-local` by default, `gpu` for NGC Triton on GPU hosts) is how deploys build version folders.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    import numpy as np
    import tritonclient.http as triton_http

    from serving.model_repository import Profile


class TritonError(RuntimeError):
    """Triton refused or failed an operation; the message names the model and the server."""


class TritonHook(BaseHook):
    conn_name_attr = "triton_conn_id"
    default_conn_name = "factory_triton"
    conn_type = "http"
    hook_name = "Triton Inference Server"

    def __init__(self, triton_conn_id: str = default_conn_name, timeout: float = 30.0) -> None:
        super().__init__()
        self.triton_conn_id = triton_conn_id
        self.timeout = timeout
        self._client: triton_http.InferenceServerClient | None = None

    @property
    def endpoint(self) -> str:
        conn = self.get_connection(self.triton_conn_id)
        if not conn.host or not conn.port:
            raise ValueError(f"connection {self.triton_conn_id!r} needs host and port: set AIRFLOW_CONN_FACTORY_TRITON")
        return f"{conn.host}:{conn.port}"

    @property
    def repository(self) -> tuple[str, str]:
        """(bucket, prefix) of the S3 model repository this server loads from."""
        extra = self.get_connection(self.triton_conn_id).extra_dejson
        try:
            return extra["repository_bucket"], extra["repository_prefix"]
        except KeyError as missing:
            raise ValueError(f"connection {self.triton_conn_id!r} extra lacks {missing}") from None

    @property
    def pools(self) -> dict[str, list[str]]:
        """Pool name -> HTTP URLs of its Triton hosts (all load from the same S3 repository)."""
        extra = self.get_connection(self.triton_conn_id).extra_dejson
        pools = extra.get("pools") or {"default": [f"http://{self.endpoint}"]}
        if not isinstance(pools, dict) or not all(
            isinstance(urls, list) and urls and all(isinstance(url, str) for url in urls) for urls in pools.values()
        ):
            raise ValueError(f"connection {self.triton_conn_id!r}: extra.pools must map pool names to lists of URLs")
        return {name: list(urls) for name, urls in pools.items()}

    @property
    def profile(self) -> Profile:
        """The model-repository profile these hosts load: `cpu-local` (python backend) or `gpu` (NGC Triton)."""
        profile = self.get_connection(self.triton_conn_id).extra_dejson.get("repository_profile", "cpu-local")
        if profile not in ("cpu-local", "gpu"):
            raise ValueError(f"connection {self.triton_conn_id!r}: repository_profile {profile!r} is not cpu-local|gpu")
        return profile

    def hosts(self, pools: list[str] | None = None) -> list[str]:
        """The hosts of `pools` (default: every pool), each once."""
        known = self.pools
        unknown = sorted(set(pools or []) - set(known))
        if unknown:
            raise ValueError(f"connection {self.triton_conn_id!r} has no pool(s) {unknown}; it has {sorted(known)}")
        chosen = [url for name in (pools or sorted(known)) for url in known[name]]
        return list(dict.fromkeys(chosen))

    def get_conn(self) -> triton_http.InferenceServerClient:
        if self._client is None:
            import tritonclient.http as triton_http

            self._client = triton_http.InferenceServerClient(
                self.endpoint, connection_timeout=self.timeout, network_timeout=self.timeout
            )
        return self._client

    def load_model(self, name: str, *, ready_timeout: float = 60.0) -> None:
        """Load (or reload) `name` from the repository and wait until it is ready."""
        from tritonclient.utils import InferenceServerException

        try:
            self.get_conn().load_model(name)
        except InferenceServerException as error:
            raise TritonError(f"Triton at {self.endpoint} could not load {name!r}: {error.message()}") from None
        deadline = time.monotonic() + ready_timeout
        while not self.get_conn().is_model_ready(name):
            if time.monotonic() > deadline:
                raise TritonError(f"{name!r} not ready on {self.endpoint} after {ready_timeout:.0f} s")
            time.sleep(0.2)

    def unload_model(self, name: str) -> None:
        self.get_conn().unload_model(name)

    def repository_index(self) -> list[dict[str, Any]]:
        return self.get_conn().get_model_repository_index()

    def infer(self, name: str, inputs: dict[str, np.ndarray], outputs: list[str], version: str = "") -> dict[str, Any]:
        """Run one inference; numpy arrays in, numpy arrays out (BYTES inputs as object arrays)."""
        import tritonclient.http as triton_http
        from tritonclient.utils import InferenceServerException, np_to_triton_dtype

        requests = []
        for input_name, array in inputs.items():
            tensor = triton_http.InferInput(input_name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            requests.append(tensor)
        wanted = [triton_http.InferRequestedOutput(output) for output in outputs]
        try:
            result = self.get_conn().infer(name, requests, model_version=version, outputs=wanted)
        except InferenceServerException as error:
            raise TritonError(f"inference on {name!r} at {self.endpoint} failed: {error.message()}") from None
        return {output: result.as_numpy(output) for output in outputs}
