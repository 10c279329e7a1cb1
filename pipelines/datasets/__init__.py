"""Dataset specs and the pure functions that apply them: label derivation, time split, the demo loader."""

from __future__ import annotations

from pipelines.datasets.spec import DatasetSpec, DatasetSpecError, load_dataset_spec
from pipelines.datasets.split import SplitRecord, TimeSplit, time_split
from pipelines.datasets.target import TargetReport, apply_target

__all__ = [
    "DatasetSpec",
    "DatasetSpecError",
    "SplitRecord",
    "TargetReport",
    "TimeSplit",
    "apply_target",
    "load_dataset_spec",
    "time_split",
]
