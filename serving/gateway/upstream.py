"""Pooled keep-alive HTTP/1.1 client for Triton, on asyncio protocols and the httptools parser.

Why not aiohttp or httpx: on the request path every microsecond counts against the 1.3x overhead budget, and
both clients spend more per request on features the gateway does not use (cookies, redirects, tracing,
streaming readers) than Triton spends on a single-row inference. This client does one thing: send a pre-built
request on an idle kept-alive connection and resolve a future when httptools has parsed the response.

A `TritonPool` is one Triton fleet (e.g. "blue"): its endpoints take requests in turn; an endpoint that refuses
connections is skipped for a cool-down and the request goes to the next one (inference is idempotent, so a
request that never reached a server is safe to send elsewhere). Connections per endpoint are capped so a burst
queues in the gateway instead of opening hundreds of sockets to Triton.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools


class UpstreamError(ConnectionError):
    """Triton could not be reached or did not answer in time; `timeout` says which."""

    def __init__(self, message: str, *, timeout: bool = False, sent: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.sent = sent  # bytes may have reached the server (do not retry elsewhere on timeouts)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: dict[bytes, bytes]  # lower-case names
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return self.headers.get(name)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[HttpResponse] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.closed = False
        self.used = False
        self.discarded = False  # its slot was given back to the endpoint

    # ----- asyncio.Protocol --------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(UpstreamError(f"{self.endpoint.url}: malformed HTTP response ({error})", sent=True))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(UpstreamError(f"{self.endpoint.url}: connection closed before the response", sent=True))

    # ----- httptools callbacks -----------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.headers = {}
        self.body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        self._cancel_timer()
        if not self.parser.should_keep_alive():
            self.close()
        if waiter is not None and not waiter.done():
            body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
            waiter.set_result(HttpResponse(self.parser.get_status_code(), self.headers, body))

    # ----- requests ----------------------------------------------------------------------------------------------
    def send(self, data: bytes, timeout: float) -> asyncio.Future[HttpResponse]:
        loop = self.endpoint.loop
        self.used = True
        self.waiter = loop.create_future()
        self.timer = loop.call_later(timeout, self._on_timeout, timeout)
        assert self.transport is not None
        self.transport.write(data)
        return self.waiter

    def _on_timeout(self, timeout: float) -> None:
        self.timer = None
        self._fail(UpstreamError(f"{self.endpoint.url}: no response within {timeout:g} s", timeout=True, sent=True))
        self.close()  # a late response must not be read as the next request's

    def _fail(self, error: UpstreamError) -> None:
        self._cancel_timer()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Endpoint:
    """One Triton server (http://host:port) with up to `max_connections` kept-alive connections."""

    def __init__(self, url: str, *, max_connections: int = 64, connect_timeout: float = 2.0) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"Triton endpoint {url!r} must look like http://host:port")
        self.url = f"http://{parts.hostname}:{parts.port}"
        self.host, self.port = parts.hostname, parts.port
        self.host_header = f"{parts.hostname}:{parts.port}"
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.down_until = 0.0
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def build(self, method: str, path: str, body: bytes = b"", headers: str = "") -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host_header}\r\n{headers}Content-Length: {len(body)}\r\n\r\n"
        return head.encode("latin-1") + body

    async def request(self, data: bytes, timeout: float) -> HttpResponse:
        """Send a pre-built request; a reused connection that turns out closed is retried once on a new one."""
        connection = await self._acquire()
        try:
            reused = connection.used
            try:
                return await connection.send(data, timeout)
            except UpstreamError as error:
                if error.timeout or not reused:
                    raise
            # The server closed an idle keep-alive connection as we wrote to it: safe to send again.
            self._discard(connection)
            connection = await self._acquire(fresh=True)
            return await connection.send(data, timeout)
        finally:
            self._release(connection)

    async def _acquire(self, fresh: bool = False) -> _Connection:
        while self._idle and not fresh:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
            self._open -= 1
        if self._open >= self.max_connections:
            waiter: asyncio.Future[_Connection | None] = self.loop.create_future()
            self._waiters.append(waiter)
            handed = await waiter
            if handed is not None and not handed.closed:
                return handed
            if handed is not None:  # closed while queued: we now own its slot
                self._open -= 1
        self._open += 1
        try:
            _, protocol = await asyncio.wait_for(
                self.loop.create_connection(lambda: _Connection(self), self.host, self.port), self.connect_timeout
            )
        except (OSError, TimeoutError) as error:
            self._open -= 1
            self._wake_one()
            self.down_until = time.monotonic() + 1.0
            raise UpstreamError(f"cannot connect to Triton at {self.url}: {error or type(error).__name__}") from None
        return protocol

    def _release(self, connection: _Connection) -> None:
        if connection.closed or connection.waiter is not None:
            self._discard(connection)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    def _discard(self, connection: _Connection) -> None:
        if not connection.closed:
            connection.close()
        if connection.discarded:
            return
        connection.discarded = True
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        """A slot freed up: let one queued request open a connection."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
        self._open = 0


class TritonPool:
    """One Triton fleet: requests go to its endpoints in turn, skipping an endpoint that refused connections."""

    def __init__(self, name: str, urls: list[str], *, max_connections: int = 64, timeout: float = 10.0) -> None:
        if not urls:
            raise ValueError(f"pool {name!r} has no endpoints")
        self.name = name
        self.endpoints = [Endpoint(url, max_connections=max_connections) for url in urls]
        self.timeout = timeout
        self._next = 0

    async def post(self, path: str, body: bytes, headers: str = "") -> HttpResponse:
        return await self._send("POST", path, body, headers)

    async def get(self, path: str) -> HttpResponse:
        return await self._send("GET", path, b"", "")

    async def _send(self, method: str, path: str, body: bytes, headers: str) -> HttpResponse:
        endpoints = self.endpoints
        count = len(endpoints)
        start = self._next
        self._next = (start + 1) % count
        now = time.monotonic()
        # Endpoints not in cool-down first, in turn; the cooled-down ones last (better than failing outright).
        order = [endpoints[(start + i) % count] for i in range(count)]
        order.sort(key=lambda endpoint: endpoint.down_until > now)
        last_error: UpstreamError | None = None
        for endpoint in order:
            try:
                return await endpoint.request(endpoint.build(method, path, body, headers), self.timeout)
            except UpstreamError as error:
                if error.sent:
                    raise
                last_error = error
        assert last_error is not None
        raise last_error

    def close(self) -> None:
        for endpoint in self.endpoints:
            endpoint.close()
