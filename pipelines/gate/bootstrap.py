"""Paired bootstrap of metric differences (challenger - champion) on the same evaluation rows.

Paired: each resample draws row indices once and scores BOTH models on those same rows, so the row-to-row
difficulty that both models share cancels out and the CI of the difference is far tighter than two
independent CIs would suggest.

Fast: a resample's n row indices become per-row counts (how often each row was drawn), and every metric is
computed with the counts as row weights, so nothing is re-sorted per resample:

- ROC AUC and PR AUC sort each model's scores once; per resample they need one gather and one cumulative
  sum of the negatives' weights in that fixed order (the weighted Mann-Whitney statistic, ties counted
  half, exactly as `metrics.roc_auc` on the resampled arrays).
- log loss, Brier, accuracy, F1 and ECE are sums of per-row terms: one matrix product counts x terms gives
  every resample of a chunk at once.

Resamples run in chunks that fit in cache-friendly memory; the draws are one continuous stream from the
seeded generator, so neither the chunk size nor the thread scheduling changes the result. The unit tests
check every metric here against `pipelines.evaluation.metrics` on explicitly resampled arrays.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from pipelines.gate.policy import MetricName

_LOG_LOSS_EPS = float(np.finfo(np.float64).eps)  # as metrics.log_loss
_CHUNK_CELLS = 2_000_000  # resamples x rows per chunk: 8 MB of float32 counts
_WORKERS = min(4, os.cpu_count() or 1)
RANK_METRICS: frozenset[MetricName] = frozenset({"roc_auc", "pr_auc"})


@dataclass(frozen=True)
class BootstrapTarget:
    """A population to bootstrap (all rows, or one slice) and the metrics whose deltas are wanted."""

    name: str
    rows: np.ndarray  # indices into the evaluation arrays
    metrics: tuple[MetricName, ...]


def paired_bootstrap_deltas(
    y: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    targets: Sequence[BootstrapTarget],
    *,
    n_resamples: int,
    seed: int,
    threshold: float,
    n_bins: int,
) -> dict[tuple[str, MetricName], np.ndarray]:
    """(target name, metric) -> `n_resamples` deltas challenger - champion (NaN where undefined).

    Chunks run on worker threads (numpy releases the GIL in gathers, cumsums and bincount) while this
    thread makes the draws in order. BLAS is held to one thread meanwhile: its threads competing with the
    workers for 2 busy cores made the whole bootstrap 5x slower here.
    """
    n = y.size
    plans: list[_TargetPlan] = []
    for target in targets:
        offset = sum(plan.linear_terms.shape[1] for plan in plans)
        plans.append(_TargetPlan.build(target, y, (challenger, champion), threshold, n_bins, offset))
    linear_terms = np.hstack([np.empty((n, 0)), *(plan.linear_terms for plan in plans)])
    deltas = {key: np.empty(n_resamples) for plan in plans for key in plan.delta_keys()}

    def fill(chunk: slice, draws: np.ndarray) -> None:
        counts = draw_counts(draws, n)
        # float64 for sums of real-valued terms (log loss...): float32 would round them.
        sums = counts.astype(np.float64) @ linear_terms
        for plan in plans:
            for key, values in plan.deltas(counts, sums).items():
                deltas[key][chunk] = values

    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(_WORKERS) as pool:
        pending: deque[Future[None]] = deque()
        for chunk, draws in resample_draws(n, n_resamples, seed):
            pending.append(pool.submit(fill, chunk, draws))
            if len(pending) > _WORKERS:  # bound the draws held in memory
                pending.popleft().result()
        for future in pending:
            future.result()
    return deltas


def resample_draws(n: int, n_resamples: int, seed: int) -> Iterator[tuple[slice, np.ndarray]]:
    """(resample positions, row indices drawn with replacement), one chunk at a time.

    The chunks are consecutive pieces of one draw `default_rng(seed).integers(0, n, (n_resamples, n),
    dtype=int32)`, so any chunk size gives the same resamples.
    """
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_resamples, per_chunk):
        size = min(per_chunk, n_resamples - start)
        yield slice(start, start + size), rng.integers(0, n, size=(size, n), dtype=np.int32)


def draw_counts(draws: np.ndarray, n: int) -> np.ndarray:
    """(resamples x n) counts: how often each row was drawn.

    One bincount per resample keeps its histogram cache-sized (2x faster here than one flat bincount).
    float32 holds the small integer counts and their running sums exactly (up to 2**24 rows) at half the
    memory traffic of float64; the gathers are what the bootstrap spends its time on.
    """
    counts = np.empty((draws.shape[0], n), dtype=np.float32)
    for resample, rows in enumerate(draws):
        counts[resample] = np.bincount(rows, minlength=n)
    return counts


def confidence_interval(deltas: np.ndarray, confidence: float) -> tuple[float, float] | None:
    """Percentile interval of the defined deltas; None when no resample defined the metric."""
    defined = deltas[~np.isnan(deltas)]
    if defined.size == 0:
        return None
    tail = (1 - confidence) / 2
    low, high = np.quantile(defined, [tail, 1 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class _RankedScores:
    """One model's scores on one population, sorted once, so a resample's rank metrics are gathers + a cumsum.

    `neg_columns` / `pos_columns`: the count columns of the negative / positive rows in ascending score
    order. For each positive, in that order: `neg_below` negatives sort strictly below its tie group,
    `neg_through` negatives sort below or inside it, and `pos_below` positives sort strictly below it.
    """

    neg_columns: np.ndarray
    pos_columns: np.ndarray
    neg_below: np.ndarray
    neg_through: np.ndarray
    pos_below: np.ndarray
    ties_with_negatives: bool

    @classmethod
    def build(cls, rows: np.ndarray, y: np.ndarray, scores: np.ndarray) -> _RankedScores:
        order = rows[np.argsort(scores[rows], kind="stable")]
        sorted_scores, positive = scores[order], y[order] == 1
        new_group = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
        starts = np.flatnonzero(new_group)
        stops = np.r_[starts[1:], order.size]
        group_of_positive = (np.cumsum(new_group) - 1)[positive]
        negatives_before = np.cumsum(np.r_[0, ~positive])
        positives_before = np.cumsum(np.r_[0, positive])
        neg_below = negatives_before[starts][group_of_positive]
        neg_through = negatives_before[stops][group_of_positive]
        return cls(
            neg_columns=order[~positive],
            pos_columns=order[positive],
            neg_below=neg_below,
            neg_through=neg_through,
            pos_below=positives_before[starts][group_of_positive],
            ties_with_negatives=bool(np.any(neg_through != neg_below)),
        )

    def metrics(self, counts: np.ndarray, wanted: tuple[MetricName, ...]) -> dict[MetricName, np.ndarray]:
        """Rank metrics per resample. Sums of counts are exact in float32; products are summed in float64."""
        neg_cumulative = _cumsum_with_leading_zero(counts.take(self.neg_columns, axis=1))
        pos_weights = counts.take(self.pos_columns, axis=1)
        positives = pos_weights.sum(axis=1, dtype=np.float64)
        negatives = neg_cumulative[:, -1].astype(np.float64)
        neg_below = neg_cumulative.take(self.neg_below, axis=1)
        results: dict[MetricName, np.ndarray] = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            if "roc_auc" in wanted:
                # Each positive beats the negatives below its tie group and half-beats those tied with it.
                twice_beaten = (
                    neg_below + neg_cumulative.take(self.neg_through, axis=1)
                    if self.ties_with_negatives
                    else 2 * neg_below
                )
                twice_u = np.einsum("ij,ij->i", pos_weights, twice_beaten, dtype=np.float64)
                results["roc_auc"] = _nan_where(twice_u / (2 * positives * negatives), negatives == 0)
            if "pr_auc" in wanted:
                # Average precision: each positive adds (its weight / P) x precision at its own score.
                pos_cumulative = _cumsum_with_leading_zero(pos_weights)
                pos_at_or_above = positives[:, None] - pos_cumulative.take(self.pos_below, axis=1)
                all_at_or_above = pos_at_or_above + (negatives[:, None] - neg_below)
                precision = np.divide(
                    pos_at_or_above, all_at_or_above, where=pos_weights > 0, out=np.zeros_like(pos_at_or_above)
                )
                results["pr_auc"] = np.einsum("ij,ij->i", pos_weights, precision) / positives
        return results


@dataclass(frozen=True)
class _LinearMetric:
    """A metric computed from weighted sums of per-row terms."""

    terms: Callable[[np.ndarray, np.ndarray, float, int], np.ndarray]  # (y, p, threshold, bins) -> rows x k
    combine: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (sums: resamples x k, total weight) -> values


def _mean(sums: np.ndarray, total: np.ndarray) -> np.ndarray:
    return sums[:, 0] / total


def _log_loss_terms(y: np.ndarray, p: np.ndarray, threshold: float, n_bins: int) -> np.ndarray:
    clipped = np.clip(p, _LOG_LOSS_EPS, 1 - _LOG_LOSS_EPS)
    return -np.where(y == 1, np.log(clipped), np.log1p(-clipped))[:, None]


def _brier_terms(y: np.ndarray, p: np.ndarray, threshold: float, n_bins: int) -> np.ndarray:
    return ((p - y) ** 2)[:, None]


def _accuracy_terms(y: np.ndarray, p: np.ndarray, threshold: float, n_bins: int) -> np.ndarray:
    return ((p >= threshold) == y).astype(np.float64)[:, None]


def _f1_terms(y: np.ndarray, p: np.ndarray, threshold: float, n_bins: int) -> np.ndarray:
    predicted = p >= threshold
    return np.column_stack([predicted & (y == 1), predicted & (y == 0), ~predicted & (y == 1)]).astype(float)


def _f1_from_sums(sums: np.ndarray, total: np.ndarray) -> np.ndarray:
    tp, fp, fn = sums.T
    denominator = 2 * tp + fp + fn
    return _nan_where(2 * tp / denominator, denominator == 0)


def _ece_terms(y: np.ndarray, p: np.ndarray, threshold: float, n_bins: int) -> np.ndarray:
    """Per bin, predicted minus observed; the right-closed equal-width bins of metrics.reliability_curve."""
    bins = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], p, side="left")
    terms = np.zeros((p.size, n_bins))
    terms[np.arange(p.size), bins] = p - y
    return terms


def _ece_from_sums(sums: np.ndarray, total: np.ndarray) -> np.ndarray:
    return np.abs(sums).sum(axis=1) / total


_LINEAR_METRICS: dict[MetricName, _LinearMetric] = {
    "log_loss": _LinearMetric(_log_loss_terms, _mean),
    "brier": _LinearMetric(_brier_terms, _mean),
    "accuracy": _LinearMetric(_accuracy_terms, _mean),
    "f1": _LinearMetric(_f1_terms, _f1_from_sums),
    "ece": _LinearMetric(_ece_terms, _ece_from_sums),
}


@dataclass(frozen=True)
class _TargetPlan:
    """What one target needs per chunk: ranked scores per model, and its block of linear terms.

    `linear_terms` is rows x k over the whole evaluation set, zero outside the target's rows: column 0 is
    the target's row indicator (its resampled size), then each linear metric's terms for each model; empty
    when the target asks for no linear metric. `linear_offset` is where the block starts among all targets'.
    """

    target: BootstrapTarget
    ranked: tuple[_RankedScores, _RankedScores] | None
    linear_terms: np.ndarray
    linear_layout: list[tuple[MetricName, int, int, int]]  # (metric, model, first column, column count)
    linear_offset: int

    @classmethod
    def build(
        cls,
        target: BootstrapTarget,
        y: np.ndarray,
        models: tuple[np.ndarray, np.ndarray],
        threshold: float,
        n_bins: int,
        offset: int,
    ) -> _TargetPlan:
        unknown = sorted(set(target.metrics) - set(_LINEAR_METRICS) - RANK_METRICS)
        if unknown:
            raise ValueError(f"no bootstrap for metric(s) {unknown}")
        ranked = None
        if RANK_METRICS & set(target.metrics):
            new, old = (_RankedScores.build(target.rows, y, scores) for scores in models)
            ranked = (new, old)
        linear = [metric for metric in target.metrics if metric in _LINEAR_METRICS]
        if not linear:
            return cls(target, ranked, np.zeros((y.size, 0)), [], offset)
        blocks = [np.zeros((y.size, 1))]
        blocks[0][target.rows] = 1.0
        layout = []
        column = 1
        for metric in linear:
            for model, scores in enumerate(models):
                row_terms = _LINEAR_METRICS[metric].terms(y[target.rows], scores[target.rows], threshold, n_bins)
                terms = np.zeros((y.size, row_terms.shape[1]))
                terms[target.rows] = row_terms
                blocks.append(terms)
                layout.append((metric, model, column, row_terms.shape[1]))
                column += row_terms.shape[1]
        return cls(target, ranked, np.hstack(blocks), layout, offset)

    def delta_keys(self) -> list[tuple[str, MetricName]]:
        return [(self.target.name, metric) for metric in self.target.metrics]

    def deltas(self, counts: np.ndarray, sums: np.ndarray) -> dict[tuple[str, MetricName], np.ndarray]:
        values: list[dict[MetricName, np.ndarray]] = [{}, {}]
        if self.ranked is not None:
            for model, ranked in enumerate(self.ranked):
                values[model] |= ranked.metrics(counts, self.target.metrics)
        if self.linear_layout:
            block = sums[:, self.linear_offset : self.linear_offset + self.linear_terms.shape[1]]
            total = block[:, 0]
            with np.errstate(divide="ignore", invalid="ignore"):
                for metric, model, first, width in self.linear_layout:
                    metric_values = _LINEAR_METRICS[metric].combine(block[:, first : first + width], total)
                    values[model][metric] = _nan_where(metric_values, total == 0)
        return {(self.target.name, m): values[0][m] - values[1][m] for m in self.target.metrics}


def _cumsum_with_leading_zero(weights: np.ndarray) -> np.ndarray:
    cumulative = np.zeros((weights.shape[0], weights.shape[1] + 1), dtype=weights.dtype)
    np.cumsum(weights, axis=1, out=cumulative[:, 1:])
    return cumulative


def _nan_where(values: np.ndarray, undefined: np.ndarray) -> np.ndarray:
    return np.where(undefined, np.nan, values)
