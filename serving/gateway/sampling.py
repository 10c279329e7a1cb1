"""Sample requests + predictions (and every shadow comparison) to S3 for monitoring, off the request path.

The request path only appends a record to a list. A background task flushes the list every `max_interval`
seconds or `max_records` records: records are grouped by model and kind and each group becomes one Parquet
object (one row per predicted row, inputs and outputs as columns, with the request id), encoded and uploaded
in a worker thread, so neither encoding nor S3 latency reaches a client. Parquet because the monitoring jobs
read these as frames (the drift profiles are columnar); keys are partitioned by model, kind and date:

    <prefix>/<model>/<kind>/date=YYYY-MM-DD/<HHMMSS>-<replica>-<seq>.parquet      kind: predictions | shadow

Objects are written once (IfNoneMatch="*"; a retry of an upload that did land is recognised, not duplicated).
A failed upload is logged with its key and record count and retried at the next flush; batches waiting for
retry are bounded, and when that bound (or shutdown) forces a batch out it is logged as an ERROR with the
number of records lost: never silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from serving.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PredictionRecord:
    request_id: str
    timestamp: float  # unix seconds
    model: str
    version: int
    route: str
    pool: str
    latency_ms: float  # Triton round trip
    rows: int
    inputs: dict[str, list[Any]]
    outputs: dict[str, list[Any]]


@dataclass(slots=True)
class ShadowRecord:
    request_id: str
    timestamp: float
    model: str
    rows: int
    primary_version: int
    primary_pool: str
    primary_latency_ms: float
    primary_outputs: dict[str, list[Any]]
    shadow_version: int
    shadow_pool: str
    shadow_latency_ms: float | None
    shadow_outputs: dict[str, list[Any]] | None
    max_abs_diff: float | None
    error: str | None
    inputs: dict[str, list[Any]] = field(default_factory=dict)


class SampleSink(Protocol):
    """Where batches go; `put` runs in a worker thread and raises on failure."""

    def put(self, key: str, body: bytes) -> None: ...

    def describe(self) -> str: ...


class S3Sink:
    """Write-once objects in an S3 bucket (credentials from the standard AWS_* environment)."""

    def __init__(self, bucket: str, endpoint_url: str | None = None, region: str = "us-east-1") -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=3, read_timeout=10),
        )

    def put(self, key: str, body: bytes) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
        except ClientError as error:
            # Our keys are unique per replica and batch: an existing object is this batch, landed by an attempt
            # whose answer was lost.
            if error.response.get("Error", {}).get("Code") != "PreconditionFailed":
                raise

    def describe(self) -> str:
        return f"s3://{self.bucket} at {self.endpoint_url or 'AWS'}"


class DirectorySink:
    """Objects as files under a directory (development without S3); written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, key: str, body: bytes) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_bytes(body)
        os.replace(temporary, target)

    def describe(self) -> str:
        return f"directory {self.root}"


@dataclass(slots=True)
class _Batch:
    key: str
    kind: str
    records: int
    body: bytes
    attempts: int = 0


class RequestSampler:
    def __init__(
        self,
        sink: SampleSink,
        *,
        prefix: str,
        share: float,
        replica_id: str,
        metrics: GatewayMetrics,
        max_records: int = 2_000,
        max_interval: float = 10.0,
        max_pending_batches: int = 50,
    ) -> None:
        if not 0 <= share <= 1:
            raise ValueError(f"sample share must be within [0, 1], got {share}")
        self.sink = sink
        self.prefix = prefix.strip("/")
        self.share = share
        self.replica_id = replica_id
        self.metrics = metrics
        self.max_records = max_records
        self.max_interval = max_interval
        self.max_pending_batches = max_pending_batches
        self._predictions: list[PredictionRecord] = []
        self._shadows: list[ShadowRecord] = []
        self._pending: deque[_Batch] = deque()
        self._sequence = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # ----- request path: O(1), no I/O -------------------------------------------------------------------------
    def wants(self) -> bool:
        return self.share >= 1 or (self.share > 0 and random.random() < self.share)

    def add_prediction(self, record: PredictionRecord) -> None:
        self._predictions.append(record)
        if len(self._predictions) >= self.max_records:
            self._wake.set()

    def add_shadow(self, record: ShadowRecord) -> None:
        self._shadows.append(record)
        if len(self._shadows) >= self.max_records:
            self._wake.set()

    # ----- background -----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="request-sampler")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.max_interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # the sampler must never die quietly; the next flush retries
                log.exception("request sampler: flush failed")

    async def close(self, timeout: float = 20.0) -> None:
        """Stop the background task and flush what is left; report (ERROR) whatever could not be written."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except TimeoutError:
            log.error("request sampler: final flush did not finish within %g s", timeout)
        lost = sum(batch.records for batch in self._pending) + len(self._predictions) + len(self._shadows)
        if lost:
            log.error(
                "request sampler: %d sampled records could not be written to %s and are lost "
                "(%d batches pending: %s)",
                lost, self.sink.describe(), len(self._pending), [batch.key for batch in self._pending],
            )  # fmt: skip

    async def flush(self) -> int:
        """Encode what was sampled since the last flush and upload it with any batch waiting for a retry.
        Returns the number of records written."""
        async with self._lock:
            predictions, self._predictions = self._predictions, []
            shadows, self._shadows = self._shadows, []
            if predictions or shadows:
                batches = await asyncio.to_thread(self._encode, predictions, shadows)
                self._pending.extend(batches)
            written = 0
            for _ in range(len(self._pending)):
                batch = self._pending.popleft()
                try:
                    await asyncio.to_thread(self.sink.put, batch.key, batch.body)
                except Exception as error:
                    batch.attempts += 1
                    self.metrics.sample_write_errors.inc()
                    log.error(
                        "request sampler: writing %s (%d %s records, attempt %d) to %s failed: %s; will retry",
                        batch.key, batch.records, batch.kind, batch.attempts, self.sink.describe(), error,
                    )  # fmt: skip
                    self._pending.append(batch)
                    continue
                written += batch.records
                self.metrics.samples.labels(batch.kind, "written").inc(batch.records)
            while len(self._pending) > self.max_pending_batches:
                dropped = self._pending.popleft()
                self.metrics.samples.labels(dropped.kind, "dropped").inc(dropped.records)
                log.error(
                    "request sampler: dropping batch %s (%d %s records) after %d failed attempts: more than %d "
                    "batches are waiting for %s",
                    dropped.key, dropped.records, dropped.kind, dropped.attempts, self.max_pending_batches,
                    self.sink.describe(),
                )  # fmt: skip
            return written

    @property
    def pending_records(self) -> int:
        return sum(batch.records for batch in self._pending) + len(self._predictions) + len(self._shadows)

    # ----- encoding (worker thread) ---------------------------------------------------------------------------
    def _encode(self, predictions: list[PredictionRecord], shadows: list[ShadowRecord]) -> list[_Batch]:
        batches = []
        for kind, records in (("predictions", predictions), ("shadow", shadows)):
            by_model: dict[str, list[Any]] = {}
            for record in records:
                by_model.setdefault(record.model, []).append(record)
            for model, group in sorted(by_model.items()):
                table = prediction_table(group) if kind == "predictions" else shadow_table(group)
                buffer = io.BytesIO()
                pq.write_table(table, buffer, compression="zstd")
                self._sequence += 1
                now = datetime.now(UTC)
                key = (
                    f"{self.prefix}/{model}/{kind}/date={now:%Y-%m-%d}/"
                    f"{now:%H%M%S}-{self.replica_id}-{self._sequence:06d}.parquet"
                )
                batches.append(_Batch(key, kind, len(group), buffer.getvalue()))
        return batches


def _per_row(values: list[Any], rows: int) -> list[Any]:
    """Flat row-major values -> one entry per row (lists when a row holds several values)."""
    if len(values) == rows:
        return values
    width = len(values) // rows
    return [values[row * width : (row + 1) * width] for row in range(rows)]


def _common(records: list[Any]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {"request_id": [], "row": [], "timestamp": []}
    for record in records:
        columns["request_id"].extend([record.request_id] * record.rows)
        columns["row"].extend(range(record.rows))
        columns["timestamp"].extend([datetime.fromtimestamp(record.timestamp, UTC)] * record.rows)
    return columns


def _add_tensors(
    columns: dict[str, list[Any]], records: list[Any], attribute: str, prefix: str = "", names_from: str = ""
) -> None:
    """One column per tensor name (`names_from`: take the names from another attribute, so a batch of failed
    shadow calls still has its shadow columns, all null)."""
    names: list[str] = []
    for record in records:
        for name in getattr(record, names_from or attribute) or {}:
            if name not in names:
                names.append(name)
    for name in names:
        column: list[Any] = []
        for record in records:
            tensors = getattr(record, attribute) or {}
            values = tensors.get(name)
            column.extend([None] * record.rows if values is None else _per_row(list(values), record.rows))
        columns[f"{prefix}{name}"] = column


def _repeat(records: list[Any], attribute: str) -> list[Any]:
    return [value for record in records for value in [getattr(record, attribute)] * record.rows]


def prediction_table(records: list[PredictionRecord]) -> pa.Table:
    columns = _common(records)
    for attribute in ("model", "version", "route", "pool", "latency_ms"):
        columns[attribute] = _repeat(records, attribute)
    _add_tensors(columns, records, "inputs")
    _add_tensors(columns, records, "outputs")
    return pa.table(columns)


def shadow_table(records: list[ShadowRecord]) -> pa.Table:
    columns = _common(records)
    for attribute in (
        "model", "primary_version", "primary_pool", "primary_latency_ms", "shadow_version", "shadow_pool",
        "shadow_latency_ms", "max_abs_diff", "error",
    ):  # fmt: skip
        columns[attribute] = _repeat(records, attribute)
    _add_tensors(columns, records, "inputs")
    _add_tensors(columns, records, "primary_outputs", "primary_")
    _add_tensors(columns, records, "shadow_outputs", "shadow_", names_from="primary_outputs")
    return pa.table(columns)
