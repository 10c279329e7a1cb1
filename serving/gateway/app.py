"""The gateway as a plain ASGI application: auth, validation, routing, forwarding to Triton, metrics, sampling.

Endpoints:
    POST /v1/models/<model>/predict   bearer token; JSON rows or columns (serving.gateway.validation)
    GET  /v1/models/<model>/routes    bearer token; the route table this replica applies
    GET  /healthz                     liveness + what the replica applies (always 200 while the process serves)
    GET  /readyz                      200 once the routing state is loaded (a later Redis outage freezes
                                      routing but keeps serving), else 503
    GET  /metrics                     Prometheus text format

Why raw ASGI rather than FastAPI/Starlette: the request path is a handful of branches, and a framework's
routing, dependency injection and response classes cost tens of microseconds per request, a visible share
of a single-row Triton call (the overhead target is 1.3x direct Triton at p50).

Order on the request path: token (before anything is read, so an anonymous client learns nothing), body size
(Content-Length, then while reading), JSON, routing (the key picks a version), validation against the model's
signature (read from Triton's model config, cached per model and pool), forward, answer. Only after the answer is
sent: metrics, the monitoring sample, and the shadow request, so none of them adds to the client's latency.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.gateway.batching import Coalescer
from serving.gateway.config import GatewayConfig
from serving.gateway.kserve import HEADER_LENGTH, InferenceError, RequestEncoder, decode_response, triton_error_message
from serving.gateway.metrics import UNKNOWN_MODEL, GatewayMetrics
from serving.gateway.routing import CompiledRoutes, Target
from serving.gateway.sampling import DirectorySink, PredictionRecord, RequestSampler, S3Sink, SampleSink, ShadowRecord
from serving.gateway.state import RouteWatcher, redacted
from serving.gateway.upstream import TritonPool, UpstreamError
from serving.gateway.validation import InputSchema, ParsedRequest, RequestError, signature_from_triton_config

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_PREFIX = "/v1/models/"
_JSON = (b"content-type", b"application/json")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_MAX_REQUEST_ID = 128


@dataclass(slots=True)
class _Request:
    started: float
    request_id: str
    model: str
    authorization: bytes | None
    content_length: int | None
    routing_key: str | None


class _ClientGone(Exception):
    pass


@dataclass(frozen=True, slots=True)
class ServedModel:
    """What the request path needs to know about a model on a pool, built from Triton's model config."""

    schema: InputSchema
    encoder: RequestEncoder
    scalar_output: str | None  # the first output when it is one FP32 value per row (its distribution is tracked)

    @classmethod
    def from_schema(cls, schema: InputSchema) -> ServedModel:
        first = schema.outputs[0]
        scalar = first.name if first.dtype == "FP32" and first.dims == (1,) else None
        return cls(schema, RequestEncoder(schema.inputs, schema.outputs), scalar)


class Gateway:
    """`Gateway(config)` is the ASGI app; uvicorn (serving/gateway/__main__.py) runs it."""

    def __init__(self, config: GatewayConfig, *, sink: SampleSink | None = None) -> None:
        self.config = config
        self.metrics = GatewayMetrics()
        self._tokens = [token.encode() for token in config.tokens]
        self.pools = {
            name: TritonPool(name, list(urls), max_connections=config.max_connections, timeout=config.upstream_timeout)
            for name, urls in config.pools.items()
        }
        # Mirrored traffic gets its own connections: a slow challenger cannot hold the champion's connections.
        self.shadow_pools = {
            name: TritonPool(
                name, list(urls), max_connections=config.shadow_max_inflight, timeout=config.upstream_timeout
            )
            for name, urls in config.pools.items()
        }
        self.watcher = RouteWatcher(
            config.redis_url, config.redis_prefix, config.replica_id,
            poll_interval=config.poll_interval, on_change=self._routes_changed, advertise_url=config.advertise_url,
        )  # fmt: skip
        self.sampler: RequestSampler | None = None
        if sink is None and config.sample_dir is not None:
            sink = DirectorySink(config.sample_dir)
        if sink is None and config.sample_bucket is not None:
            sink = S3Sink(config.sample_bucket, config.s3_endpoint, config.s3_region)
        if sink is not None:
            self.sampler = RequestSampler(
                sink, prefix=config.sample_prefix, share=config.sample_share, replica_id=config.replica_id,
                metrics=self.metrics, max_records=config.sample_max_records, max_interval=config.sample_max_interval,
            )  # fmt: skip
        self.metrics.routing_state_up.set_function(lambda: float(self.watcher.error is None and self.watcher.loaded))
        self._served: dict[tuple[str, str], ServedModel] = {}
        self._fetching: dict[tuple[str, str], asyncio.Task[ServedModel]] = {}
        self._coalescers: dict[tuple[str, int, str, bool], Coalescer] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._shadow_inflight = 0

    # ----- ASGI -------------------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as error:
                    log.exception("gateway start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        await self.watcher.start()
        if self.sampler is not None:
            self.sampler.start()
        pools = ", ".join(f"{name}={[e.url for e in pool.endpoints]}" for name, pool in self.pools.items())
        log.info(
            "gateway replica %s: routing state %s (%s), pools %s, sampling %.1f %%",
            self.config.replica_id, redacted(self.config.redis_url), self.config.redis_prefix, pools,
            100 * self.config.sample_share if self.sampler else 0.0,
        )  # fmt: skip

    async def shutdown(self) -> None:
        await self.watcher.stop()
        if self._background:
            await asyncio.wait(self._background, timeout=5)
        if self.sampler is not None:
            await self.sampler.close()
        for pool in (*self.pools.values(), *self.shadow_pools.values()):
            pool.close()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith(_PREFIX):
            model, _, action = path[len(_PREFIX) :].partition("/")
            if action == "predict":
                if method != "POST":
                    await _respond(send, 405, {"error": "use POST for predictions"}, [(b"allow", b"POST")])
                    return
                await self._predict(model, scope, receive, send)
                return
            if action == "routes" and method == "GET":
                await self._routes(model, scope, send)
                return
        elif method == "GET" and path == "/metrics":
            body = generate_latest(self.metrics.registry)
            await _send(send, 200, body, [(b"content-type", CONTENT_TYPE_LATEST.encode())])
            return
        elif method == "GET" and path == "/healthz":
            await _respond(send, 200, self.health())
            return
        elif method == "GET" and path == "/readyz":
            health = self.health()
            await _respond(send, 200 if health["ready"] else 503, health)
            return
        await _respond(send, 404, {"error": f"no endpoint {method} {path}"})

    def health(self) -> dict[str, Any]:
        watcher = self.watcher
        return {
            "status": "ok",
            # Ready once routes are loaded. A later Redis outage freezes routing but keeps serving: failing
            # readiness then would take every replica out of rotation because of Redis.
            "ready": watcher.loaded,
            "replica": self.config.replica_id,
            "routing": {"loaded": watcher.loaded, "error": watcher.error, "models": watcher.applied()},
            "pools": {name: [endpoint.url for endpoint in pool.endpoints] for name, pool in self.pools.items()},
        }

    # ----- predictions ------------------------------------------------------------------------------------------
    async def _predict(self, model: str, scope: Scope, receive: Receive, send: Send) -> None:
        request = _read_headers(scope, model)
        compiled: CompiledRoutes | None = None
        target: Target | None = None
        try:
            if not self._authorized(request.authorization):
                raise RequestError(401, "missing or invalid bearer token (Authorization: Bearer <token>)")
            compiled = self._routes_of(model)
            limit = self.config.max_body_bytes
            if request.content_length is not None and request.content_length > limit:
                raise RequestError(413, f"body of {request.content_length} bytes exceeds the limit of {limit}")
            body = await _read_body(receive, limit)
            try:
                document = _decode(body)
            except msgspec.DecodeError as error:
                raise RequestError(400, f"body is not valid JSON: {error}") from None
            key = request.routing_key
            if key is None and type(document) is dict:
                key = document.get("routing_key") if type(document.get("routing_key")) is str else None
            target = compiled.choose(key or request.request_id)
            served = self._served.get((model, target.pool)) or await self._fetch_served(model, target.pool)
            parsed = served.schema.parse(document)
            answer = await self._coalescer(model, target, served, shadow=False).infer(parsed)
            outputs, upstream = answer.outputs, answer.upstream_seconds
        except RequestError as error:
            await self._reject(send, request, compiled, target, error.status, error.message, error.field)
            return
        except InferenceError as error:
            log.warning("request %s to %s: %s", request.request_id, model, error.message)
            await self._reject(send, request, compiled, target, error.status, error.message, None)
            return
        except _ClientGone:
            return
        version = str(target.version)
        await _respond(
            send,
            200,
            {"request_id": request.request_id, "model": model, "version": target.version, "route": target.label,
             "outputs": outputs},
            [(b"x-request-id", request.request_id.encode()), (b"x-model-version", version.encode()),
             (b"x-route", target.label.encode()), (b"x-pool", target.pool.encode())],
        )  # fmt: skip
        # ----- after the response: nothing below adds to the client's latency -----
        self._observe(model, target, request, upstream, parsed.rows, outputs, served)
        if self.sampler is not None and self.sampler.wants():
            self.sampler.add_prediction(
                PredictionRecord(
                    request.request_id, time.time(), model, target.version, target.label, target.pool,
                    upstream * 1e3, parsed.rows, parsed.columns, outputs,
                )
            )  # fmt: skip
        shadow = compiled.shadow_for(target, request.request_id)
        if shadow is not None:
            self._start_shadow(model, shadow, target, request.request_id, served, parsed, outputs, upstream)

    def _coalescer(self, model: str, target: Target, served: ServedModel, *, shadow: bool) -> Coalescer:
        """The shared-call queue of a target; shadow traffic has its own (and its own connections)."""
        key = (model, target.version, target.pool, shadow)
        coalescer = self._coalescers.get(key)
        if coalescer is None:
            pool = self._pool(self.shadow_pools if shadow else self.pools, target)
            path = f"/v2/models/{model}/versions/{target.version}/infer"

            async def call(columns: dict[str, list[Any]], rows: int) -> dict[str, list[Any]]:
                encoded = served.encoder.encode(columns, rows)
                try:
                    response = await pool.post(
                        path, encoded.body, f"Inference-Header-Content-Length: {encoded.header_length}\r\n"
                    )
                except UpstreamError as error:
                    raise InferenceError(504 if error.timeout else 503, f"pool {target.pool!r}: {error}") from None
                return _outputs(response, served.schema, model, target)

            coalescer = Coalescer(
                call, max_rows=served.schema.max_rows, max_inflight=self.config.max_inflight_per_target
            )
            self._coalescers[key] = coalescer
        return coalescer

    def _authorized(self, authorization: bytes | None) -> bool:
        if authorization is None or authorization[:7].lower() != b"bearer ":
            return False
        given = authorization[7:].strip()
        # Every token is compared (constant time each), so timing reveals neither a token nor which one matched.
        return sum(hmac.compare_digest(given, token) for token in self._tokens) > 0

    def _routes_of(self, model: str) -> CompiledRoutes:
        compiled = self.watcher.tables.get(model)
        if compiled is not None:
            return compiled
        if not self.watcher.loaded:
            raise InferenceError(503, f"routing state not loaded yet ({self.watcher.error or 'starting'})")
        raise RequestError(404, f"model {model!r} has no routes on this gateway")

    def _pool(self, pools: dict[str, TritonPool], target: Target) -> TritonPool:
        pool = pools.get(target.pool)
        if pool is None:
            raise InferenceError(503, f"routes name pool {target.pool!r}, which this gateway has no endpoints for "
                                      f"(pools: {sorted(pools)})")  # fmt: skip
        return pool

    async def _fetch_served(self, model: str, pool_name: str) -> ServedModel:
        """Read the model's config from the pool once; concurrent first requests share the one fetch."""
        key = (model, pool_name)
        fetching = self._fetching.get(key)
        if fetching is None:
            fetching = asyncio.ensure_future(self._fetch_schema(model, pool_name))
            self._fetching[key] = fetching
            fetching.add_done_callback(lambda _: self._fetching.pop(key, None))
        served = await asyncio.shield(fetching)
        self._served[key] = served
        return served

    async def _fetch_schema(self, model: str, pool_name: str) -> ServedModel:
        pool = self.pools.get(pool_name)
        if pool is None:
            raise InferenceError(503, f"routes name pool {pool_name!r}, which this gateway has no endpoints for "
                                      f"(pools: {sorted(self.pools)})")  # fmt: skip
        try:
            response = await pool.get(f"/v2/models/{model}/config")
        except UpstreamError as error:
            raise InferenceError(503, f"pool {pool_name!r}: {error}") from None
        if response.status != 200:
            raise InferenceError(
                503, f"model {model!r} is not available on pool {pool_name!r}: {triton_error_message(response.body)}"
            )
        try:
            signature, max_batch_size = signature_from_triton_config(_decode(response.body), model)
        except (ValueError, msgspec.DecodeError) as error:
            raise InferenceError(502, f"model {model!r} on pool {pool_name!r}: {error}") from None
        return ServedModel.from_schema(InputSchema.from_signature(signature, max_batch_size))

    def _routes_changed(self, model: str, compiled: CompiledRoutes | None) -> None:
        """A model's table changed: forget its cached schemas (a deploy may have changed the config)."""
        for key in [key for key in self._served if key[0] == model]:
            del self._served[key]
        for key in [key for key in self._coalescers if key[0] == model]:
            del self._coalescers[key]  # calls in flight keep theirs; new requests use the new schema
        if compiled is None:
            self.metrics.routes_version.remove(model)
            log.info("routes of %s removed", model)
            return
        self.metrics.routes_version.labels(model).set(compiled.state_version)
        routes = compiled.table.routes
        log.info(
            "routes of %s at state_version %d: %s on pool %s%s",
            model, compiled.state_version,
            ", ".join(f"v{route.version} {route.percent:g} % ({route.label})" for route in routes.routes),
            routes.pool, f", shadow v{routes.shadow.version} ({routes.shadow.share:.0%})" if routes.shadow else "",
        )  # fmt: skip

    async def _routes(self, model: str, scope: Scope, send: Send) -> None:
        request = _read_headers(scope, model)
        if not self._authorized(request.authorization):
            await self._reject(send, request, None, None, 401, "missing or invalid bearer token", None)
            return
        compiled = self.watcher.tables.get(model)
        if compiled is None:
            await _respond(send, 404, {"error": f"model {model!r} has no routes on this gateway"})
            return
        await _send(send, 200, compiled.table.model_dump_json().encode(), [_JSON])

    async def _reject(
        self,
        send: Send,
        request: _Request,
        compiled: CompiledRoutes | None,
        target: Target | None,
        status: int,
        message: str,
        field: str | None,
    ) -> None:
        headers = [(b"x-request-id", request.request_id.encode())]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        body: dict[str, Any] = {"error": message, "request_id": request.request_id}
        if field is not None:
            body["field"] = field
        await _respond(send, status, body, headers)
        model = request.model if compiled is not None else UNKNOWN_MODEL
        if target is not None and status >= 500:
            self.metrics.child(self.metrics.requests, model, str(target.version), target.label, target.pool,
                               str(status)).inc()  # type: ignore[attr-defined]  # fmt: skip
        else:
            reason = {400: "bad_json", 401: "unauthorized", 404: "unknown_model", 413: "too_large",
                      422: "invalid_input"}.get(status, "unavailable")  # fmt: skip
            self.metrics.child(self.metrics.rejected, model, reason, str(status)).inc()  # type: ignore[attr-defined]

    def _observe(
        self,
        model: str,
        target: Target,
        request: _Request,
        upstream: float,
        rows: int,
        outputs: dict[str, list[Any]],
        served: ServedModel,
    ) -> None:
        metrics = self.metrics.for_target(model, str(target.version), target.label, target.pool)
        metrics.answered.inc()
        metrics.latency.observe(time.perf_counter() - request.started)
        metrics.upstream_latency.observe(upstream)
        metrics.rows.inc(rows)
        if served.scalar_output is not None:
            for value in outputs[served.scalar_output]:
                metrics.predictions.observe(value)

    # ----- shadow -----------------------------------------------------------------------------------------------
    def _start_shadow(
        self,
        model: str,
        shadow: Target,
        primary: Target,
        request_id: str,
        served: ServedModel,
        parsed: ParsedRequest,
        primary_outputs: dict[str, list[Any]],
        primary_latency: float,
    ) -> None:
        if self._shadow_inflight >= self.config.shadow_max_inflight:
            self.metrics.child(self.metrics.shadow_requests, model, str(shadow.version), "dropped").inc()  # type: ignore[attr-defined]
            return
        self._shadow_inflight += 1
        task = asyncio.create_task(
            self._shadow(model, shadow, primary, request_id, served, parsed, primary_outputs, primary_latency)
        )
        self._background.add(task)
        task.add_done_callback(self._shadow_done)

    def _shadow_done(self, task: asyncio.Task[None]) -> None:
        self._shadow_inflight -= 1
        self._background.discard(task)

    async def _shadow(
        self,
        model: str,
        shadow: Target,
        primary: Target,
        request_id: str,
        served: ServedModel,
        parsed: ParsedRequest,
        primary_outputs: dict[str, list[Any]],
        primary_latency: float,
    ) -> None:
        """Send the same rows to the shadow target; record both answers and latencies. Never raises."""
        outputs: dict[str, list[Any]] | None = None
        error: str | None = None
        latency: float | None = None
        try:
            answer = await self._coalescer(model, shadow, served, shadow=True).infer(parsed)
            outputs, latency = answer.outputs, answer.upstream_seconds
        except InferenceError as failure:
            error = failure.message
        except Exception as failure:  # a shadow must never take the gateway down
            log.exception("shadow request %s to %s v%d failed", request_id, model, shadow.version)
            error = f"{type(failure).__name__}: {failure}"
        m = self.metrics
        version = str(shadow.version)
        m.child(m.shadow_requests, model, version, "ok" if error is None else "error").inc()  # type: ignore[attr-defined]
        diff = None
        if outputs is not None:
            m.child(m.shadow_latency, model, version).observe(latency)  # type: ignore[attr-defined]
            if served.scalar_output is not None and served.scalar_output in outputs:
                scores = m.child(m.shadow_predictions, model, version)
                for value in outputs[served.scalar_output]:
                    scores.observe(value)  # type: ignore[attr-defined]
            diff = _max_abs_diff(primary_outputs, outputs)
            if diff is not None:
                m.child(m.shadow_diff, model, str(primary.version), version).observe(diff)  # type: ignore[attr-defined]
        if self.sampler is not None:
            self.sampler.add_shadow(
                ShadowRecord(
                    request_id=request_id, timestamp=time.time(), model=model, rows=parsed.rows,
                    primary_version=primary.version, primary_pool=primary.pool,
                    primary_latency_ms=primary_latency * 1e3, primary_outputs=primary_outputs,
                    shadow_version=shadow.version, shadow_pool=shadow.pool,
                    shadow_latency_ms=None if latency is None else latency * 1e3, shadow_outputs=outputs,
                    max_abs_diff=diff, error=error, inputs=parsed.columns,
                )
            )  # fmt: skip


def _outputs(response: Any, schema: InputSchema, model: str, target: Target) -> dict[str, list[Any]]:
    if response.status != 200:
        message = triton_error_message(response.body)
        # Triton answers 400 for a version it does not serve: for the client that is "unavailable", not "bad input".
        status = 503 if response.status in (400, 404, 503) else 502
        raise InferenceError(status, f"Triton refused {model} v{target.version} on pool {target.pool!r}: {message}")
    length = response.header(HEADER_LENGTH.encode())
    return decode_response(response.body, int(length) if length else None, schema.outputs)


def _max_abs_diff(primary: dict[str, list[Any]], shadow: dict[str, list[Any]]) -> float | None:
    """Largest absolute difference over the numeric outputs both answers have (None if none compare)."""
    diffs = []
    for name, values in primary.items():
        other = shadow.get(name)
        if other is None or len(other) != len(values):
            continue
        for a, b in zip(values, other, strict=True):
            if isinstance(a, float) and isinstance(b, float) and not (math.isnan(a) or math.isnan(b)):
                diffs.append(abs(a - b))
    return max(diffs) if diffs else None


def _read_headers(scope: Scope, model: str) -> _Request:
    authorization = content_length = request_id = routing_key = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value
        elif name == b"content-length":
            content_length = int(value) if value.isdigit() else None
        elif name == b"x-request-id":
            request_id = value.decode("latin-1")
        elif name == b"x-routing-key":
            routing_key = value.decode("latin-1")
    if request_id is None or len(request_id) > _MAX_REQUEST_ID or not request_id.isprintable():
        request_id = f"{random.getrandbits(128):032x}"  # uuid4-like; os.urandom was a syscall per request
    return _Request(time.perf_counter(), request_id, model, authorization, content_length, routing_key)


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(send: Send, status: int, payload: object, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await _send(send, status, _encode(payload), [_JSON, *(headers or [])])


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
