"""The serving gateway: one endpoint per model in front of Triton, with rollout routing.

Clients call `POST /v1/models/<model>/predict` with a bearer token and JSON rows or columns; the gateway checks
them against the model's signature, picks a Triton version by weight with sticky hashing on a routing key
(canary, percentage ramp), mirrors a share to a shadow version off the response path, and forwards to the active
Triton pool (blue-green). Routing state lives in Redis so every replica agrees.

A client call (the token is in $FACTORY_HOME/credentials.json, `gateway_token`):

    curl -H "Authorization: Bearer $TOKEN" -H "X-Routing-Key: customer-42" \
         -d '{"rows": [{"dep_delay": 3, "sched_dep_time": 1530, "distance": 1000,
                        "carrier": "UA", "origin": "JFK", "dest": null}]}' \
         http://127.0.0.1:8090/v1/models/flights_delay/predict
    -> {"request_id": "...", "model": "flights_delay", "version": 3, "route": "champion",
        "outputs": {"probability": [0.21]}}

A rollout step (what the rollout DAG does; compare-and-set, then wait for every replica before unloading
anything the old routes used):

    store = RouteStore(redis_url, prefix)
    current = store.get_routes("flights_delay")
    table = store.set_routes("flights_delay", Routes.split(3, 4, 25).with_shadow(4),
                             expected_version=current.state_version, reason="ramp to 25 %")
    store.wait_until_applied("flights_delay", table.state_version)

Modules: `routing` (pure: routes, bucket allocation, choice), `state` (Redis store: `RouteStore.set_routes` /
`get_routes` with compare-and-set, and the replicas' watcher), `validation` (pure: request vs signature),
`kserve` (pure: Triton binary tensor protocol), `upstream` (pooled keep-alive client), `metrics`, `sampling`
(requests + predictions to S3), `app` (the ASGI app), `config` (environment), `__main__` (uvicorn).
"""

from serving.gateway.routing import Route, Routes, RouteTable, RoutingError, Shadow
from serving.gateway.state import RouteConflict, RouteStateError, RouteStore

__all__ = [
    "Route",
    "RouteConflict",
    "RouteStateError",
    "RouteStore",
    "RouteTable",
    "Routes",
    "RoutingError",
    "Shadow",
]
