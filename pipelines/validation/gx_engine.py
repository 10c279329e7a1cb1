"""Run the checks through Great Expectations itself: the system of record, and the reference the fast path is
held to.

The suite is built from the same `Check` objects as the fast path, run on an ephemeral context over the
in-memory frame, and its results are read back into the checks' shared result vocabulary by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from pipelines.validation._gx import ephemeral_context, gx
from pipelines.validation.checks import Check, Evaluation

DEFAULT_RESULT_FORMAT = "SUMMARY"
"""GX's own default: counts plus a sample of unexpected values (what the reference timing measures)."""


def build_gx_suite(checks: Sequence[Check], name: str) -> gx.ExpectationSuite:
    """The GX suite for these checks; each expectation carries its check name in `meta["check"]`."""
    return gx.ExpectationSuite(name=name, expectations=[check.expectation() for check in checks])


def evaluate_with_gx(
    frame: pd.DataFrame,
    checks: Sequence[Check],
    *,
    suite_name: str,
    result_format: str = DEFAULT_RESULT_FORMAT,
) -> dict[str, Evaluation]:
    """Validate `frame` with GX and return each check's evaluation, keyed by check name."""
    context = ephemeral_context()
    batch = (
        context.data_sources.add_pandas(name="factory")
        .add_dataframe_asset(name=suite_name)
        .add_batch_definition_whole_dataframe(name="whole_frame")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    suite_result = batch.validate(build_gx_suite(checks, suite_name), result_format=result_format)
    evaluations = {
        result.expectation_config.meta["check"]: Evaluation(
            success=bool(result.success),
            result=dict(result.result or {}),
            error=_exception_message(result.exception_info),
        )
        for result in suite_result.results
    }
    missing = [check.name for check in checks if check.name not in evaluations]
    if missing:
        raise RuntimeError(f"GX returned no result for checks {missing}")
    return evaluations


def _exception_message(exception_info: dict[str, Any] | None) -> str | None:
    """GX nests exception info per metric when a metric fails to resolve; take the first message found."""
    if not exception_info:
        return None
    if "raised_exception" in exception_info:
        return exception_info.get("exception_message") if exception_info["raised_exception"] else None
    for nested in exception_info.values():
        if isinstance(nested, dict) and nested.get("raised_exception"):
            return nested.get("exception_message")
    return None
