"""The data contract of a dataset, as written in its YAML spec.

These models only describe *what* must hold; `pipelines.validation` turns them into checks (a Great
Expectations suite and an equivalent vectorized path). Keeping the contract engine-free means a new dataset is
onboarded by writing YAML, and the engine can change without touching any spec.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Severity = Literal["error", "warning"]
"""`error` blocks the run; `warning` is recorded in the report and the run goes on."""

LogicalType = Literal["integer", "float", "number", "string", "boolean", "timestamp"]
"""Engine-neutral column types. `number` accepts integer or float (SQL round trips turn integer columns with
nulls into floats); `timestamp` means timezone-aware."""

NUMERIC_TYPES: frozenset[str] = frozenset({"integer", "float", "number"})


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    severity: Severity = "error"


class NullsRule(_Rule):
    """At most `max_fraction` of the rows may be null."""

    max_fraction: float = Field(ge=0.0, le=1.0)


class RangeRule(_Rule):
    """Non-null values lie in [min, max] (inclusive); `mostly` is the share that must (1.0 = all)."""

    min: float | None = None
    max: float | None = None
    mostly: float = Field(default=1.0, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _check_bounds(self) -> RangeRule:
        if self.min is None and self.max is None:
            raise ValueError("a range needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"range min {self.min} is greater than max {self.max}")
        return self


class CategoriesRule(_Rule):
    """Non-null values belong to `values`; `mostly` is the share that must (1.0 = all)."""

    values: list[str] = Field(min_length=1)
    mostly: float = Field(default=1.0, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _check_unique(self) -> CategoriesRule:
        duplicates = sorted({v for v in self.values if self.values.count(v) > 1})
        if duplicates:
            raise ValueError(f"category values listed twice: {duplicates}")
        return self


class ColumnExpectations(BaseModel):
    """One raw column: it must exist with `type` (checked at `severity`), plus optional value rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: LogicalType
    severity: Severity = "error"
    nulls: NullsRule | None = None
    range: RangeRule | None = None
    categories: CategoriesRule | None = None

    @model_validator(mode="after")
    def _check_rules_fit_type(self) -> ColumnExpectations:
        if self.range is not None and self.type not in NUMERIC_TYPES:
            raise ValueError(f"a range needs a numeric column type, not {self.type!r}")
        if self.categories is not None and self.type != "string":
            raise ValueError(f"categories need a string column type, not {self.type!r}")
        return self


class RowCountRule(_Rule):
    min: int = Field(default=0, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check_bounds(self) -> RowCountRule:
        if self.max is not None and self.min > self.max:
            raise ValueError(f"row_count min {self.min} is greater than max {self.max}")
        return self


class FreshnessRule(_Rule):
    """The newest row must be at most `max_age_hours` older than the end of the extracted interval."""

    max_age_hours: float = Field(gt=0.0)


class ExpectationsSpec(BaseModel):
    """`columns` is also the raw schema of the source table: every column the pipeline reads is listed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    row_count: RowCountRule | None = None
    freshness: FreshnessRule | None = None
    columns: dict[str, ColumnExpectations] = Field(min_length=1)
