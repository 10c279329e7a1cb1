"""System signals (pure): the gateway's and Triton's Prometheus metrics -> latency p99, error rate, queue time
and throughput over the interval between two scrapes, judged against `alerts.yaml` (`system`).

Why two scrapes: Prometheus counters and histograms are cumulative since the process started, so "the last
hour" is the difference between this run's scrape and the previous run's (stored by the adapter). A counter
that went down means the process restarted: then the current values are used as they are (since the
restart) and the signal says so. Quantiles are interpolated inside histogram buckets as PromQL's
`histogram_quantile` does.

Metric names (what the services expose): gateway `gateway_requests_total{status}` and
`gateway_request_seconds_bucket{le}` (serving/gateway/metrics.py); Triton `nv_inference_request_success`,
`nv_inference_request_failure`, `nv_inference_queue_duration_us` (per model and version).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import AwareDatetime, Field

from pipelines.config_loading import StrictModel
from pipelines.monitoring.policy import Band, Severity

if TYPE_CHECKING:
    from pipelines.monitoring.alerts import Alert, AlertPolicy

Source = Literal["gateway", "triton"]
SystemStatus = Literal["ok", "warn", "alert", "insufficient_data", "not_evaluated"]


class SystemPolicy(StrictModel):
    """Thresholds of the system family (higher is worse for every band)."""

    min_requests: int = Field(100, ge=1)
    gateway_p99_ms: Band = Band(warn=50, alert=250)
    error_rate: Band = Band(warn=0.01, alert=0.05)
    triton_queue_ms: Band = Band(warn=5, alert=50)
    min_throughput_rps: float | None = Field(None, gt=0)  # a traffic floor; None: traffic volume is not judged


class Series(StrictModel):
    """One sample of a scrape: metric name (a counter without `_total`, a histogram with `_bucket`), labels,
    value."""

    name: str
    labels: dict[str, str]
    value: float


class Scrape(StrictModel):
    source: Source
    scraped_at: AwareDatetime
    series: list[Series]


def parse_scrape(source: Source, text: str, scraped_at: datetime) -> Scrape:
    """A Prometheus text exposition as a Scrape (only the families this module reads are kept)."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = ("gateway_requests", "gateway_request_seconds", "nv_inference_")
    series = [
        # Counters without their `_total` suffix: the parser adds it to some exporters' counters, not others.
        Series(name=sample.name.removesuffix("_total"), labels=dict(sample.labels), value=float(sample.value))
        for family in text_string_to_metric_families(text)
        if family.name.startswith(wanted)
        for sample in family.samples
        if not sample.name.endswith("_created")  # creation timestamps, not counts
    ]
    return Scrape(source=source, scraped_at=scraped_at, series=series)


def _totals(scrape: Scrape) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in scrape.series}


def increase(current: Scrape, previous: Scrape | None) -> tuple[Scrape, float, bool]:
    """(the increase of every series since `previous`, the seconds it covers, whether a restart was seen).

    No previous scrape, another source, or any counter lower than before (a restart): the current totals
    (since the process started), with the interval unknown (NaN seconds)."""
    if previous is None or previous.source != current.source or previous.scraped_at >= current.scraped_at:
        return current, math.nan, False
    before = _totals(previous)
    changed = []
    for item in current.series:
        old = before.get((item.name, tuple(sorted(item.labels.items()))), 0.0)
        if item.value < old:
            return current, math.nan, True
        changed.append(item.model_copy(update={"value": item.value - old}))
    seconds = (current.scraped_at - previous.scraped_at).total_seconds()
    return current.model_copy(update={"series": changed}), seconds, False


def histogram_quantile(quantile: float, buckets: dict[float, float]) -> float | None:
    """PromQL's histogram_quantile over cumulative bucket counts {upper bound: count} (+Inf included)."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = quantile * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the largest finite bucket: its bound is the best lower estimate
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return bounds[-1]


class SystemMetric(StrictModel):
    name: str
    value: float | None
    level: Severity
    warn: float | None = None
    alert: float | None = None
    unit: str = ""


class SystemSignal(StrictModel):
    family: Literal["system"] = "system"
    status: SystemStatus
    summary: str
    interval_seconds: float | None
    requests: int
    metrics: list[SystemMetric]
    notes: list[str] = Field(default_factory=list)


def evaluate_system(
    gateway: tuple[Scrape, Scrape | None] | None,
    triton: tuple[Scrape, Scrape | None] | None,
    policy: SystemPolicy,
    *,
    model: str | None = None,
) -> SystemSignal:
    """Latency p99, error rate, queue time and throughput over the interval between the scrapes
    (`model`: only that model's series; None: every model)."""
    notes: list[str] = []
    metrics: list[SystemMetric] = []
    requests, seconds = 0, math.nan
    if gateway is not None:
        delta, seconds, restarted = increase(*gateway)
        if restarted:
            notes.append("the gateway restarted since the previous scrape: figures since its start")
        requests, errors, buckets = 0.0, 0.0, defaultdict(float)
        for item in delta.series:
            if model is not None and item.labels.get("model") != model:
                continue
            if item.name == "gateway_requests":
                requests += item.value
                errors += item.value if item.labels.get("status", "200").startswith("5") else 0.0
            elif item.name == "gateway_request_seconds_bucket":
                buckets[float(item.labels["le"])] += item.value
        p99 = histogram_quantile(0.99, dict(buckets))
        metrics.append(_judged("gateway_p99_ms", None if p99 is None else 1000 * p99, policy.gateway_p99_ms, "ms"))
        rate = errors / requests if requests else None
        metrics.append(_judged("gateway_error_rate", rate, policy.error_rate, ""))
        rps = requests / seconds if requests and math.isfinite(seconds) and seconds > 0 else None
        level = Severity.OK
        if rps is not None and policy.min_throughput_rps is not None and rps < policy.min_throughput_rps:
            level = Severity.WARN
        metrics.append(SystemMetric(name="gateway_throughput_rps", value=rps, level=level, unit="req/s",
                                    warn=policy.min_throughput_rps))  # fmt: skip
        requests = int(requests)
    else:
        notes.append("gateway metrics not scraped")
    if triton is not None:
        delta, triton_seconds, restarted = increase(*triton)
        if restarted:
            notes.append("Triton restarted since the previous scrape: figures since its start")
        sums: dict[str, float] = defaultdict(float)
        for item in delta.series:
            if model is not None and item.labels.get("model") != model:
                continue
            sums[item.name] += item.value
        success, failure = sums["nv_inference_request_success"], sums["nv_inference_request_failure"]
        queue = sums["nv_inference_queue_duration_us"] / success / 1000 if success else None
        metrics.append(_judged("triton_queue_ms", queue, policy.triton_queue_ms, "ms"))
        failures = failure / (success + failure) if success + failure else None
        metrics.append(_judged("triton_failure_rate", failures, policy.error_rate, ""))
        if gateway is None:
            requests, seconds = int(success + failure), triton_seconds
    else:
        notes.append("Triton metrics not scraped")
    interval = seconds if math.isfinite(seconds) else None
    if gateway is None and triton is None:
        return SystemSignal(status="not_evaluated", summary="no metrics scraped", interval_seconds=None, requests=0,
                            metrics=[], notes=notes)  # fmt: skip
    if requests < policy.min_requests:
        summary = f"{requests} requests in the interval, fewer than {policy.min_requests}: not judged"
        return SystemSignal(status="insufficient_data", summary=summary, interval_seconds=interval,
                            requests=requests, metrics=metrics, notes=notes)  # fmt: skip
    loudest = max((m.level for m in metrics), key=lambda level: level.rank, default=Severity.OK)
    shown = [m for m in metrics if m.level != Severity.OK] or metrics
    summary = "; ".join(f"{m.name} {_value(m)}" + (f" ({m.level.value})" if m.level != Severity.OK else "")
                        for m in shown)  # fmt: skip
    return SystemSignal(status=loudest.value, summary=f"{requests} requests: {summary}", interval_seconds=interval,
                        requests=requests, metrics=metrics, notes=notes)  # type: ignore[arg-type]  # fmt: skip


def _judged(name: str, value: float | None, band: Band, unit: str) -> SystemMetric:
    return SystemMetric(name=name, value=value, level=band.level(value), warn=band.warn, alert=band.alert, unit=unit)


def _value(metric: SystemMetric) -> str:
    if metric.value is None:
        return "n/a"
    return f"{metric.value:.4g}{(' ' + metric.unit) if metric.unit else ''}"


def system_alerts(
    signal: SystemSignal, policy: AlertPolicy, *, scope: str, report_uri: str, raised_at: datetime
) -> list[Alert]:
    """One system_health alert at the signal's level (warn | alert); nothing otherwise."""
    from pipelines.monitoring.alerts import AlertType, make_alert

    if signal.status not in ("warn", "alert"):
        return []
    loud = [metric.name for metric in signal.metrics if metric.level != Severity.OK]
    return [
        make_alert(
            policy,
            AlertType.SYSTEM_HEALTH,
            level=signal.status,
            scope=scope,
            title=f"system health on {scope}: {', '.join(loud)}",
            summary=signal.summary,
            report_uri=report_uri,
            raised_at=raised_at,
            details={"metrics": [metric.model_dump(mode="json") for metric in signal.metrics]},
        )
    ]
