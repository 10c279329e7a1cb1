"""Deploy a set of live versions to every Triton host of a fleet, all or nothing.

Order of a deploy (each step refuses before anything a client can see has changed, where it can):

1. every host answers its health check (a host down before the deploy: refuse, nothing written);
2. version folders missing from S3 are built from the registry's ONNX and uploaded write-once;
3. every live version folder, as stored, is verified against its sha256 manifest (tampered: refuse);
4. config.pbtxt is written with the live versions, and every host loads the model in parallel;
5. on every host, every live version is ready and the versions being introduced answer a smoke inference
   whose predictions equal the offline ONNX predictions within tolerance (parity).

If step 4 or 5 fails on any host, the previous config.pbtxt is written back and reloaded on every host that
still answers, so the fleet serves what it served before; the error names the host and the reason. Triton
keeps serving unchanged versions while it reloads a model (measured: 0 failed requests over reloads under
load), which is what makes adding a challenger next to a serving champion invisible to clients.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

from factory_providers.s3.hooks import FactoryS3Hook
from factory_providers.triton.repository import StoredFiles, upload, verify_versions, write_config
from pipelines.export.signature import OUTPUT_NAME, ModelSignature
from serving.model_repository import (
    ManifestMismatch,
    Profile,
    RepositoryConfig,
    build_model_repository,
    model_config_pbtxt,
)

if TYPE_CHECKING:
    import tritonclient.http as triton_http


class FleetDeployError(RuntimeError):
    """The deploy did not happen on every host; the fleet serves what it served before (see `restored`)."""

    def __init__(self, message: str, *, restored: bool) -> None:
        super().__init__(message)
        self.restored = restored


class HostResult(BaseModel):
    host: str
    load_seconds: float
    parity_max_abs_diff: dict[str, float]  # version -> max |served - offline|


class DeployReport(BaseModel):
    model: str
    live_versions: list[int]
    introduced: list[int]
    uploaded: list[str]
    hosts: list[HostResult]
    seconds: float


class ParityProbe(BaseModel):
    """Rows a deploy sends to every host, and what the ONNX graph of each version predicts for them offline."""

    model_config = {"arbitrary_types_allowed": True}

    inputs: dict[str, np.ndarray]
    expected: dict[int, np.ndarray]  # version -> positive-class probability per row
    tolerance: float


def _client(host: str, timeout: float) -> triton_http.InferenceServerClient:
    import tritonclient.http as triton_http

    return triton_http.InferenceServerClient(
        host.removeprefix("http://"), connection_timeout=timeout, network_timeout=timeout
    )


def _failure(error: Exception) -> str:
    message = getattr(error, "message", None)
    return message() if callable(message) else (str(error) or type(error).__name__)


def on_each_host(
    hosts: Sequence[str], timeout: float, action: Callable[[triton_http.InferenceServerClient], str | None]
) -> list[str]:
    """Run `action` with a client of each host in turn; "<host> (<why>)" for each host where it failed or
    returned a reason. An unreachable host is a failure like any other, never an exception."""
    failures = []
    for host in hosts:
        try:
            client = _client(host, timeout)
            try:
                reason = action(client)
            finally:
                client.close()
        except Exception as error:
            reason = _failure(error)
        if reason:
            failures.append(f"{host} ({reason})")
    return failures


def check_hosts(hosts: Sequence[str], timeout: float = 5.0) -> None:
    """Every host is live; raises FleetDeployError (nothing changed) naming the ones that are not."""
    # Live, not ready: with strict readiness one unready model (any model) makes a server "not ready", which
    # must not block deploying this one; its own readiness is checked after loading.
    down = on_each_host(hosts, timeout, lambda client: None if client.is_server_live() else "not live")
    if down:
        raise FleetDeployError(f"Triton host(s) down: {', '.join(down)}; nothing was deployed", restored=True)


def _load_and_verify(
    host: str, model: str, live: Sequence[int], probe: ParityProbe, ready_timeout: float
) -> HostResult:
    import tritonclient.http as triton_http

    started = time.monotonic()
    client = _client(host, ready_timeout)
    try:
        client.load_model(model)
        for version in live:
            while not client.is_model_ready(model, str(version)):
                if time.monotonic() - started > ready_timeout:
                    raise TimeoutError(f"version {version} not ready after {ready_timeout:g} s")
                time.sleep(0.1)
        load_seconds = time.monotonic() - started
        diffs = {}
        for version, expected in probe.expected.items():
            tensors = []
            for name, values in probe.inputs.items():
                tensor = triton_http.InferInput(name, list(values.shape), "BYTES" if values.dtype == object else "FP32")
                tensor.set_data_from_numpy(values)
                tensors.append(tensor)
            served = client.infer(model, tensors, model_version=str(version)).as_numpy(OUTPUT_NAME)[:, 0]
            diff = float(np.max(np.abs(served.astype(np.float64) - expected)))
            if not diff <= probe.tolerance:
                raise ValueError(
                    f"parity: version {version} serves predictions up to {diff:.3g} away from the offline "
                    f"ONNX predictions (tolerance {probe.tolerance:g})"
                )
            diffs[str(version)] = diff
        return HostResult(host=host, load_seconds=round(load_seconds, 3), parity_max_abs_diff=diffs)
    finally:
        client.close()


def deploy_to_fleet(
    s3: FactoryS3Hook,
    *,
    bucket: str,
    prefix: str,
    hosts: Sequence[str],
    model: str,
    live_versions: Sequence[int],
    signature: ModelSignature,
    onnx_of: Callable[[int], bytes],
    probe: ParityProbe,
    profile: Profile = "cpu-local",
    repository_config: RepositoryConfig | None = None,
    ready_timeout: float = 60.0,
) -> DeployReport:
    """Make every host serve exactly `live_versions` of `model`; `probe.expected` names the versions to verify.

    `onnx_of(version)` fetches a version's graph (from the registry) and is only called for versions whose
    folder is not in S3 yet. Idempotent: deploying the same live set again uploads nothing and reloads.
    """
    started = time.monotonic()
    if not hosts:
        raise FleetDeployError("the fleet has no Triton host: nothing to deploy to", restored=True)
    live = sorted(set(live_versions))
    check_hosts(hosts)
    stored = StoredFiles(s3, bucket, prefix, model)
    missing = [version for version in live if version not in stored.versions(model)]
    config = repository_config or RepositoryConfig()
    files: dict[str, bytes] = {}
    for version in missing:
        files |= build_model_repository(
            onnx_of(version), signature, model, version, live_versions=live, profile=profile, config=config
        )
    config_text = model_config_pbtxt(model, signature, live, profile, config).encode()
    files.pop(f"{model}/config.pbtxt", None)  # written below, after verification, and only then
    plan = upload(s3, bucket, prefix, stored, files)
    stored = StoredFiles(s3, bucket, prefix, model)
    try:
        verify_versions(stored, model, live)
    except ManifestMismatch as error:
        raise FleetDeployError(f"deploy refused, {error}", restored=True) from None
    previous_config = stored.config(model)
    write_config(s3, bucket, prefix, model, config_text)
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        futures = {host: pool.submit(_load_and_verify, host, model, live, probe, ready_timeout) for host in hosts}
    results, failures = [], []
    for host, future in futures.items():
        try:
            results.append(future.result())
        except Exception as error:
            failures.append(f"{host}: {_failure(error)}")
    if failures:
        _restore(s3, bucket, prefix, model, previous_config, hosts, ready_timeout, failures)
    return DeployReport(
        model=model,
        live_versions=live,
        introduced=sorted(probe.expected),
        uploaded=list(plan.writes),
        hosts=results,
        seconds=round(time.monotonic() - started, 3),
    )


def _restore(
    s3: FactoryS3Hook,
    bucket: str,
    prefix: str,
    model: str,
    previous_config: bytes | None,
    hosts: Sequence[str],
    timeout: float,
    failures: Sequence[str],
) -> None:
    if previous_config is None:  # nothing served before: unload what this deploy loaded
        unreachable = on_each_host(hosts, timeout, lambda client: client.unload_model(model))
    else:
        write_config(s3, bucket, prefix, model, previous_config)
        unreachable = on_each_host(hosts, timeout, lambda client: client.load_model(model))
    restored = (
        "restored the previous versions on every host"
        if not unreachable
        else (f"restored the previous versions; could not reach {', '.join(unreachable)}")
    )
    raise FleetDeployError(f"deploy of {model} failed on {'; '.join(failures)}; {restored}", restored=True)


def offline_probe(onnx_by_version: Mapping[int, bytes], inputs: dict[str, np.ndarray], tolerance: float) -> ParityProbe:
    """The parity probe: each version's graph run in-process by onnxruntime on `inputs`."""
    from pipelines.export.runtime import onnx_session

    expected = {}
    for version, graph in onnx_by_version.items():
        (probability,) = onnx_session(graph).run([OUTPUT_NAME], inputs)
        expected[version] = probability[:, 0].astype(np.float64)
    return ParityProbe(inputs=inputs, expected=expected, tolerance=tolerance)
