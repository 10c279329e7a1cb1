"""Coalesce concurrent requests for the same target (model, version, pool) into shared Triton calls.

Why in the gateway when Triton batches dynamically anyway: every separate HTTP request costs Triton (and the
gateway) its parsing, scheduling and python-backend hand-off, whatever the batch it lands in. Measured on 2
cores at concurrency 16, that per-request cost is most of Triton's CPU time for a single-row model.

No added latency: while fewer than `max_inflight` calls to a target are out, a request is sent at once, alone
(at concurrency 1 nothing ever waits). Only when `max_inflight` calls are out do newcomers queue, and a call
that completes sends everything queued as ONE request (up to the model's max_batch_size rows): the batch size
grows with the load by itself, with no timer. Requests are validated before they get here, so one request
cannot make its batch fail; if Triton fails a batch, each request in it gets that error.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from serving.gateway.validation import ParsedRequest

# (merged columns, total rows) -> {output name: one entry per row}
BatchCall = Callable[[dict[str, list[Any]], int], Awaitable[dict[str, list[Any]]]]


@dataclass(frozen=True, slots=True)
class BatchedAnswer:
    outputs: dict[str, list[Any]]
    upstream_seconds: float  # the Triton call this request rode on
    batch_requests: int  # how many requests shared it


class Coalescer:
    def __init__(self, call: BatchCall, *, max_rows: int, max_inflight: int = 2) -> None:
        if max_inflight < 1 or max_rows < 1:
            raise ValueError("max_inflight and max_rows must be positive")
        self.call = call
        self.max_rows = max_rows
        self.max_inflight = max_inflight
        self.inflight = 0
        self._queue: deque[tuple[ParsedRequest, asyncio.Future[BatchedAnswer]]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def infer(self, request: ParsedRequest) -> BatchedAnswer:
        if self.inflight < self.max_inflight and not self._queue:
            self.inflight += 1
            try:
                (answer,) = await self._call([request])
                return answer
            finally:
                self.inflight -= 1
                self._drain()
        waiter: asyncio.Future[BatchedAnswer] = asyncio.get_running_loop().create_future()
        self._queue.append((request, waiter))
        self._drain()
        return await waiter

    def _drain(self) -> None:
        """Send what is queued, as few calls as the row limit allows, while call slots are free."""
        while self._queue and self.inflight < self.max_inflight:
            batch = [self._queue.popleft()]
            rows = batch[0][0].rows
            while self._queue and rows + self._queue[0][0].rows <= self.max_rows:
                rows += self._queue[0][0].rows
                batch.append(self._queue.popleft())
            self.inflight += 1
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[ParsedRequest, asyncio.Future[BatchedAnswer]]]) -> None:
        try:
            answers = await self._call([request for request, _ in batch])
        except BaseException as error:  # every waiter gets the batch's failure
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(error)
            if not isinstance(error, Exception):
                raise
        else:
            for (_, waiter), answer in zip(batch, answers, strict=True):
                if not waiter.done():
                    waiter.set_result(answer)
        finally:
            self.inflight -= 1
            self._drain()

    async def _call(self, requests: Sequence[ParsedRequest]) -> list[BatchedAnswer]:
        if len(requests) == 1:
            columns, rows = requests[0].columns, requests[0].rows
        else:
            columns = {name: [value for request in requests for value in request.columns[name]]
                       for name in requests[0].columns}  # fmt: skip
            rows = sum(request.rows for request in requests)
        started = time.perf_counter()
        outputs = await self.call(columns, rows)
        elapsed = time.perf_counter() - started
        if len(requests) == 1:
            return [BatchedAnswer(outputs, elapsed, 1)]
        answers = []
        offset = 0
        for request in requests:
            end = offset + request.rows
            answers.append(
                BatchedAnswer({name: values[offset:end] for name, values in outputs.items()}, elapsed, len(requests))
            )
            offset = end
        return answers
