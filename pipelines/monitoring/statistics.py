"""Two-sample drift statistics on compact summaries.

Library implementations are used wherever their cost is bounded by the number of distinct values (scipy's
Jensen-Shannon, chi-square, KS, normal tail). The one exception is the Wasserstein distance: scipy's version
re-sorts both raw samples and binary-searches every value on every call; here the reference is sorted once
per profile and the window once per check, so a linear pass gives the same number (asserted against scipy
in the unit tests).
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats
from scipy.spatial import distance

from pipelines.monitoring.samples import SortedCounts

# Empty bins would make PSI infinite; flooring shares at 1e-4 is the customary fix and caps one bin's term.
PSI_FLOOR = 1e-4


def wasserstein_distance(reference: SortedCounts, current: np.ndarray) -> float:
    """First Wasserstein distance between a reference and a sorted window: the integral over t in [0, 1] of
    |Q_ref(t) - Q_cur(t)|, the gap between the two quantile functions.

    The window's quantile function steps at t = j/n, so value j owns a slot of width 1/n; the reference steps
    at its cumulative shares K_i/m. Pairing each slot with the reference value in force at the slot's start is
    one np.repeat and exact everywhere except in slots a reference step falls strictly inside; those (at most
    one per reference value) get an exact correction. Linear in the window, with no merge and no search.
    """
    n, m = current.size, reference.total
    cumulative = np.cumsum(reference.counts)
    # Slot j starts under reference value i while K_{i-1} n <= j m < K_i n: integer ceilings, no rounding.
    first_slot_after = -(-cumulative * n // m)
    paired = np.repeat(reference.values, np.diff(first_slot_after, prepend=0))
    np.subtract(paired, current, out=paired)
    baseline = np.abs(paired, out=paired).sum() / n
    # A step at K_i/m inside slot s switches r_i -> r_{i+1} for the rest of the slot; corrections telescope
    # when several steps share a slot.
    scaled = cumulative[:-1] * n
    inside = np.flatnonzero(scaled % m)
    slot = scaled[inside] // m
    slot_value = current[slot]
    rest_of_slot = (slot + 1) / n - cumulative[inside] / m
    values = reference.values
    correction = rest_of_slot * (np.abs(values[inside + 1] - slot_value) - np.abs(values[inside] - slot_value))
    return float(baseline + correction.sum())


def ks_pvalue(reference: SortedCounts, current: np.ndarray) -> float:
    """Two-sided two-sample Kolmogorov-Smirnov p-value (scipy's method choice: exact for small samples)."""
    return float(stats.ks_2samp(reference.expand(), current).pvalue)


def counts_between_edges(at_or_below: np.ndarray, total: int) -> np.ndarray:
    """Bin counts in (-inf, e0], (e0, e1], ..., (e_last, inf) from the number of values <= each edge."""
    return np.diff(np.concatenate(([0], at_or_below, [total])))


def aligned_counts(
    reference_keys: np.ndarray,
    reference_counts: np.ndarray,
    current_keys: np.ndarray,
    current_counts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of both samples over the union of their (sorted, distinct) keys; absent keys count zero."""
    union = np.union1d(reference_keys, current_keys)
    reference_aligned = np.zeros(union.size, dtype=np.float64)
    current_aligned = np.zeros(union.size, dtype=np.float64)
    reference_aligned[np.searchsorted(union, reference_keys)] = reference_counts
    current_aligned[np.searchsorted(union, current_keys)] = current_counts
    return union, reference_aligned, current_aligned


def jensenshannon_distance(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log, so in [0, sqrt(ln 2)]), as Evidently computes it."""
    return float(distance.jensenshannon(reference_counts, current_counts))


def chisquare_pvalue(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Goodness of fit of the window's counts to the reference frequencies (Evidently's chi-square test).

    A category absent from the reference has zero expected count: the statistic is infinite and p is 0,
    which is the right verdict for a value that never occurred before.
    """
    expected = reference_counts * (current_counts.sum() / reference_counts.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(stats.chisquare(current_counts, expected).pvalue)


def two_proportion_z_pvalue(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Two-sided z-test that the share of the first key is the same in both samples (two keys at most)."""
    if reference_counts.size == 1:
        return 1.0  # one value on both sides: nothing can differ
    n_reference, n_current = reference_counts.sum(), current_counts.sum()
    share_reference = reference_counts[0] / n_reference
    share_current = current_counts[0] / n_current
    pooled = (reference_counts[0] + current_counts[0]) / (n_reference + n_current)
    z = (share_reference - share_current) / np.sqrt(pooled * (1 - pooled) * (1 / n_reference + 1 / n_current))
    return float(2 * stats.norm.sf(abs(z)))


def population_stability_index(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """PSI = sum((cur - ref) * ln(cur / ref)) over bins, i.e. the symmetrised KL divergence of the shares."""
    reference_share = np.maximum(reference_counts / reference_counts.sum(), PSI_FLOOR)
    current_share = np.maximum(current_counts / current_counts.sum(), PSI_FLOOR)
    return float(
        np.sum(special.rel_entr(current_share, reference_share) + special.rel_entr(reference_share, current_share))
    )
