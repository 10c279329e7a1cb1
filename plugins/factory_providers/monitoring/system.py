"""Scrape the gateway's and Triton's Prometheus metrics, and keep each source's previous scrape in S3 so the
next run judges the interval in between (`pipelines.monitoring.system_signals`).

URLs come from the Connections: `factory_gateway` (host, port: `/metrics`) and `factory_triton`
(host, `extra.metrics_port`: `/metrics`). A source that cannot be reached is reported, not raised: the drift
check must not fail because a metrics port is down (that outage is itself in the report).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from factory_providers.s3.hooks import FactoryS3Hook

if TYPE_CHECKING:
    from pipelines.monitoring.system_signals import Scrape, Source

log = logging.getLogger(__name__)
GATEWAY_CONN_ID = "factory_gateway"
TRITON_CONN_ID = "factory_triton"
DATA_BUCKET = "factory-data"
SCRAPES_PREFIX = "monitoring/system"


def metrics_urls() -> dict[Source, str]:
    """The /metrics URL of each source whose Connection is configured."""
    from airflow.sdk import BaseHook

    urls: dict[Source, str] = {}
    for source, conn_id in (("gateway", GATEWAY_CONN_ID), ("triton", TRITON_CONN_ID)):
        try:
            conn = BaseHook.get_connection(conn_id)
        except Exception as error:  # not configured: that source is "not scraped"
            log.warning("no %s connection %r: %s", source, conn_id, error)
            continue
        port = conn.extra_dejson.get("metrics_port") if source == "triton" else conn.port
        if conn.host and port:
            host = conn.host if "://" in conn.host else f"{conn.schema or 'http'}://{conn.host}"
            urls[source] = f"{host}:{port}/metrics"  # type: ignore[index]
    return urls


def scrape(source: Source, url: str, timeout: float = 5.0) -> Scrape:
    import httpx

    from pipelines.monitoring.system_signals import parse_scrape

    response = httpx.get(url, timeout=timeout)
    response.raise_for_status()
    return parse_scrape(source, response.text, datetime.now(UTC))


def scrape_with_previous(
    scope: str, *, bucket: str = DATA_BUCKET, hook: FactoryS3Hook | None = None, urls: dict[Any, str] | None = None
) -> tuple[dict[Source, tuple[Scrape, Scrape | None]], list[str]]:
    """Per reachable source, (this scrape, the previous one stored for `scope`); this scrape becomes the previous
    one for the next run. Returns the pairs and a note per source that could not be scraped."""
    from pipelines.monitoring.system_signals import Scrape

    s3 = hook or FactoryS3Hook()
    pairs: dict[Source, tuple[Scrape, Scrape | None]] = {}
    notes = []
    for source, url in (urls if urls is not None else metrics_urls()).items():
        try:
            current = scrape(source, url)
        except Exception as error:
            notes.append(f"{source} metrics at {url} not scraped: {type(error).__name__}: {error}"[:300])
            continue
        key = f"{SCRAPES_PREFIX}/{scope}/{source}-last.json"
        previous = None
        if s3.check_for_key(key, bucket_name=bucket):
            previous = Scrape.model_validate_json(s3.read_key(key, bucket_name=bucket))
        s3.load_string(current.model_dump_json(), key, bucket_name=bucket, replace=True)
        pairs[source] = (current, previous)
    return pairs, notes
