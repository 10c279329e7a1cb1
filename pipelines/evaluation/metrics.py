"""Binary-classification metrics on plain arrays, fast enough for the quality gate's paired bootstrap.

Everything here takes numpy arrays (labels 0/1 or bool, positive-class probabilities) and skips pandas and
sklearn's per-call validation: sklearn's roc_auc_score took ~8x longer than `roc_auc` on 50k rows and ~20x
on 1k rows here. Results agree with sklearn.metrics to floating-point precision (the unit tests check it).

A metric that is undefined for its input (ROC AUC on a slice with one class, anything on zero rows) raises
`UndefinedMetricError` with the reason; `compute_metrics` turns that into `None` plus the reason in the
record, so a degenerate slice is reported, never a crash or a silent NaN.

Conventions: a row is predicted positive when its probability is >= the threshold (0.5 unless given). PR AUC
is average precision (the step-wise area, as sklearn's `average_precision_score`; no interpolation). Log loss
clips probabilities to [eps, 1 - eps] with float64 eps, as sklearn does. Calibration uses `n_bins` equal-width
bins on [0, 1] with right-closed edges, the first bin also holding 0 (as sklearn's `calibration_curve`); ECE
is the row-weighted mean of |mean predicted - observed positive rate| over the non-empty bins.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict

DEFAULT_THRESHOLD = 0.5
DEFAULT_N_BINS = 10
_LOG_LOSS_EPS = float(np.finfo(np.float64).eps)  # as sklearn.metrics.log_loss


class UndefinedMetricError(ValueError):
    """The metric has no value for this input (e.g. ROC AUC with a single class); the message says why."""


class ConfusionMatrix(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tn: int
    fp: int
    fn: int
    tp: int


class ReliabilityBin(BaseModel):
    """One calibration bin; mean_predicted / fraction_positive are None when no row falls in it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lower: float
    upper: float
    count: int
    mean_predicted: float | None
    fraction_positive: float | None


class MetricSet(BaseModel):
    """Headline metrics of one population; a metric is None when undefined, with the reason in `undefined`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int
    positives: int
    threshold: float
    roc_auc: float | None
    pr_auc: float | None
    log_loss: float | None
    accuracy: float | None
    f1: float | None
    ece: float | None
    brier: float | None
    undefined: dict[str, str]


class SliceMetrics(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str
    metrics: MetricSet


def as_binary_arrays(y_true: ArrayLike, proba: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Labels as int64 0/1 and probabilities as float64, both 1-D and of equal length (validated once)."""
    y = np.asarray(y_true).ravel()
    p = np.asarray(proba, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels and probabilities differ in length: {y.size} vs {p.size}")
    if y.dtype != bool and np.any((y != 0) & (y != 1)):
        raise ValueError("labels must be 0/1 or bool")
    if np.any(~((p >= 0) & (p <= 1))):
        raise ValueError("probabilities must lie in [0, 1] (NaN is not allowed)")
    return y.astype(np.int64), p


def roc_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, starting at (0, 0)."""
    fps, tps = _cumulative_counts(y, p)
    if tps[-1] == 0 or fps[-1] == 0:
        raise UndefinedMetricError("ROC needs both classes")
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    fpr, tpr = roc_curve(y, p)
    return float(np.trapezoid(tpr, fpr))


def precision_recall_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) at every distinct threshold, from the highest threshold down."""
    fps, tps = _cumulative_counts(y, p)
    if tps[-1] == 0:
        raise UndefinedMetricError("precision-recall needs at least one positive")
    return tps / (tps + fps), tps / tps[-1]


def pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision: sum over thresholds of (recall gained) x precision."""
    precision, recall = precision_recall_curve(y, p)
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    _require_rows(y)
    clipped = np.clip(p, _LOG_LOSS_EPS, 1 - _LOG_LOSS_EPS)
    return float(-np.mean(np.where(y == 1, np.log(clipped), np.log1p(-clipped))))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    _require_rows(y)
    return float(np.mean((p - y) ** 2))


def confusion(y: np.ndarray, p: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> ConfusionMatrix:
    tn, fp, fn, tp = np.bincount(2 * y + (p >= threshold), minlength=4).tolist()
    return ConfusionMatrix(tn=tn, fp=fp, fn=fn, tp=tp)


def accuracy(y: np.ndarray, p: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> float:
    _require_rows(y)
    return float(np.mean((p >= threshold) == y))


def f1(y: np.ndarray, p: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> float:
    _require_rows(y)
    counts = confusion(y, p, threshold)
    denominator = 2 * counts.tp + counts.fp + counts.fn
    if denominator == 0:
        raise UndefinedMetricError("F1 needs a positive label or a positive prediction")
    return 2 * counts.tp / denominator


def reliability_curve(y: np.ndarray, p: np.ndarray, n_bins: int = DEFAULT_N_BINS) -> list[ReliabilityBin]:
    counts, predicted_sums, positive_sums, edges = _calibration_bins(y, p, n_bins)
    return [
        ReliabilityBin(
            lower=float(edges[i]),
            upper=float(edges[i + 1]),
            count=int(counts[i]),
            mean_predicted=float(predicted_sums[i] / counts[i]) if counts[i] else None,
            fraction_positive=float(positive_sums[i] / counts[i]) if counts[i] else None,
        )
        for i in range(n_bins)
    ]


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = DEFAULT_N_BINS) -> float:
    _require_rows(y)
    counts, predicted_sums, positive_sums, _ = _calibration_bins(y, p, n_bins)
    return float(np.sum(np.abs(predicted_sums - positive_sums)) / counts.sum())


# name -> metric(y, p, threshold, n_bins): the one list of headline metrics a MetricSet carries.
_HEADLINE_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, float, int], float]] = {
    "roc_auc": lambda y, p, threshold, n_bins: roc_auc(y, p),
    "pr_auc": lambda y, p, threshold, n_bins: pr_auc(y, p),
    "log_loss": lambda y, p, threshold, n_bins: log_loss(y, p),
    "accuracy": lambda y, p, threshold, n_bins: accuracy(y, p, threshold),
    "f1": lambda y, p, threshold, n_bins: f1(y, p, threshold),
    "ece": lambda y, p, threshold, n_bins: expected_calibration_error(y, p, n_bins),
    "brier": lambda y, p, threshold, n_bins: brier(y, p),
}


def compute_metrics(
    y: np.ndarray, p: np.ndarray, threshold: float = DEFAULT_THRESHOLD, n_bins: int = DEFAULT_N_BINS
) -> MetricSet:
    """Every headline metric of one population (arrays from `as_binary_arrays`)."""
    values: dict[str, float | None] = {}
    undefined: dict[str, str] = {}
    for name, metric in _HEADLINE_METRICS.items():
        try:
            values[name] = metric(y, p, threshold, n_bins)
        except UndefinedMetricError as reason:
            values[name] = None
            undefined[name] = str(reason)
    return MetricSet(n=int(y.size), positives=int(y.sum()), threshold=threshold, undefined=undefined, **values)


def metrics_by_slice(
    y: np.ndarray,
    p: np.ndarray,
    slice_values: ArrayLike,
    min_size: int,
    threshold: float = DEFAULT_THRESHOLD,
    n_bins: int = DEFAULT_N_BINS,
) -> list[SliceMetrics]:
    """Metrics per distinct slice value (missing values form one "<missing>" slice), largest slice first.

    Slices with fewer than `min_size` rows get every metric None with the reason: on a handful of rows a
    metric is noise, and a gate must not act on it.
    """
    codes, uniques = pd.factorize(np.asarray(slice_values, dtype=object).ravel())
    if codes.size != y.size:
        raise ValueError(f"slice values differ in length from labels: {codes.size} vs {y.size}")
    names = [*map(str, uniques), "<missing>"]
    codes[codes == -1] = len(uniques)
    sizes = np.bincount(codes, minlength=len(names))
    rows_by_code = np.split(np.argsort(codes, kind="stable"), np.cumsum(sizes)[:-1])
    results = []
    for code in np.argsort(-sizes, kind="stable"):
        if sizes[code] == 0:
            continue
        rows = rows_by_code[code]
        if sizes[code] < min_size:
            reason = f"slice has {sizes[code]} rows, below min_size {min_size}"
            metrics = MetricSet(
                n=int(sizes[code]),
                positives=int(y[rows].sum()),
                threshold=threshold,
                undefined=dict.fromkeys(_HEADLINE_METRICS, reason),
                **dict.fromkeys(_HEADLINE_METRICS),
            )
        else:
            metrics = compute_metrics(y[rows], p[rows], threshold, n_bins)
        results.append(SliceMetrics(value=names[code], metrics=metrics))
    return results


def _require_rows(y: np.ndarray) -> None:
    if y.size == 0:
        raise UndefinedMetricError("no rows")


def _cumulative_counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positives above each distinct threshold, thresholds descending (sklearn's core)."""
    _require_rows(y)
    order = np.argsort(p)[::-1]  # ties need no stable order: only each tie group's last cumsum is read
    sorted_p = p[order]
    last_of_each_threshold = np.r_[np.flatnonzero(np.diff(sorted_p)), sorted_p.size - 1]
    tps = np.cumsum(y[order])[last_of_each_threshold]
    fps = last_of_each_threshold + 1 - tps
    return fps, tps


def _calibration_bins(
    y: np.ndarray, p: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: row count, sum of probabilities, sum of labels; plus the bin edges."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], p, side="left")
    counts = np.bincount(bins, minlength=n_bins)
    predicted_sums = np.bincount(bins, weights=p, minlength=n_bins)
    positive_sums = np.bincount(bins, weights=y, minlength=n_bins)
    return counts, predicted_sums, positive_sums, edges
