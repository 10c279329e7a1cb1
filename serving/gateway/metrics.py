"""Prometheus metrics of the gateway, per model / version / route, on a registry owned by one app instance.

These are the signals the rollout guardrails read over a window: error rate and latency per version (the
challenger against the champion), the distribution of predictions per version (a shift against the champion),
and for the shadow its latency, its failures and its disagreement with the primary answer. Label values come
from the route table only (an unknown model name from a URL is recorded as "<unknown>"), so a client cannot
grow the label space. Children are cached: `.labels()` does a dict lookup under a lock, which is measurable on
the request path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

UNKNOWN_MODEL = "<unknown>"
# Request latency on a CPU Triton is ~0.5-5 ms; the tail goes to seconds under overload.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_PREDICTION_BUCKETS = tuple(round(step * 0.05, 2) for step in range(1, 21))
_DIFF_BUCKETS = (1e-6, 1e-4, 1e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass(frozen=True, slots=True)
class TargetMetrics:
    """The label children one answered request touches, resolved once per (model, version, route, pool)."""

    answered: Any
    latency: Any
    upstream_latency: Any
    rows: Any
    predictions: Any


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gateway_requests", "Predictions answered, by outcome (HTTP status).",
            ["model", "version", "route", "pool", "status"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "gateway_request_seconds", "Time in the gateway from request received to response sent.",
            ["model", "version", "route"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream_latency = Histogram(
            "gateway_upstream_seconds", "Triton round trip of the primary request.",
            ["model", "version", "route"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.rows = Counter("gateway_rows", "Rows predicted.", ["model", "version", "route"], registry=r)
        self.predictions = Histogram(
            "gateway_prediction", "Distribution of the first scalar output (e.g. probability) per version.",
            ["model", "version", "route"], buckets=_PREDICTION_BUCKETS, registry=r,
        )  # fmt: skip
        self.rejected = Counter(
            "gateway_rejected", "Requests refused before routing, by reason.", ["model", "reason", "status"], registry=r
        )
        self.shadow_requests = Counter(
            "gateway_shadow_requests", "Mirrored requests, by outcome (ok, error, dropped).",
            ["model", "version", "outcome"], registry=r,
        )  # fmt: skip
        self.shadow_latency = Histogram(
            "gateway_shadow_upstream_seconds", "Triton round trip of the mirrored request.",
            ["model", "version"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.shadow_predictions = Histogram(
            "gateway_shadow_prediction", "The shadow version's first scalar output on mirrored requests.",
            ["model", "version"], buckets=_PREDICTION_BUCKETS, registry=r,
        )  # fmt: skip
        self.shadow_diff = Histogram(
            "gateway_shadow_abs_diff", "Max absolute difference between shadow and primary outputs of a request.",
            ["model", "primary_version", "shadow_version"], buckets=_DIFF_BUCKETS, registry=r,
        )  # fmt: skip
        self.routes_version = Gauge(
            "gateway_routes_state_version", "State version of the routes this replica applies.", ["model"], registry=r
        )
        self.samples = Counter(
            "gateway_sample_records", "Sampled records by fate (written, dropped).", ["kind", "fate"], registry=r
        )
        self.sample_write_errors = Counter(
            "gateway_sample_write_errors", "Failed attempts to write a sample batch to S3.", registry=r
        )
        self.routing_state_up = Gauge(
            "gateway_routing_state_up", "1 when the last poll of the routing state (Redis) succeeded.", registry=r
        )
        self._children: dict[tuple[object, ...], object] = {}
        self._targets: dict[tuple[str, str, str, str], TargetMetrics] = {}

    def for_target(self, model: str, version: str, route: str, pool: str) -> TargetMetrics:
        key = (model, version, route, pool)
        bundle = self._targets.get(key)
        if bundle is None:
            bundle = TargetMetrics(
                answered=self.requests.labels(model, version, route, pool, "200"),
                latency=self.latency.labels(model, version, route),
                upstream_latency=self.upstream_latency.labels(model, version, route),
                rows=self.rows.labels(model, version, route),
                predictions=self.predictions.labels(model, version, route),
            )
            self._targets[key] = bundle
        return bundle

    def child(self, metric: object, *labels: str) -> object:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(*labels)  # type: ignore[attr-defined]
            self._children[key] = child
        return child
