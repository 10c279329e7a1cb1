"""`factory replay`: send a later window of the demo flights through the serving gateway, then land its labels.

The plan (which rows, their stable request ids, the labels) is `pipelines.monitoring.replay`; this module only
does the I/O: one POST per row to `/v1/models/<model>/predict` with the bearer token and `X-Request-Id`, and
one create-only Parquet object of labels in the feedback landing area. Retry-safe: a request that failed with
a connection error or a 5xx is retried with the same id (the gateway logs only answered requests), 4xx
answers are reported and not retried (the row itself is wrong), and a label batch already in S3 is left
as it is.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from pipelines.monitoring.replay import ReplayPlan, ReplayRequest, label_frame, label_object_key, paced_offsets

RETRIED_STATUSES = frozenset({502, 503, 504})


@dataclass
class ReplayResult:
    """What a replay did: answered requests by served version, failures by reason, the label object."""

    requested: int = 0
    answered: int = 0
    versions: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    labels: int = 0
    labels_key: str | None = None
    labels_written: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "answered": self.answered,
            "versions": dict(self.versions),
            "failures": dict(self.failures),
            "retries": self.retries,
            "labels": self.labels,
            "labels_key": self.labels_key,
            "labels_written": self.labels_written,
            "seconds": round(self.seconds, 3),
        }


def send_requests(
    client: httpx.Client,
    model: str,
    requests: list[ReplayRequest],
    *,
    rate: float | None = None,
    attempts: int = 3,
    result: ReplayResult | None = None,
) -> ReplayResult:
    """POST each request (paced at `rate` per second if given); retries keep the request id."""
    result = result or ReplayResult()
    started = time.monotonic()
    for request, due in zip(requests, paced_offsets(len(requests), rate), strict=True):
        wait = started + float(due) - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        result.requested += 1
        for attempt in range(1, attempts + 1):
            outcome = _post(client, model, request)
            if isinstance(outcome, str) and attempt < attempts and _retriable(outcome):
                result.retries += 1
                time.sleep(0.2 * 2 ** (attempt - 1))
                continue
            break
        if isinstance(outcome, str):
            result.failures[outcome] += 1
        else:
            result.answered += 1
            result.versions[str(outcome.get("version"))] += 1
    result.seconds += time.monotonic() - started
    return result


def _post(client: httpx.Client, model: str, request: ReplayRequest) -> dict[str, Any] | str:
    """The answer's JSON, or a failure reason ("503", "ConnectError")."""
    try:
        response = client.post(
            f"/v1/models/{model}/predict", json=request.body, headers={"X-Request-Id": request.request_id}
        )
    except httpx.HTTPError as error:
        return type(error).__name__
    if response.status_code != 200:
        return str(response.status_code)
    return response.json()


def _retriable(reason: str) -> bool:
    return not reason.isdigit() or int(reason) in RETRIED_STATUSES


def write_labels(s3: Any, bucket: str, model: str, plan: ReplayPlan, label_time: datetime) -> tuple[str, bool]:
    """Land the plan's labels as one create-only object; (key, written). Same labels, same day: same key,
    nothing written twice."""
    from botocore.exceptions import ClientError

    from pipelines.monitoring.inference_log import encode_parquet

    frame = label_frame(plan.labels, label_time)
    key = label_object_key(model, plan.labels, label_time)
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=encode_parquet(frame), IfNoneMatch="*")
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
            return key, False
        raise
    return key, True


def replay(
    *,
    gateway_url: str,
    token: str,
    model: str,
    plan: ReplayPlan,
    s3: Any = None,
    bucket: str = "factory-data",
    rate: float | None = None,
    with_labels: bool = False,
    label_time: datetime | None = None,
    timeout: float = 30.0,
) -> ReplayResult:
    """Send the plan's requests; with `with_labels`, then land its labels (they arrive after the predictions)."""
    result = ReplayResult()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=gateway_url, headers=headers, timeout=timeout) as client:
        send_requests(client, model, plan.requests, rate=rate, result=result)
    if with_labels:
        if s3 is None:
            raise ValueError("landing labels needs an S3 client")
        result.labels = len(plan.labels)
        result.labels_key, result.labels_written = write_labels(
            s3, bucket, model, plan, label_time or datetime.now(UTC)
        )
    return result


class BackgroundTraffic:
    """A client replaying `requests` through the gateway in a thread, in paced chunks, until stopped (or the
    requests run out): production-like load while a rollout watches the gateway (the main job, benchmarks)."""

    def __init__(
        self, *, gateway_url: str, token: str, model: str, requests: list[ReplayRequest], rate: float, chunk: int = 50
    ) -> None:
        import threading

        self._client = httpx.Client(base_url=gateway_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        self._model, self._requests, self._rate, self._chunk = model, requests, rate, chunk
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="background-traffic", daemon=True)
        self.result = ReplayResult()

    def __enter__(self) -> BackgroundTraffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self._client.close()

    def _run(self) -> None:
        for offset in range(0, len(self._requests), self._chunk):
            if self._stop.is_set():
                return
            chunk = self._requests[offset : offset + self._chunk]
            send_requests(self._client, self._model, chunk, rate=self._rate, result=self.result)


def run_replay_command(
    stack: Any,
    *,
    model: str,
    start: datetime,
    end: datetime,
    rate: float | None,
    with_labels: bool,
    dataset_spec: Path,
) -> int:
    """The CLI: plan the window from the demo flights, replay it through the stack's gateway, print a summary."""
    import json

    from factory.stack import s3_client
    from pipelines.datasets.demo import load_demo_flights
    from pipelines.datasets.spec import load_dataset_spec
    from pipelines.monitoring.replay import plan_replay

    spec = load_dataset_spec(dataset_spec)
    plan = plan_replay(load_demo_flights(), spec, start, end)
    if not plan.requests:
        print(f"factory replay: no {spec.name} rows in [{start.isoformat()}, {end.isoformat()})")
        return 1
    settings, creds = stack.settings, stack.credentials
    result = replay(
        gateway_url=settings.gateway_url, token=creds.gateway_token, model=model, plan=plan,
        s3=s3_client(settings, creds) if with_labels else None, bucket=settings.data_bucket, rate=rate,
        with_labels=with_labels,
    )  # fmt: skip
    print(json.dumps(result.as_dict(), indent=2))
    return 0 if result.answered == result.requested else 1
