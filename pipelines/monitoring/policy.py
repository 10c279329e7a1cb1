"""The drift policy: which test decides each feature's verdict, its thresholds, and how findings rank.

The defaults reproduce Evidently 0.7.23's `DataDriftPreset` verdicts (test picked by type and reference
size, thresholds 0.1 for distances and 0.05 for p-values, dataset drift at half the features), so the hourly
fast path and the human Evidently report never disagree about a feature. Everything else (PSI bands, null
surge, schema findings, prediction-score drift) is ours and only feeds the severity of the overall verdict.
"""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from pipelines.config_loading import StrictModel, load_yaml_model


class Severity(StrEnum):
    """How loud a finding is. Ordered: a report's verdict is its loudest finding."""

    OK = "ok"
    WARN = "warn"
    ALERT = "alert"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.OK: 0, Severity.WARN: 1, Severity.ALERT: 2}

NumericTest = Literal["auto", "wasserstein", "ks", "psi"]
CategoricalTest = Literal["auto", "jensenshannon", "chisquare", "psi"]


class Band(StrictModel):
    """A value (a change, a latency, a rate) that warns at `warn` and alerts at `alert`, in its own units;
    higher is worse. Used by the feedback and system-signal policies."""

    warn: float = Field(gt=0)
    alert: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if self.warn >= self.alert:
            raise ValueError(f"warn ({self.warn}) must be below alert ({self.alert})")
        return self

    def level(self, change: float | None) -> Severity:
        if change is None or not math.isfinite(change):
            return Severity.OK
        if change >= self.alert:
            return Severity.ALERT
        return Severity.WARN if change >= self.warn else Severity.OK


class VerdictTests(StrictModel):
    """Which test decides a feature's `drifted` flag; `auto` is Evidently's choice by type and size."""

    numeric: NumericTest = "auto"
    categorical: CategoricalTest = "auto"


class Thresholds(StrictModel):
    """Per-test thresholds. Distances drift at `>=`, p-values at `<` (`<=` for KS), exactly as Evidently."""

    wasserstein_normed: float = Field(0.1, gt=0)
    jensenshannon: float = Field(0.1, gt=0, le=1)
    ks_pvalue: float = Field(0.05, gt=0, lt=1)
    chisquare_pvalue: float = Field(0.05, gt=0, lt=1)
    z_pvalue: float = Field(0.05, gt=0, lt=1)


class PsiPolicy(StrictModel):
    """Population stability index over fixed reference-quantile bins (0.1 / 0.25: the usual bands)."""

    bins: int = Field(10, ge=2, le=100)
    warn: float = Field(0.1, gt=0)
    alert: float = Field(0.25, gt=0)

    @model_validator(mode="after")
    def _warn_below_alert(self) -> PsiPolicy:
        if self.warn >= self.alert:
            raise ValueError(f"psi.warn ({self.warn}) must be below psi.alert ({self.alert})")
        return self


class MissingPolicy(StrictModel):
    """A broken upstream join shows as a jump in nulls long before it moves a distribution test."""

    max_null_share_rise: float = Field(0.05, gt=0, le=1)


class DatasetPolicy(StrictModel):
    drift_share: float = Field(0.5, gt=0, le=1)


class PredictionPolicy(StrictModel):
    """Score drift is judged by PSI: scale-free and insensitive to window size, unlike a p-value."""

    psi_threshold: float = Field(0.2, gt=0)


class SeverityPolicy(StrictModel):
    """How loud each kind of finding is. `ok` silences a kind without hiding it from the report."""

    dataset_drift: Severity = Severity.ALERT
    feature_drift: Severity = Severity.WARN
    null_surge: Severity = Severity.ALERT
    new_column: Severity = Severity.WARN
    missing_column: Severity = Severity.ALERT
    dtype_change: Severity = Severity.ALERT
    prediction_drift: Severity = Severity.ALERT


class DriftPolicy(StrictModel):
    """Everything the drift check needs to turn statistics into a verdict."""

    min_window_rows: int = Field(1000, ge=1)
    tests: VerdictTests = VerdictTests()
    thresholds: Thresholds = Thresholds()
    psi: PsiPolicy = PsiPolicy()
    missing: MissingPolicy = MissingPolicy()
    dataset: DatasetPolicy = DatasetPolicy()
    prediction: PredictionPolicy = PredictionPolicy()
    severity: SeverityPolicy = SeverityPolicy()


class DriftPolicyError(ValueError):
    """A drift policy file that cannot be used, with the file and the offending field in the message."""


def load_drift_policy(path: str | Path) -> DriftPolicy:
    """Read and validate a drift policy YAML; every problem is reported as `file: field: reason`."""
    return load_yaml_model(path, DriftPolicy, DriftPolicyError, "drift policy")
