"""System signal family: Prometheus parsing, interval increases (restarts), p99 from buckets, the verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from pipelines.monitoring.alerts import AlertType, load_alert_policy
from pipelines.monitoring.system_signals import (
    SystemPolicy,
    evaluate_system,
    histogram_quantile,
    increase,
    parse_scrape,
    system_alerts,
)
from serving.gateway.metrics import GatewayMetrics

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
TRITON = """# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{{model="m",version="1"}} {ok}
nv_inference_request_success{{model="other",version="1"}} 999999
# HELP nv_inference_request_failure Number of failed inference requests
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{{model="m",version="1"}} {failed}
# HELP nv_inference_queue_duration_us Cumulative inference queuing duration in microseconds
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{{model="m",version="1"}} {queue_us}
"""


def gateway_text(latencies: list[float], errors: int = 0, model: str = "m") -> str:
    """The real gateway's metrics registry after answering these requests (serving.gateway.metrics)."""
    metrics = GatewayMetrics(CollectorRegistry())
    target = metrics.for_target(model, "1", "champion", "default")
    for seconds in latencies:
        target.answered.inc()
        target.latency.observe(seconds)
    if errors:
        metrics.requests.labels(model, "1", "champion", "default", "503").inc(errors)
    return generate_latest(metrics.registry).decode()


def test_parse_keeps_the_families_it_reads() -> None:
    scrape = parse_scrape("gateway", gateway_text([0.002] * 3), T0)
    names = {series.name for series in scrape.series}
    assert "gateway_requests" in names and "gateway_request_seconds_bucket" in names
    assert not any(name.endswith("_created") for name in names)
    triton = parse_scrape("triton", TRITON.format(ok=10, failed=1, queue_us=500), T0)
    assert {s.name for s in triton.series} == {
        "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_queue_duration_us"
    }  # fmt: skip


def test_histogram_quantile_interpolates_like_promql() -> None:
    buckets = {0.001: 50.0, 0.002: 90.0, 0.005: 100.0, float("inf"): 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.001)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.002 + 0.003 * 9 / 10)
    assert histogram_quantile(0.99, {0.001: 0.0, float("inf"): 0.0}) is None
    assert histogram_quantile(0.99, {0.001: 1.0, float("inf"): 100.0}) == 0.001  # beyond the last finite bucket


def test_the_interval_is_the_difference_of_two_scrapes() -> None:
    before = parse_scrape("gateway", gateway_text([0.002] * 100), T0)
    after = parse_scrape("gateway", gateway_text([0.002] * 100 + [0.2] * 200, errors=30), T0 + timedelta(hours=1))
    signal = evaluate_system((after, before), None, SystemPolicy(), model="m")
    by_name = {metric.name: metric for metric in signal.metrics}
    assert signal.requests == 230 and signal.interval_seconds == 3600
    assert by_name["gateway_error_rate"].value == pytest.approx(30 / 230)
    assert by_name["gateway_error_rate"].level == "alert"
    assert by_name["gateway_p99_ms"].value > 100  # only the slow requests are in the interval
    assert by_name["gateway_throughput_rps"].value == pytest.approx(230 / 3600)
    assert signal.status == "alert"


def test_a_restart_uses_the_totals_since_start_and_says_so() -> None:
    before = parse_scrape("gateway", gateway_text([0.002] * 500), T0)
    after = parse_scrape("gateway", gateway_text([0.002] * 150), T0 + timedelta(hours=1))
    delta, seconds, restarted = increase(after, before)
    assert restarted and seconds != seconds and delta == after  # NaN seconds: the interval is unknown
    signal = evaluate_system((after, before), None, SystemPolicy(), model="m")
    assert signal.requests == 150 and signal.status == "ok" and "restarted" in signal.notes[0]


def test_triton_queue_time_and_failures_per_model() -> None:
    before = parse_scrape("triton", TRITON.format(ok=1000, failed=0, queue_us=1_000_000), T0)
    after = parse_scrape("triton", TRITON.format(ok=1200, failed=10, queue_us=3_000_000), T0 + timedelta(hours=1))
    signal = evaluate_system(None, (after, before), SystemPolicy(), model="m")
    by_name = {metric.name: metric for metric in signal.metrics}
    assert by_name["triton_queue_ms"].value == pytest.approx(2_000_000 / 200 / 1000)  # 10 ms per request
    assert by_name["triton_queue_ms"].level == "warn"
    assert by_name["triton_failure_rate"].value == pytest.approx(10 / 210)
    assert signal.requests == 210 and signal.status == "warn"
    (alert,) = system_alerts(signal, load_alert_policy(), scope="m", report_uri="s3://x", raised_at=T0)
    assert alert.alert_type == AlertType.SYSTEM_HEALTH and alert.severity.value == "warning"
    assert "triton_queue_ms" in alert.title and alert.runbook_url.endswith("#system-health")


def test_quiet_or_missing_sources_are_not_judged() -> None:
    quiet = parse_scrape("gateway", gateway_text([0.5] * 5), T0)
    signal = evaluate_system((quiet, None), None, SystemPolicy(), model="m")
    assert signal.status == "insufficient_data"
    assert system_alerts(signal, load_alert_policy(), scope="m", report_uri="s3://x", raised_at=T0) == []
    assert evaluate_system(None, None, SystemPolicy()).status == "not_evaluated"
    other = parse_scrape("gateway", gateway_text([0.5] * 500, model="other"), T0)
    assert evaluate_system((other, None), None, SystemPolicy(), model="m").requests == 0
