"""Derive the label a spec asks for (e.g. `delayed = arr_delay > 15`).

Rows whose label source is null (a cancelled flight has no arrival delay) have no label: they are dropped, and
the count is reported, because a silent drop would hide an extraction problem behind a smaller training set.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import pandas as pd
from pydantic import BaseModel, ConfigDict

from pipelines.datasets.spec import DatasetSpec

_COMPARISONS: dict[str, Callable[[pd.Series, float], pd.Series]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
}


class TargetReport(BaseModel):
    """What deriving the label did to the frame; recorded with the run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    rule: str
    rows_in: int
    rows_dropped_null_source: int
    rows_out: int
    positive_rate: float | None


def apply_target(frame: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, TargetReport]:
    """Return the labelled rows (label as int8 0/1, fresh index) and what was done."""
    target = spec.target
    if target.source_column not in frame.columns:
        raise KeyError(f"target source column {target.source_column!r} is missing; frame has {sorted(frame.columns)}")
    source = frame[target.source_column]
    if not pd.api.types.is_numeric_dtype(source) or pd.api.types.is_bool_dtype(source):
        raise TypeError(f"target source column {target.source_column!r} must be numeric, got {source.dtype}")
    known = source.notna().to_numpy()
    labelled = frame.loc[known].reset_index(drop=True)
    labels = _COMPARISONS[target.operator](labelled[target.source_column], target.threshold)
    labelled[target.name] = labels.astype("int8")
    report = TargetReport(
        label=target.name,
        rule=f"{target.source_column} {target.operator} {target.threshold:g}",
        rows_in=len(frame),
        rows_dropped_null_source=int((~known).sum()),
        rows_out=len(labelled),
        positive_rate=float(labelled[target.name].mean()) if len(labelled) else None,
    )
    return labelled, report
