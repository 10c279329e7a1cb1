"""Split a frame by time into train / validation / test, and record exactly how.

Splits are by time, never random: the model is always evaluated on rows later than those it learned from, as
in production. The record holds the cut points and row counts so a run can be reproduced and audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd
from pydantic import AwareDatetime, BaseModel, ConfigDict

from pipelines.datasets.spec import DatasetSpec, TimeFractionsSplit

PART_NAMES: tuple[str, str, str] = ("train", "validation", "test")


class SplitRecord(BaseModel):
    """How a split was made: train < train_end <= validation < validation_end <= test."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["time_fractions", "time_boundaries"]
    time_column: str
    fractions: dict[str, float] | None
    data_start: AwareDatetime
    data_end: AwareDatetime
    train_end: AwareDatetime
    validation_end: AwareDatetime
    rows: dict[str, int]


@dataclass(frozen=True)
class TimeSplit:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    record: SplitRecord


def time_split(frame: pd.DataFrame, spec: DatasetSpec) -> TimeSplit:
    """Split `frame` by the spec's time rule; every part must get at least one row."""
    times = _time_values(frame, spec.time_column)
    data_start, data_end = times.min(), times.max()
    rule = spec.split
    if isinstance(rule, TimeFractionsSplit):
        span = data_end - data_start
        train_end = data_start + span * rule.train
        validation_end = data_start + span * (rule.train + rule.validation)
        fractions: dict[str, float] | None = {
            "train": rule.train,
            "validation": rule.validation,
            "test": rule.test,
        }
    else:
        train_end, validation_end = pd.Timestamp(rule.train_end), pd.Timestamp(rule.validation_end)
        fractions = None
    in_train = (times < train_end).to_numpy()
    in_test = (times >= validation_end).to_numpy()
    in_validation = ~in_train & ~in_test
    parts = {
        name: frame.loc[mask].reset_index(drop=True)
        for name, mask in zip(PART_NAMES, (in_train, in_validation, in_test), strict=True)
    }
    rows = {name: len(part) for name, part in parts.items()}
    empty = [name for name, count in rows.items() if count == 0]
    if empty:
        raise ValueError(
            f"time split ({rule.method}) leaves {empty} empty: data spans {data_start} to {data_end}, "
            f"cuts at {train_end} and {validation_end}"
        )
    record = SplitRecord(
        method=rule.method,
        time_column=spec.time_column,
        fractions=fractions,
        data_start=data_start.to_pydatetime(),
        data_end=data_end.to_pydatetime(),
        train_end=train_end.to_pydatetime(),
        validation_end=validation_end.to_pydatetime(),
        rows=rows,
    )
    return TimeSplit(record=record, **parts)


def _time_values(frame: pd.DataFrame, time_column: str) -> pd.Series:
    if time_column not in frame.columns:
        raise KeyError(f"time column {time_column!r} is missing; frame has {sorted(frame.columns)}")
    times = frame[time_column]
    if not isinstance(times.dtype, pd.DatetimeTZDtype):
        raise TypeError(f"time column {time_column!r} must hold timezone-aware timestamps, got {times.dtype}")
    if times.isna().any():
        raise ValueError(f"time column {time_column!r} has {int(times.isna().sum())} null values")
    if len(times) == 0:
        raise ValueError("cannot split an empty frame")
    return times
