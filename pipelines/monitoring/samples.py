"""Compact summaries of one column: the only form the drift tests read.

A numeric window is its sorted finite values; a numeric reference is additionally run-length encoded into
distinct values with counts (once, when profiled). A categorical column becomes its sorted labels with counts.
Reference and window go through the same functions, so both sides of every test are built identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

NUMERIC_FAMILIES = frozenset({"numeric", "boolean"})
CATEGORICAL_FAMILIES = frozenset({"string", "numeric", "boolean"})


def dtype_family(dtype: object) -> str:
    """The kind of values a column holds; coarse, so int64 -> float64 (nulls appearing) is no change."""
    if isinstance(dtype, pd.CategoricalDtype):
        return dtype_family(dtype.categories.dtype)
    if ptypes.is_bool_dtype(dtype):
        return "boolean"
    if ptypes.is_numeric_dtype(dtype):
        return "numeric"
    if ptypes.is_datetime64_any_dtype(dtype) or isinstance(dtype, pd.PeriodDtype):
        return "datetime"
    if ptypes.is_string_dtype(dtype) or ptypes.is_object_dtype(dtype):
        return "string"
    return "other"


@dataclass(frozen=True, slots=True)
class SortedCounts:
    """A numeric sample as strictly increasing distinct values and their counts (all finite)."""

    values: np.ndarray
    counts: np.ndarray

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @classmethod
    def from_sorted(cls, sorted_values: np.ndarray) -> SortedCounts:
        """Run-length encode an already sorted array: linear, no second sort."""
        if sorted_values.size == 0:
            return cls(np.empty(0, dtype=np.float64), np.empty(0, dtype=np.int64))
        starts = np.flatnonzero(np.diff(sorted_values)) + 1
        starts = np.concatenate(([0], starts))
        counts = np.diff(np.append(starts, sorted_values.size))
        return cls(sorted_values[starts], counts.astype(np.int64))

    def count_at_or_below(self, edges: np.ndarray) -> np.ndarray:
        """How many values are <= each edge: bins the sample against fixed edges (e.g. PSI bins)."""
        cumulative = np.concatenate(([0], np.cumsum(self.counts)))
        return cumulative[np.searchsorted(self.values, edges, side="right")]

    def expand(self) -> np.ndarray:
        """The raw sorted sample, for library tests that want observations (KS)."""
        return np.repeat(self.values, self.counts)


@dataclass(frozen=True, slots=True)
class CategoryCounts:
    """A categorical sample: sorted distinct labels (as strings) and their counts, nulls excluded."""

    labels: np.ndarray
    counts: np.ndarray

    @property
    def total(self) -> int:
        return int(self.counts.sum())


def sorted_finite(column: pd.Series) -> tuple[np.ndarray, int]:
    """The column's finite values, sorted, and how many values were null or +-inf.

    Non-finite values are dropped before testing, as Evidently does; sorting once puts -inf first and inf, NaN
    last, so the finite part is a slice found by two binary searches instead of a mask over the whole column.
    """
    ordered = column.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    ordered.sort()  # in place on our own copy: one allocation per column instead of two
    first = np.searchsorted(ordered, -np.inf, side="right")
    last = np.searchsorted(ordered, np.inf, side="left")
    return ordered[first:last], int(ordered.size - (last - first))


def summarize_categorical(column: pd.Series) -> tuple[CategoryCounts, int]:
    """Label counts and the null count in one hashing pass (factorize), whatever the column's dtype.

    Labels are compared by their string form so that a reference saved to disk and a window read from another
    source agree on what a category is; labels that collide after conversion are merged. Whole floats are
    written as integers, so a code column that became float because nulls appeared keeps its labels.
    """
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    counts_with_nulls = np.bincount(codes + 1, minlength=len(uniques) + 1)
    labels = np.array([_label(value) for value in uniques], dtype=str)
    distinct, inverse = np.unique(labels, return_inverse=True)
    counts = np.bincount(inverse, weights=counts_with_nulls[1:], minlength=distinct.size).astype(np.int64)
    return CategoryCounts(distinct, counts), int(counts_with_nulls[0])


def _label(value: object) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)
