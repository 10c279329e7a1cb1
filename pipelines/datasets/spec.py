"""The dataset spec: everything the factory needs to know about one tabular dataset, in one YAML file.

Onboarding a new dataset means writing a spec, not code: where the rows come from, how the label is derived,
which columns are features, which slices get their own metrics, how time splits the data, what the data must
look like, and which business number to watch. The spec is validated on load so a typo fails at the door,
naming the file and the field, instead of deep inside a training run.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from pydantic import AwareDatetime, Field, field_validator, model_validator

from pipelines.config_loading import StrictModel, load_yaml_model
from pipelines.datasets.expectations import NUMERIC_TYPES, ExpectationsSpec
from pipelines.features import FeatureSpec

# Bucket names as S3 allows them (3-63 characters); then zero or more non-empty folder segments, each ending in /.
_S3_PREFIX = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/(?:[^/]+/)*")


class DatasetSpecError(ValueError):
    """A dataset spec file that cannot be used; the message names the file and every offending field."""


class TimeInterval(StrictModel):
    """A half-open interval [start, end) of timezone-aware times."""

    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _check_order(self) -> TimeInterval:
        if self.start >= self.end:
            raise ValueError(f"interval start {self.start} is not before end {self.end}")
        return self


class FileSourceSpec(StrictModel):
    """Files in S3 holding the same rows as the table: every object under `uri_prefix` (sub-folders included)
    whose name ends with the format's extension. Producers drop files there; which file holds which time range
    does not matter, the time column decides."""

    uri_prefix: str = Field(description="'s3://bucket/prefix/', ending in '/'; 's3://bucket/' is the whole bucket")
    format: Literal["parquet", "csv"]

    @field_validator("uri_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _S3_PREFIX.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an S3 folder URI like 's3://bucket/prefix/' (lower-case bucket name, "
                "no empty path segment, ending in '/')"
            )
        return value

    @property
    def bucket(self) -> str:
        return self.uri_prefix.removeprefix("s3://").split("/", 1)[0]

    @property
    def key_prefix(self) -> str:
        """The key prefix inside the bucket ('' for the whole bucket)."""
        return self.uri_prefix.removeprefix("s3://").split("/", 1)[1]

    @property
    def extension(self) -> str:
        return f".{self.format}"


class SourceSpec(StrictModel):
    """Where rows come from: a table in the operational database (the default source), ordered by
    `time_column`, and optionally the same rows as files in S3 (`files`)."""

    table: str = Field(min_length=1)
    time_column: str = Field(min_length=1)
    key_columns: list[str] = Field(
        default_factory=list,
        description="With the time column, identify a row; they fix the row order of snapshots.",
    )
    files: FileSourceSpec | None = None


class TargetSpec(StrictModel):
    """The label is derived from a raw column: `name = source_column <operator> threshold`."""

    name: str = Field(min_length=1)
    source_column: str = Field(min_length=1)
    operator: Literal[">", ">=", "<", "<=", "=="]
    threshold: float


class _SplitBase(StrictModel):
    initial_interval: TimeInterval | None = Field(
        default=None,
        description="The interval the first model is trained on; later data is the production stream.",
    )


class TimeFractionsSplit(_SplitBase):
    """Cut the time span [min, max] of the extracted rows by fractions of its length (not of its rows).

    Works for any window, so retraining on a later interval needs no spec change.
    """

    method: Literal["time_fractions"]
    train: float = Field(gt=0.0, lt=1.0)
    validation: float = Field(gt=0.0, lt=1.0)
    test: float = Field(gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check_sum(self) -> TimeFractionsSplit:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"train + validation + test must be 1, got {total:g}")
        return self


class TimeBoundariesSplit(_SplitBase):
    """Fixed cut points: train < train_end <= validation < validation_end <= test."""

    method: Literal["time_boundaries"]
    train_end: AwareDatetime
    validation_end: AwareDatetime

    @model_validator(mode="after")
    def _check_order(self) -> TimeBoundariesSplit:
        if self.train_end >= self.validation_end:
            raise ValueError(f"train_end {self.train_end} is not before validation_end {self.validation_end}")
        return self


SplitSpec = Annotated[TimeFractionsSplit | TimeBoundariesSplit, Field(discriminator="method")]


class BusinessMetricSpec(StrictModel):
    """A business proxy for monitoring: an aggregate of a column or of a `DataFrame.eval` expression."""

    name: str = Field(min_length=1)
    description: str = ""
    column: str | None = None
    expression: str | None = None
    aggregation: Literal["mean", "sum", "median"] = "mean"

    @model_validator(mode="after")
    def _check_source(self) -> BusinessMetricSpec:
        if (self.column is None) == (self.expression is None):
            raise ValueError("give exactly one of column or expression")
        if self.expression is not None:
            try:
                ast.parse(self.expression, mode="eval")
            except SyntaxError as exc:
                raise ValueError(f"expression {self.expression!r} is not valid: {exc.msg}") from exc
        return self

    @property
    def referenced_columns(self) -> set[str]:
        if self.column is not None:
            return {self.column}
        tree = ast.parse(self.expression or "", mode="eval")
        return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}

    def evaluate(self, frame: pd.DataFrame) -> float:
        """The metric on one frame (NaN on an empty frame)."""
        missing = sorted(self.referenced_columns - set(frame.columns))
        if missing:
            raise KeyError(f"business metric {self.name!r} needs columns {missing} that the frame lacks")
        values = frame[self.column] if self.column is not None else frame.eval(self.expression)
        return float(getattr(pd.Series(values, dtype="float64"), self.aggregation)())


PREDICTION_COLUMN = "score"  # the served model's probability, as the monitor names it next to the features


class BusinessProxySpec(BusinessMetricSpec):
    """A business number computable from served traffic alone (features and the model's `score`), so the
    hourly monitor can watch it hours or weeks before labels arrive: e.g. the expected delay cost per 1,000
    flights. `scale` multiplies the aggregate; the relative change vs the reference model's training rows
    warns / alerts at the two bounds."""

    scale: float = Field(1.0, gt=0)
    warn_relative_change: float = Field(0.15, gt=0)
    alert_relative_change: float = Field(0.30, gt=0)

    @model_validator(mode="after")
    def _check_bounds(self) -> BusinessProxySpec:
        if self.warn_relative_change >= self.alert_relative_change:
            raise ValueError(
                f"warn_relative_change ({self.warn_relative_change}) must be below alert_relative_change "
                f"({self.alert_relative_change})"
            )
        return self


class DatasetSpec(StrictModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    version: str = Field(min_length=1)
    description: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    source: SourceSpec
    target: TargetSpec
    features: FeatureSpec
    slices: list[str] = Field(default_factory=list)
    split: SplitSpec
    expectations: ExpectationsSpec
    business_metric: BusinessMetricSpec
    business_proxy: BusinessProxySpec | None = None

    @property
    def raw_columns(self) -> list[str]:
        """The source table's columns, as declared by the expectations."""
        return list(self.expectations.columns)

    @property
    def time_column(self) -> str:
        return self.source.time_column

    @model_validator(mode="after")
    def _check_columns_agree(self) -> DatasetSpec:
        """Every column named anywhere must be a declared raw column of a fitting type."""
        types = {name: col.type for name, col in self.expectations.columns.items()}
        problems: list[str] = []

        def unknown(names: list[str] | set[str], allowed: set[str]) -> list[str]:
            return sorted(set(names) - allowed)

        if types.get(self.time_column) != "timestamp":
            problems.append(f"source.time_column: {self.time_column!r} must be a raw column of type timestamp")
        if missing := unknown(self.source.key_columns, set(types)):
            problems.append(f"source.key_columns: {missing} are not raw columns")
        if types.get(self.target.source_column) not in NUMERIC_TYPES:
            problems.append(f"target.source_column: {self.target.source_column!r} must be a numeric raw column")
        if self.target.name in types:
            problems.append(f"target.name: {self.target.name!r} is derived, it must not be a raw column")
        leaking = {self.target.source_column, self.time_column} & set(self.features.columns)
        if leaking:
            problems.append(f"features: {sorted(leaking)} are the label source or the time column")
        if missing := unknown(self.features.columns, set(types)):
            problems.append(f"features: {missing} are not raw columns")
        if wrong := sorted(c for c in self.features.numeric if c in types and types[c] not in NUMERIC_TYPES):
            problems.append(f"features.numeric: {wrong} are not numeric raw columns")
        if missing := unknown(self.slices, set(types) | set(self.features.columns)):
            problems.append(f"slices: {missing} are not raw or feature columns")
        if missing := unknown(self.business_metric.referenced_columns, set(types) | {self.target.name}):
            problems.append(f"business_metric: {missing} are neither raw columns nor the target")
        if self.business_proxy is not None and (
            missing := unknown(self.business_proxy.referenced_columns, {*self.features.columns, PREDICTION_COLUMN})
        ):
            problems.append(f"business_proxy: {missing} are neither features nor {PREDICTION_COLUMN!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def load_dataset_spec(path: str | Path) -> DatasetSpec:
    """Read and validate a dataset spec; any problem raises `DatasetSpecError` naming the file and field."""
    return load_yaml_model(
        path, DatasetSpec, DatasetSpecError, "dataset spec", not_a_mapping="expected a mapping at the top level"
    )
