"""The serving gateway through an Airflow Connection: its routing state (Redis) and its replicas' metrics.

The Connection (http) holds one gateway endpoint and the bearer token; its extra holds `redis_url` and
`redis_prefix`, where every replica reads its routes. Rollouts write routes there (compare-and-set), wait
until every live replica applies them, and scrape every replica's /metrics at the URL it advertises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from pipelines.rollout.window import Scrape
    from serving.gateway.routing import Routes, RouteTable
    from serving.gateway.state import RouteStore


class GatewayError(RuntimeError):
    """A gateway replica could not be reached or its routes not applied; the message names which and why."""


class GatewayHook(BaseHook):
    conn_name_attr = "gateway_conn_id"
    default_conn_name = "factory_gateway"
    conn_type = "http"
    hook_name = "Model factory serving gateway"

    def __init__(self, gateway_conn_id: str = default_conn_name, timeout: float = 5.0) -> None:
        super().__init__()
        self.gateway_conn_id = gateway_conn_id
        self.timeout = timeout

    @property
    def url(self) -> str:
        conn = self.get_connection(self.gateway_conn_id)
        if not conn.host or not conn.port:
            raise ValueError(f"connection {self.gateway_conn_id!r} needs host and port (AIRFLOW_CONN_FACTORY_GATEWAY)")
        return f"{conn.schema or 'http'}://{conn.host}:{conn.port}"

    def route_store(self) -> RouteStore:
        from serving.gateway.state import RouteStore

        extra = self.get_connection(self.gateway_conn_id).extra_dejson
        url = extra.get("redis_url", "redis://127.0.0.1:6379/0")
        return RouteStore(url, extra.get("redis_prefix", "factory:gateway"))

    def apply_routes(
        self, store: RouteStore, model: str, routes: Routes, *, reason: str, timeout: float = 15.0
    ) -> RouteTable:
        """Write `routes` over the current table (compare-and-set) and return once every live replica applies
        them: after this, no replica sends a request where the old routes pointed."""
        current = store.get_routes(model)
        table = store.set_routes(model, routes, current.state_version if current else 0, reason=reason)
        store.wait_until_applied(model, table.state_version, timeout=timeout)
        return table

    def replica_urls(self, store: RouteStore) -> dict[str, str]:
        """Live replica id -> URL; the Connection's endpoint when no replica advertises one."""
        return store.replica_urls() or {"connection": self.url}

    def scrape(self, urls: dict[str, str]) -> dict[str, Scrape]:
        """Every replica's /metrics, parsed. A replica that does not answer fails the scrape: a window judged on
        part of the fleet could miss exactly the replica that misbehaves."""
        import httpx

        from pipelines.rollout.window import parse_scrape

        scrapes = {}
        for replica, url in urls.items():
            try:
                response = httpx.get(f"{url}/metrics", timeout=self.timeout)
                response.raise_for_status()
            except httpx.HTTPError as error:
                raise GatewayError(f"gateway replica {replica} at {url}: metrics unavailable ({error})") from None
            scrapes[replica] = parse_scrape(response.text, f"{replica} ({url})")
        return scrapes
