"""The drift check's output: a JSON-able record the DAG stores, alerts on, and shows beside Evidently."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from pipelines.monitoring.policy import Severity

StatTestName = Literal["wasserstein_normed", "jensenshannon", "ks", "chisquare", "z", "psi"]
Verdict = Literal["insufficient_data", "ok", "warn", "alert"]
FindingKind = Literal[
    "dataset_drift",
    "feature_drift",
    "psi",
    "null_surge",
    "missing_column",
    "new_column",
    "dtype_change",
    "prediction_drift",
]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureDrift(_Record):
    """One column's comparison. `test is None` when the window has no usable value to test.

    `new_categories` lists (at most 20) window labels the reference never had.
    """

    name: str
    column_type: Literal["numeric", "categorical"]
    test: StatTestName | None
    statistic: float | None
    threshold: float | None
    drifted: bool
    psi: float | None
    psi_level: Severity
    reference_null_share: float
    current_null_share: float
    null_surge: bool
    new_categories: list[str] = []


class SchemaFinding(_Record):
    """A column that disappeared, appeared, or changed kind (dtype family) between reference and window."""

    column: str
    kind: Literal["missing_column", "new_column", "dtype_change"]
    expected: str | None
    found: str | None


class Finding(_Record):
    """One reason for the verdict, naming the column it is about."""

    kind: FindingKind
    severity: Severity
    column: str | None
    message: str


class DriftReport(_Record):
    """The verdict for one window against one reference profile, with every reason behind it."""

    verdict: Verdict
    summary: str
    window_rows: int
    reference_rows: int
    feature_spec_version: str
    dataset_drift: bool
    drifted_share: float
    drifted_features: list[str]
    features: list[FeatureDrift]
    schema_findings: list[SchemaFinding]
    prediction: FeatureDrift | None
    findings: list[Finding]

    def feature(self, name: str) -> FeatureDrift:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(f"no drift result for column {name!r}")

    def columns_with(self, kind: FindingKind) -> list[str]:
        """Columns named by findings of one kind, e.g. every column with a null surge."""
        return [finding.column for finding in self.findings if finding.kind == kind and finding.column]
