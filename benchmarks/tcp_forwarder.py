"""The cheapest extra hop a Python process can add: a uvloop TCP forwarder that pipes bytes to Triton unparsed.

A reference for `gateway_overhead.py`, measured in the same rounds: the gateway's overhead minus this hop's is
what the gateway's own work (auth, validation, routing, encoding, metrics) costs, and this hop's ratio to
direct Triton is the lowest any separate Python process in front of Triton reaches on the machine.
One upstream connection per client connection, TCP_NODELAY both ways, no parsing, no buffering beyond
the kernel's. Not a server to use: it trusts both sides and has no timeouts.

    python benchmarks/tcp_forwarder.py <upstream host> <upstream port> <listen port>
"""

from __future__ import annotations

import asyncio
import socket
import sys

import uvloop


def _no_delay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Upstream(asyncio.Protocol):
    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _no_delay(transport)

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class _Client(asyncio.Protocol):
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.upstream: asyncio.Transport | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _no_delay(transport)
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        upstream, _ = await loop.create_connection(lambda: _Upstream(self.transport), self.host, self.port)
        self.upstream = upstream
        for data in self.pending:
            upstream.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        if self.upstream is None:
            self.pending.append(data)
        else:
            self.upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


async def serve(upstream_host: str, upstream_port: int, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Client(upstream_host, upstream_port), "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    host, upstream_port, listen_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    uvloop.run(serve(host, upstream_port, listen_port))
