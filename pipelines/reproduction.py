"""Did re-running a registered model's training from its record give the same model? And if not, why?

A reproduction re-trains from what the original run recorded (snapshot, dataset spec, training config) with the
code and environment of today. `compare_reproduction` puts the two side by side layer by layer (data, features,
config, code, environment) and metric by metric. For a deterministic trainer every metric must be identical;
when one is not, the layers that differ are the suspects the report names. Pure: the DAG fetches, this decides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict

from pipelines.datasets.split import SplitRecord
from pipelines.lineage import CodeLineage, EnvironmentLineage, FeatureLineage
from pipelines.training.config import TrainingConfig

Layer = Literal["data", "features", "config", "code", "environment"]
# Wall-clock measurements change from run to run on any machine: they are reported, never compared.
UNREPRODUCIBLE_METRIC_PREFIXES = ("latency.",)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainingFacts(_Record):
    """Everything a training run was made from, as recorded (original) or as used (reproduction)."""

    snapshot_id: str
    split: SplitRecord
    features: FeatureLineage
    config: TrainingConfig
    code: CodeLineage
    environment: EnvironmentLineage


class LayerComparison(_Record):
    layer: Layer
    same: bool
    differences: list[str]


class MetricComparison(_Record):
    name: str
    original: float | None
    reproduced: float | None
    same: bool


class ReproductionReport(_Record):
    model_name: str
    version: str
    original_run_id: str
    identical: bool  # every compared metric equal (within `tolerance`)
    tolerance: float
    layers: list[LayerComparison]
    metrics: list[MetricComparison]
    verdict: str

    @property
    def differing_layers(self) -> list[Layer]:
        return [layer.layer for layer in self.layers if not layer.same]


def compare_reproduction(
    *,
    model_name: str,
    version: str,
    original_run_id: str,
    original: TrainingFacts,
    reproduced: TrainingFacts,
    original_metrics: Mapping[str, float],
    reproduced_metrics: Mapping[str, float],
    tolerance: float = 0.0,
) -> ReproductionReport:
    """Compare a reproduction with its original; `tolerance` is the largest absolute metric difference accepted
    (0.0: bit-identical, what deterministic trainers must achieve)."""
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance}")
    layers = [
        _layer("data", _data_differences(original, reproduced)),
        _layer("features", _model_differences("features", original.features, reproduced.features)),
        _layer("config", _model_differences("config", original.config, reproduced.config)),
        _layer("code", _code_differences(original.code, reproduced.code)),
        _layer("environment", _environment_differences(original.environment, reproduced.environment)),
    ]
    metrics = _compare_metrics(original_metrics, reproduced_metrics, tolerance)
    identical = all(metric.same for metric in metrics)
    return ReproductionReport(
        model_name=model_name,
        version=version,
        original_run_id=original_run_id,
        identical=identical,
        tolerance=tolerance,
        layers=layers,
        metrics=metrics,
        verdict=_verdict(identical, metrics, layers),
    )


def comparable_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics a deterministic re-run must reproduce: quality, fit and parity; not timings."""
    return {name: value for name, value in metrics.items() if not name.startswith(UNREPRODUCIBLE_METRIC_PREFIXES)}


def _layer(layer: Layer, differences: list[str]) -> LayerComparison:
    return LayerComparison(layer=layer, same=not differences, differences=differences)


def _data_differences(original: TrainingFacts, reproduced: TrainingFacts) -> list[str]:
    differences = []
    if original.snapshot_id != reproduced.snapshot_id:
        differences.append(f"snapshot {original.snapshot_id[:12]} -> {reproduced.snapshot_id[:12]}")
    differences += _model_differences("split", original.split, reproduced.split)
    return differences


def _model_differences(name: str, original: BaseModel, reproduced: BaseModel) -> list[str]:
    """Field-by-field differences of two records, as `name.path: old -> new` lines."""
    return [
        f"{name}.{path}: {old!r} -> {new!r}"
        for path, old, new in _diff(original.model_dump(mode="json"), reproduced.model_dump(mode="json"))
    ]


def _diff(original: object, reproduced: object, path: str = "") -> list[tuple[str, object, object]]:
    if isinstance(original, dict) and isinstance(reproduced, dict):
        found = []
        for key in sorted(set(original) | set(reproduced), key=str):
            found += _diff(original.get(key), reproduced.get(key), f"{path}.{key}" if path else str(key))
        return found
    return [] if original == reproduced else [(path or "value", original, reproduced)]


def _code_differences(original: CodeLineage, reproduced: CodeLineage) -> list[str]:
    differences = []
    if original.commit is None:
        differences.append(f"the original commit is unknown ({original.problem or 'not recorded'})")
    elif original.commit != reproduced.commit:
        differences.append(f"commit {original.commit[:12]} -> {(reproduced.commit or 'unknown')[:12]}")
    if original.dirty:
        differences.append("the original was trained from uncommitted changes: its exact code is not recoverable")
    if reproduced.dirty:
        differences.append("the reproduction ran with uncommitted changes")
    return differences


def _environment_differences(original: EnvironmentLineage, reproduced: EnvironmentLineage) -> list[str]:
    differences = [
        f"{package} {original.packages.get(package)} -> {reproduced.packages.get(package)}"
        for package in sorted(set(original.packages) | set(reproduced.packages))
        if original.packages.get(package) != reproduced.packages.get(package)
    ]
    for field in ("python", "platform", "cpu_count", "cuda_available", "image_digest"):
        old, new = getattr(original, field), getattr(reproduced, field)
        if old != new:
            differences.append(f"{field} {old} -> {new}")
    return differences


def _compare_metrics(
    original: Mapping[str, float], reproduced: Mapping[str, float], tolerance: float
) -> list[MetricComparison]:
    original, reproduced = comparable_metrics(original), comparable_metrics(reproduced)
    compared = []
    for name in sorted(set(original) | set(reproduced)):
        old, new = original.get(name), reproduced.get(name)
        same = old is not None and new is not None and (old == new or abs(old - new) <= tolerance)
        compared.append(MetricComparison(name=name, original=old, reproduced=new, same=same))
    return compared


def _verdict(identical: bool, metrics: list[MetricComparison], layers: list[LayerComparison]) -> str:
    if identical:
        return f"reproduced: all {len(metrics)} metrics identical"
    differing = [metric.name for metric in metrics if not metric.same]
    suspects = [layer for layer in layers if not layer.same]
    named = "; ".join(f"{layer.layer}: {', '.join(layer.differences[:3])}" for layer in suspects)
    cause = (
        f"layers that differ: {named}" if suspects else "no recorded layer differs: the trainer is not deterministic"
    )
    return f"NOT reproduced: {len(differing)} of {len(metrics)} metrics differ ({', '.join(differing[:5])}); {cause}"


class RecordedTraining(_Record):
    """What one side of a reproduction trained from and measured: the hand-off between the DAG's tasks."""

    dataset: str
    spec_yaml: str  # the dataset spec exactly as the run used it
    facts: TrainingFacts
    metrics: dict[str, float]
