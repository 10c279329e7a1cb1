"""The two compute steps every training path shares: fit on a snapshot, then evaluate and export the model.

`factory_train` runs them as separate tasks (the model crosses S3 in between); `factory_reproduce` runs them
back to back from a recorded spec and config. One implementation means a reproduction re-executes exactly the
code path that trained the original, so a difference in its metrics points at data, code or environment,
never at a second copy of the steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.assembly import TrainingSummary, labelled_split
from pipelines.datasets.spec import DatasetSpec
from pipelines.evaluation.plots import write_evaluation_plots
from pipelines.evaluation.report import EvaluationReport, evaluate_model
from pipelines.export.parity import ParityReport, export_checked
from pipelines.export.signature import onnx_inputs_from_frame
from pipelines.training.base import TrainedModel
from pipelines.training.config import TrainingConfig
from pipelines.training.factory import train_model

LATENCY_SAMPLE_ROWS = 1000


@dataclass(frozen=True)
class FittedRun:
    model: TrainedModel
    summary: TrainingSummary


@dataclass(frozen=True)
class EvaluatedRun:
    onnx_model: bytes
    parity: ParityReport
    report: EvaluationReport
    plots: dict[str, Path]


def fit_on_snapshot(frame: pd.DataFrame, spec: DatasetSpec, config: TrainingConfig, snapshot_id: str) -> FittedRun:
    """Label, split by time and fit: the validation split drives early stopping, the test split stays unseen."""
    label = spec.target.name
    split, target = labelled_split(frame, spec)
    model = train_model(
        config, spec.features, split.train, split.train[label], split.validation, split.validation[label]
    )
    summary = TrainingSummary(
        snapshot_id=snapshot_id,
        config=config,
        target=target,
        split=split.record,
        fit_summary=model.fit_summary,
        trained_at=datetime.now(UTC),
    )
    return FittedRun(model=model, summary=summary)


def evaluate_on_snapshot(model: TrainedModel, frame: pd.DataFrame, spec: DatasetSpec, plots_dir: Path) -> EvaluatedRun:
    """Export to ONNX (parity-checked, raises ParityError), score the test split, measure, and draw the plots."""
    label = spec.target.name
    test = labelled_split(frame, spec)[0].test
    onnx_model, parity = export_checked(model, test)
    proba: np.ndarray = model.predict_proba(test)
    report = evaluate_model(
        test[label],
        proba,
        slices={column: test[column] for column in spec.slices},
        onnx_model=onnx_model,
        onnx_feeds=onnx_inputs_from_frame(test.head(LATENCY_SAMPLE_ROWS), model.signature),
    )
    plots = write_evaluation_plots(test[label], proba, plots_dir)
    return EvaluatedRun(onnx_model=onnx_model, parity=parity, report=report, plots=plots)
