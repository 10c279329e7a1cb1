"""The reference side of every drift check, computed once per champion and reused by every window.

Profiling sorts and counts the reference, fixes the PSI bin edges at reference quantiles and records the
schema; a check then only has to summarise the window. The profile saves to one `.npz` (arrays + a validated
JSON manifest, no pickle) so the hourly drift run loads it instead of re-reading the training data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from pipelines.features import FeatureSpec
from pipelines.monitoring.policy import DriftPolicy
from pipelines.monitoring.samples import (
    CATEGORICAL_FAMILIES,
    NUMERIC_FAMILIES,
    CategoryCounts,
    SortedCounts,
    dtype_family,
    sorted_finite,
    summarize_categorical,
)
from pipelines.monitoring.statistics import counts_between_edges

ColumnKind = Literal["numeric", "categorical"]
ColumnTypes = FeatureSpec | Mapping[str, str]
PROFILE_FORMAT_VERSION = 1


def as_feature_spec(column_types: ColumnTypes) -> FeatureSpec:
    """Accept a FeatureSpec or an Evidently-style `{column: "numeric" | "categorical"}` mapping."""
    if isinstance(column_types, FeatureSpec):
        return column_types
    unknown = {name: kind for name, kind in column_types.items() if kind not in ("numeric", "categorical")}
    if unknown:
        described = ", ".join(f"{name!r} has type {kind!r}" for name, kind in unknown.items())
        raise ValueError(f"unknown column type: {described}; expected 'numeric' or 'categorical'")
    return FeatureSpec(
        numeric=[name for name, kind in column_types.items() if kind == "numeric"],
        categorical=[name for name, kind in column_types.items() if kind == "categorical"],
    )


@dataclass(frozen=True)
class NumericProfile:
    """A numeric reference column: distinct values, spread for the normed Wasserstein, PSI bins."""

    name: str
    dtype_family: str
    rows: int
    null_count: int
    sample: SortedCounts
    std: float
    psi_edges: np.ndarray
    psi_counts: np.ndarray

    kind: ClassVar[ColumnKind] = "numeric"

    @property
    def null_share(self) -> float:
        return self.null_count / self.rows


@dataclass(frozen=True)
class CategoricalProfile:
    """A categorical reference column: label frequencies."""

    name: str
    dtype_family: str
    rows: int
    null_count: int
    sample: CategoryCounts

    kind: ClassVar[ColumnKind] = "categorical"

    @property
    def null_share(self) -> float:
        return self.null_count / self.rows


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class ReferenceProfile:
    """Everything a drift check needs from the reference, keyed by column name."""

    spec: FeatureSpec
    rows: int
    schema: dict[str, str]
    features: dict[str, ColumnProfile]
    prediction: NumericProfile | None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        columns = [*self.features.values(), *([self.prediction] if self.prediction else [])]
        for index, column in enumerate(columns):
            for field, array in _column_arrays(column).items():
                arrays[f"c{index}_{field}"] = array
        manifest = _Manifest(
            format_version=PROFILE_FORMAT_VERSION,
            spec=self.spec,
            rows=self.rows,
            schema_columns=self.schema,
            columns=[_ColumnManifest.of(column) for column in columns],
            prediction_column=self.prediction.name if self.prediction else None,
        )
        with path.open("wb") as handle:
            np.savez(handle, manifest=np.array(manifest.model_dump_json()), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {key: stored[key] for key in stored.files}
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a reference profile: {exc}") from None
        try:
            manifest = _Manifest.model_validate_json(str(arrays.pop("manifest")))
        except (KeyError, ValidationError) as exc:
            raise ValueError(f"{path}: reference profile manifest is missing or invalid: {exc}") from None
        if manifest.format_version != PROFILE_FORMAT_VERSION:
            raise ValueError(
                f"{path}: profile format {manifest.format_version}, this code reads {PROFILE_FORMAT_VERSION}"
            )
        try:
            columns = {
                entry.name: entry.restore(
                    {key.split("_", 1)[1]: arrays[key] for key in arrays if key.startswith(f"c{i}_")}
                )
                for i, entry in enumerate(manifest.columns)
            }
        except KeyError as exc:
            raise ValueError(f"{path}: reference profile lacks the array {exc}") from None
        prediction = columns.pop(manifest.prediction_column) if manifest.prediction_column else None
        if prediction is not None and not isinstance(prediction, NumericProfile):
            raise ValueError(f"{path}: prediction column {prediction.name!r} is not numeric")
        return cls(
            spec=manifest.spec,
            rows=manifest.rows,
            schema=manifest.schema_columns,
            features=columns,
            prediction=prediction,
        )


def build_reference_profile(
    reference: pd.DataFrame,
    column_types: ColumnTypes,
    policy: DriftPolicy,
    *,
    prediction_column: str | None = None,
) -> ReferenceProfile:
    """Profile the reference once. `prediction_column` holds the champion's scores on the reference rows."""
    spec = as_feature_spec(column_types)
    if reference.empty:
        raise ValueError("the reference frame has no rows: there is nothing to compare windows with")
    if prediction_column in spec.columns:
        raise ValueError(f"prediction column {prediction_column!r} is also listed as a feature")
    expected = [*spec.columns, *([prediction_column] if prediction_column else [])]
    absent = [name for name in expected if name not in reference.columns]
    if absent:
        raise ValueError(f"columns missing from the reference frame: {absent}")
    features: dict[str, ColumnProfile] = {
        name: _profile_numeric(reference[name], policy.psi.bins) for name in spec.numeric
    }
    features |= {name: _profile_categorical(reference[name]) for name in spec.categorical}
    prediction = _profile_numeric(reference[prediction_column], policy.psi.bins) if prediction_column else None
    return ReferenceProfile(
        spec=spec,
        rows=len(reference),
        schema={str(name): dtype_family(dtype) for name, dtype in reference.dtypes.items()},
        features=features,
        prediction=prediction,
    )


def psi_edges(sample: SortedCounts, bins: int) -> np.ndarray:
    """Interior edges at reference quantiles; ties collapse (a column with few values gets fewer bins)."""
    quantiles = np.linspace(0, 1, bins + 1)[1:-1]
    cumulative_share = np.cumsum(sample.counts) / sample.total
    # Inverse CDF on the distinct values: the smallest value whose cumulative share reaches the quantile.
    positions = np.minimum(np.searchsorted(cumulative_share, quantiles, side="left"), sample.values.size - 1)
    return np.unique(sample.values[positions])


def _profile_numeric(column: pd.Series, bins: int) -> NumericProfile:
    family = dtype_family(column.dtype)
    if family not in NUMERIC_FAMILIES:
        raise ValueError(f"column {column.name!r} is declared numeric but its reference dtype is {column.dtype}")
    finite, null_count = sorted_finite(column)
    sample = SortedCounts.from_sorted(finite)
    if sample.total == 0:
        raise ValueError(f"column {column.name!r} has no finite values in the reference: it cannot be profiled")
    values = sample.values
    mean = np.dot(values, sample.counts) / sample.total
    # Population std (ddof=0) over the finite values, as Evidently norms the Wasserstein distance.
    std = float(np.sqrt(np.dot((values - mean) ** 2, sample.counts) / sample.total))
    edges = psi_edges(sample, bins)
    return NumericProfile(
        name=str(column.name),
        dtype_family=family,
        rows=len(column),
        null_count=null_count,
        sample=sample,
        std=std,
        psi_edges=edges,
        psi_counts=counts_between_edges(sample.count_at_or_below(edges), sample.total),
    )


def _profile_categorical(column: pd.Series) -> CategoricalProfile:
    family = dtype_family(column.dtype)
    if family not in CATEGORICAL_FAMILIES:
        raise ValueError(f"column {column.name!r} is declared categorical but its reference dtype is {column.dtype}")
    sample, null_count = summarize_categorical(column)
    if sample.total == 0:
        raise ValueError(f"column {column.name!r} has only nulls in the reference: it cannot be profiled")
    return CategoricalProfile(
        name=str(column.name), dtype_family=family, rows=len(column), null_count=null_count, sample=sample
    )


def _column_arrays(column: ColumnProfile) -> dict[str, np.ndarray]:
    if isinstance(column, NumericProfile):
        return {
            "values": column.sample.values,
            "counts": column.sample.counts,
            "psi_edges": column.psi_edges,
            "psi_counts": column.psi_counts,
        }
    return {"labels": column.sample.labels, "counts": column.sample.counts}


class _ColumnManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    kind: ColumnKind
    dtype_family: str
    rows: int
    null_count: int
    std: float | None = None

    @classmethod
    def of(cls, column: ColumnProfile) -> _ColumnManifest:
        return cls(
            name=column.name,
            kind=column.kind,
            dtype_family=column.dtype_family,
            rows=column.rows,
            null_count=column.null_count,
            std=column.std if isinstance(column, NumericProfile) else None,
        )

    def restore(self, arrays: dict[str, np.ndarray]) -> ColumnProfile:
        common = {
            "name": self.name,
            "dtype_family": self.dtype_family,
            "rows": self.rows,
            "null_count": self.null_count,
        }
        if self.kind == "numeric":
            return NumericProfile(
                **common,
                sample=SortedCounts(arrays["values"], arrays["counts"]),
                std=float(self.std or 0.0),
                psi_edges=arrays["psi_edges"],
                psi_counts=arrays["psi_counts"],
            )
        return CategoricalProfile(**common, sample=CategoryCounts(arrays["labels"], arrays["counts"]))


class _Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: int
    spec: FeatureSpec
    rows: int
    schema_columns: dict[str, str]
    columns: list[_ColumnManifest]
    prediction_column: str | None
