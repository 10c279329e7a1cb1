"""What the gateway measured during one rollout step: Prometheus scrapes in, per-version window statistics out.

A step scrapes every gateway replica when it starts and when it ends; the window is the difference of the
summed counters. Counters only grow, so the difference is exactly what happened in the window, whatever ran
before it (a counter that went down means the replica restarted: its later value is the window). Percentiles
come from the cumulative histogram buckets, linearly interpolated inside the bucket, the way Prometheus's
`histogram_quantile` does it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

SampleKey = tuple[str, tuple[tuple[str, str], ...]]  # sample name, sorted (label, value) pairs
Scrape = dict[SampleKey, float]


class ScrapeError(ValueError):
    """A metrics page could not be parsed; the message names the source."""


def parse_scrape(text: str, source: str) -> Scrape:
    """One replica's /metrics page as {(sample name, labels): value}."""
    samples: Scrape = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    except ValueError as error:
        raise ScrapeError(f"metrics of {source} are not Prometheus text: {error}") from None
    return samples


def combine(scrapes: Iterable[Scrape]) -> Scrape:
    """Sum of the replicas' samples: the fleet's counters."""
    total: Scrape = {}
    for scrape in scrapes:
        for key, value in scrape.items():
            total[key] = total.get(key, 0.0) + value
    return total


def window_delta(before: Mapping[str, Scrape], after: Mapping[str, Scrape]) -> Scrape:
    """Per replica `after - before`, then summed; a replica that restarted counts from zero, a new one fully."""
    deltas = []
    for replica, end in after.items():
        start = before.get(replica, {})
        deltas.append({key: value - start.get(key, 0.0) if value >= start.get(key, 0.0) else value
                       for key, value in end.items()})  # fmt: skip
    return combine(deltas)


def _select(window: Scrape, name: str, **labels: str) -> Iterable[tuple[dict[str, str], float]]:
    for (sample, pairs), value in window.items():
        if sample != name:
            continue
        found = dict(pairs)
        if all(found.get(label) == wanted for label, wanted in labels.items()):
            yield found, value


def _buckets(window: Scrape, name: str, **labels: str) -> tuple[tuple[float, float], ...]:
    """Cumulative (upper bound, count) of a histogram, summed over the labels not selected, sorted by bound."""
    cumulative: dict[float, float] = {}
    for found, value in _select(window, f"{name}_bucket", **labels):
        bound = float(found["le"])
        cumulative[bound] = cumulative.get(bound, 0.0) + value
    return tuple(sorted(cumulative.items()))


def histogram_quantile(quantile: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus's estimate from cumulative buckets; None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = quantile * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # above the highest finite bucket: its bound is all that is known
            inside = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / inside if inside else 1.0)
        lower_bound, lower_count = bound, count
    return buckets[-1][0]


def bucket_counts(buckets: Sequence[tuple[float, float]]) -> tuple[float, ...]:
    """Per-bucket (non-cumulative) counts."""
    counts, previous = [], 0.0
    for _, cumulative in buckets:
        counts.append(max(cumulative - previous, 0.0))
        previous = cumulative
    return tuple(counts)


@dataclass(frozen=True)
class VersionWindow:
    """Primary traffic a model version answered in the window (all routes and pools of the model)."""

    version: int
    requests: int
    errors: int  # answered with a 5xx: Triton failed or timed out behind the gateway
    latency_buckets: tuple[tuple[float, float], ...]  # request in -> response out, at the gateway
    upstream_buckets: tuple[tuple[float, float], ...]  # the Triton round trip alone (compared with the shadow's)
    prediction_buckets: tuple[tuple[float, float], ...]

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class ShadowWindow:
    """Mirrored requests to the shadow version in the window, and how far its answers were from the primary's."""

    version: int
    answered: int
    errors: int
    dropped: int
    upstream_buckets: tuple[tuple[float, float], ...]
    diff_buckets: tuple[tuple[float, float], ...]
    prediction_buckets: tuple[tuple[float, float], ...] = ()  # the shadow version's scores on mirrored requests

    @property
    def error_rate(self) -> float:
        attempted = self.answered + self.errors
        return self.errors / attempted if attempted else 0.0

    def disagreement(self, threshold: float) -> float:
        """Share of compared requests whose outputs differ by more than the largest bucket bound <= threshold
        (a conservative rounding: the histogram cannot tell apart differences inside one bucket)."""
        compared = self.diff_buckets[-1][1] if self.diff_buckets else 0.0
        if compared <= 0:
            return 0.0
        within = max((count for bound, count in self.diff_buckets if bound <= threshold), default=0.0)
        return (compared - within) / compared


def version_window(window: Scrape, model: str, version: int) -> VersionWindow:
    labels = {"model": model, "version": str(version)}
    requests = errors = 0.0
    for found, value in _select(window, "gateway_requests_total", **labels):
        requests += value
        if found.get("status", "").startswith("5"):
            errors += value
    return VersionWindow(
        version=version,
        requests=round(requests),
        errors=round(errors),
        latency_buckets=_buckets(window, "gateway_request_seconds", **labels),
        upstream_buckets=_buckets(window, "gateway_upstream_seconds", **labels),
        prediction_buckets=_buckets(window, "gateway_prediction", **labels),
    )


def shadow_window(window: Scrape, model: str, version: int) -> ShadowWindow:
    outcomes = {"ok": 0.0, "error": 0.0, "dropped": 0.0}
    for found, value in _select(window, "gateway_shadow_requests_total", model=model, version=str(version)):
        outcome = found.get("outcome", "error")
        outcomes[outcome] = outcomes.get(outcome, 0.0) + value
    return ShadowWindow(
        version=version,
        answered=round(outcomes["ok"]),
        errors=round(outcomes["error"]),
        dropped=round(outcomes["dropped"]),
        upstream_buckets=_buckets(window, "gateway_shadow_upstream_seconds", model=model, version=str(version)),
        diff_buckets=_buckets(window, "gateway_shadow_abs_diff", model=model, shadow_version=str(version)),
        prediction_buckets=_buckets(window, "gateway_shadow_prediction", model=model, version=str(version)),
    )
