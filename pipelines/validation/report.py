"""The validation report: one record per check, the same shape whichever engine computed it.

It travels with the run (stored next to the snapshot), so it is a pydantic model with a JSON form. Counts
follow Great Expectations' result vocabulary (element, missing, unexpected) so a report reads like GX's own
results.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from pipelines.datasets.expectations import Severity

CheckKind = Literal["column_exists", "column_type", "nulls", "range", "categories", "row_count", "freshness"]
JsonScalar = bool | int | float | str | None


class CheckResult(BaseModel):
    """The outcome of one check.

    `observed` is the headline number: the dtype name, row count or newest timestamp for table-level
    checks; for row-wise checks the unexpected share (nulls: of all rows; range, categories, per-value
    types: of non-null rows), or None when no row was considered.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: CheckKind
    column: str | None
    severity: Severity
    success: bool
    observed: JsonScalar = None
    expected: dict[str, Any]
    element_count: int | None = None
    missing_count: int | None = None
    unexpected_count: int | None = None
    unexpected_sample: list[JsonScalar] = Field(default_factory=list)
    error: str | None = None


class ValidationReport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str
    spec_version: str
    engine: Literal["fast", "gx"]
    interval_end: AwareDatetime
    row_count: int
    snapshot_id: str | None = None
    validated_at: AwareDatetime
    duration_seconds: float
    checks: list[CheckResult]

    @property
    def blocking_failures(self) -> list[CheckResult]:
        """Failed checks of severity error: any of them stops the run."""
        return [c for c in self.checks if not c.success and c.severity == "error"]

    @property
    def warnings(self) -> list[CheckResult]:
        """Failed checks of severity warning: recorded, the run goes on."""
        return [c for c in self.checks if not c.success and c.severity == "warning"]

    @property
    def success(self) -> bool:
        return not self.blocking_failures

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> ValidationReport:
        return cls.model_validate_json(text)

    def summary(self) -> str:
        """One line for logs."""
        verdict = "PASSED" if self.success else "BLOCKED"
        failed = ", ".join(c.name for c in self.blocking_failures) or "-"
        return (
            f"{self.dataset} {verdict}: {len(self.checks)} checks, {len(self.blocking_failures)} blocking "
            f"({failed}), {len(self.warnings)} warnings, {self.row_count} rows, {self.engine} engine"
        )


def verdict_disagreements(first: ValidationReport, second: ValidationReport) -> list[str]:
    """Checks whose success differs between two reports of the same suite (empty means they agree)."""
    first_by_name = {c.name: c for c in first.checks}
    second_by_name = {c.name: c for c in second.checks}
    problems = [f"{name}: only in one report" for name in sorted(set(first_by_name) ^ set(second_by_name))]
    problems += [
        f"{name}: {first.engine}={first_by_name[name].success} {second.engine}={second_by_name[name].success}"
        for name in first_by_name
        if name in second_by_name and first_by_name[name].success != second_by_name[name].success
    ]
    return problems
