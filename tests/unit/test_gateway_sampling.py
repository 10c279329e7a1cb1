"""Gateway request sampling: Parquet batches per model and kind, and failed writes that are retried and, when they
must be given up, reported (never lost silently). The sink is a real directory; a failing sink is a directory
whose place is taken by a file, which the filesystem refuses to write under."""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from serving.gateway.metrics import GatewayMetrics
from serving.gateway.sampling import DirectorySink, PredictionRecord, RequestSampler, ShadowRecord


def prediction(request_id: str, model: str = "flights", rows: int = 2) -> PredictionRecord:
    return PredictionRecord(
        request_id=request_id, timestamp=1_700_000_000.0, model=model, version=3, route="champion", pool="blue",
        latency_ms=1.5, rows=rows,
        inputs={"dep_delay": [1.0, math.nan][:rows], "carrier": ["UA", ""][:rows]},
        outputs={"probability": [0.25, 0.75][:rows]},
    )  # fmt: skip


def shadow(request_id: str) -> ShadowRecord:
    return ShadowRecord(
        request_id=request_id, timestamp=1_700_000_000.0, model="flights", rows=1, primary_version=3,
        primary_pool="blue", primary_latency_ms=1.0, primary_outputs={"probability": [0.25]}, shadow_version=4,
        shadow_pool="blue", shadow_latency_ms=None, shadow_outputs=None, max_abs_diff=None,
        error="Triton refused flights v4", inputs={"dep_delay": [1.0], "carrier": ["UA"]},
    )  # fmt: skip


def sampler_for(sink_root: Path, **options: object) -> RequestSampler:
    return RequestSampler(
        DirectorySink(sink_root), prefix="samples", share=1.0, replica_id="r1", metrics=GatewayMetrics(), **options
    )  # type: ignore[arg-type]


def read_all(root: Path) -> dict[str, pd.DataFrame]:
    return {str(path.relative_to(root)): pq.read_table(path).to_pandas() for path in sorted(root.rglob("*.parquet"))}


def test_records_become_one_parquet_object_per_model_and_kind(tmp_path: Path) -> None:
    sampler = sampler_for(tmp_path)
    sampler.add_prediction(prediction("a"))
    sampler.add_prediction(prediction("b", rows=1))
    sampler.add_prediction(prediction("c", model="other"))
    sampler.add_shadow(shadow("a"))

    written = asyncio.run(sampler.flush())

    objects = read_all(tmp_path)
    assert written == 4
    assert sorted(key.split("/date=")[0] for key in objects) == [
        "samples/flights/predictions", "samples/flights/shadow", "samples/other/predictions",
    ]  # fmt: skip
    flights = next(frame for key, frame in objects.items() if key.startswith("samples/flights/predictions"))
    assert flights["request_id"].tolist() == ["a", "a", "b"]
    assert flights["row"].tolist() == [0, 1, 0]
    assert flights["carrier"].tolist() == ["UA", "", "UA"]
    assert flights["probability"].tolist() == [0.25, 0.75, 0.25]
    assert math.isnan(flights["dep_delay"][1])
    assert (flights["version"] == 3).all() and (flights["route"] == "champion").all()
    shadows = next(frame for key, frame in objects.items() if "/shadow/" in key)
    assert shadows.loc[0, "primary_probability"] == 0.25 and pd.isna(shadows.loc[0, "shadow_probability"])
    assert shadows.loc[0, "error"] == "Triton refused flights v4"
    assert sampler.pending_records == 0


def test_a_failed_write_is_logged_kept_and_retried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "sink"
    blocked.write_text("a file where the sink's directory should be")
    sampler = sampler_for(blocked)
    sampler.add_prediction(prediction("a"))

    with caplog.at_level(logging.ERROR, logger="serving.gateway.sampling"):
        assert asyncio.run(sampler.flush()) == 0

    assert "1 predictions records, attempt 1" in caplog.text and "will retry" in caplog.text
    assert sampler.pending_records == 1
    blocked.unlink()  # S3 is back
    assert asyncio.run(sampler.flush()) == 1
    assert [frame["request_id"].tolist() for frame in read_all(blocked).values()] == [["a", "a"]]
    assert sampler.pending_records == 0


def test_batches_beyond_the_retry_bound_are_dropped_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "sink"
    blocked.write_text("not a directory")
    sampler = sampler_for(blocked, max_pending_batches=2)

    with caplog.at_level(logging.ERROR, logger="serving.gateway.sampling"):
        for number in range(3):
            sampler.add_prediction(prediction(f"r{number}"))
            asyncio.run(sampler.flush())

    assert "dropping batch" in caplog.text and "(1 predictions records)" in caplog.text
    assert sampler.pending_records == 2
    dropped = sampler.metrics.samples.labels("predictions", "dropped")._value.get()
    assert dropped == 1


def test_closing_reports_what_could_not_be_written(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "sink"
    blocked.write_text("not a directory")

    async def scenario() -> RequestSampler:
        sampler = sampler_for(blocked)
        sampler.start()
        sampler.add_prediction(prediction("a"))
        sampler.add_shadow(shadow("b"))
        await sampler.close(timeout=5)
        return sampler

    with caplog.at_level(logging.ERROR, logger="serving.gateway.sampling"):
        asyncio.run(scenario())

    assert "2 sampled records could not be written" in caplog.text


def test_the_background_task_flushes_on_its_interval(tmp_path: Path) -> None:
    async def scenario() -> None:
        sampler = sampler_for(tmp_path, max_interval=0.05)
        sampler.start()
        sampler.add_prediction(prediction("a"))
        await asyncio.sleep(0.5)
        assert read_all(tmp_path)
        await sampler.close()

    asyncio.run(scenario())


def test_the_share_is_respected() -> None:
    sampler = RequestSampler(DirectorySink(Path("/unused")), prefix="p", share=0.2, replica_id="r",
                             metrics=GatewayMetrics())  # fmt: skip

    chosen = sum(sampler.wants() for _ in range(20_000))

    assert chosen / 20_000 == pytest.approx(0.2, abs=0.015)
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        RequestSampler(DirectorySink(Path("/unused")), prefix="p", share=1.5, replica_id="r", metrics=GatewayMetrics())
