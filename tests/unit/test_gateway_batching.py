"""Coalescing of concurrent requests into shared Triton calls. The "Triton" here is an in-process async function
computing a known answer per row (probability = dep_delay / 100), so which rows came back to which request is
checkable; the real Triton path is in tests/integration/test_gateway.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from serving.gateway.batching import Coalescer
from serving.gateway.kserve import InferenceError
from serving.gateway.validation import ParsedRequest


class Model:
    """Records every call; answers dep_delay / 100 per row after `delay` seconds (or fails on demand)."""

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.calls: list[int] = []  # rows per call
        self.fail = False

    async def __call__(self, columns: dict[str, list[Any]], rows: int) -> dict[str, list[Any]]:
        self.calls.append(rows)
        await asyncio.sleep(self.delay)
        if self.fail:
            raise InferenceError(503, "Triton refused the batch")
        assert all(len(values) == rows for values in columns.values())
        return {"probability": [value / 100 for value in columns["dep_delay"]]}


def request(*delays: float) -> ParsedRequest:
    return ParsedRequest({"dep_delay": list(delays), "carrier": ["UA"] * len(delays)}, len(delays), None)


def test_requests_one_after_another_are_never_held() -> None:
    async def scenario() -> None:
        model = Model(delay=0)
        coalescer = Coalescer(model, max_rows=64, max_inflight=1)
        for n in range(5):
            answer = await coalescer.infer(request(float(n)))
            assert answer.outputs == {"probability": [n / 100]} and answer.batch_requests == 1
        assert model.calls == [1] * 5

    asyncio.run(scenario())


def test_concurrent_requests_share_calls_and_each_gets_its_own_rows() -> None:
    async def scenario() -> None:
        model = Model()
        coalescer = Coalescer(model, max_rows=64, max_inflight=1)
        requests = [request(*[float(10 * n + row) for row in range(n % 3 + 1)]) for n in range(10)]

        answers = await asyncio.gather(*(coalescer.infer(r) for r in requests))

        for parsed, answer in zip(requests, answers, strict=True):
            assert answer.outputs["probability"] == [value / 100 for value in parsed.columns["dep_delay"]]
        assert model.calls == [1, sum(r.rows for r in requests[1:])]  # the first alone, the other nine together
        assert [answer.batch_requests for answer in answers] == [1] + [9] * 9
        assert coalescer.inflight == 0 and coalescer.queued == 0

    asyncio.run(scenario())


def test_free_call_slots_are_used_before_anything_waits() -> None:
    async def scenario() -> None:
        model = Model()
        coalescer = Coalescer(model, max_rows=64, max_inflight=4)

        await asyncio.gather(*(coalescer.infer(request(float(n))) for n in range(4)))

        assert model.calls == [1, 1, 1, 1]

    asyncio.run(scenario())


def test_a_shared_call_never_exceeds_the_models_row_limit() -> None:
    async def scenario() -> None:
        model = Model()
        coalescer = Coalescer(model, max_rows=5, max_inflight=1)

        answers = await asyncio.gather(*(coalescer.infer(request(float(n), float(n))) for n in range(7)))

        assert max(model.calls) <= 5 and sum(model.calls) == 14
        assert [answer.outputs["probability"] for answer in answers] == [[n / 100, n / 100] for n in range(7)]

    asyncio.run(scenario())


def test_a_failed_call_fails_each_of_its_requests_and_the_next_ones_proceed() -> None:
    async def scenario() -> None:
        model = Model()
        coalescer = Coalescer(model, max_rows=64, max_inflight=1)
        model.fail = True

        results = await asyncio.gather(*(coalescer.infer(request(float(n))) for n in range(4)), return_exceptions=True)

        assert all(isinstance(result, InferenceError) and result.status == 503 for result in results)
        model.fail = False
        assert (await coalescer.infer(request(50.0))).outputs == {"probability": [0.5]}
        assert coalescer.inflight == 0

    asyncio.run(scenario())


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        Coalescer(Model(), max_rows=0)
