"""Validate one extracted frame against its dataset spec, with either engine, into a `ValidationReport`.

`fast` (the default) evaluates every check in one vectorized pass and imports nothing heavy; `gx` runs the
same checks through Great Expectations. Both give the same verdicts (held to it by the unit tests and
`benchmarks/validation_gx_vs_fast.py`), so the choice is about speed, not about what is checked.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

import pandas as pd

from pipelines.datasets.spec import DatasetSpec
from pipelines.validation.checks import Check, Evaluation, FrameColumns, build_checks
from pipelines.validation.report import ValidationReport

Engine = Literal["fast", "gx"]


def evaluate_fast(frame: pd.DataFrame, checks: Sequence[Check]) -> dict[str, Evaluation]:
    """Every check's evaluation, keyed by check name, sharing per-column work across checks."""
    columns = FrameColumns(frame)
    return {check.name: check.evaluate(columns) for check in checks}


def validate_frame(
    frame: pd.DataFrame,
    spec: DatasetSpec,
    *,
    interval_end: datetime,
    engine: Engine = "fast",
    snapshot_id: str | None = None,
) -> ValidationReport:
    """Run the spec's full suite on `frame`, extracted for an interval ending at `interval_end`."""
    checks = build_checks(spec, interval_end=interval_end)
    validated_at = datetime.now(UTC)
    started = time.perf_counter()
    if engine == "fast":
        evaluations = evaluate_fast(frame, checks)
    elif engine == "gx":
        from pipelines.validation.gx_engine import evaluate_with_gx

        evaluations = evaluate_with_gx(frame, checks, suite_name=spec.name)
    else:
        raise ValueError(f"unknown validation engine {engine!r}; use 'fast' or 'gx'")
    return ValidationReport(
        dataset=spec.name,
        spec_version=spec.version,
        engine=engine,
        interval_end=interval_end,
        row_count=len(frame),
        snapshot_id=snapshot_id,
        validated_at=validated_at,
        duration_seconds=time.perf_counter() - started,
        checks=[check.to_result(evaluations[check.name]) for check in checks],
    )
