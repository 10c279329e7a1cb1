"""The gateway's pooled keep-alive client against real local HTTP servers (asyncio, on free ports): connection
reuse, a server that drops idle connections, failover to the next endpoint, timeouts and the connection cap."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

import pytest

from factory.processes import free_ports
from serving.gateway.upstream import TritonPool, UpstreamError

_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


@dataclass
class EchoServer:
    """Answers every request with its body; `close_after_each` drops the connection after answering (as a
    server whose keep-alive timeout expired); `delay` holds every answer."""

    close_after_each: bool = False
    delay: float = 0.0
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    requests: int = 0
    server: asyncio.Server | None = field(default=None, repr=False)

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = _LENGTH.search(head)
                body = await reader.readexactly(int(length.group(1)) if length else 0)
                self.requests += 1
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Seen: yes\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                if self.close_after_each:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


def run(scenario):  # type: ignore[no-untyped-def]
    return asyncio.run(scenario())


def test_requests_reuse_one_kept_alive_connection() -> None:
    async def scenario() -> None:
        server = EchoServer()
        pool = TritonPool("blue", [await server.start()])
        answers = [await pool.post("/echo", f"request {n}".encode()) for n in range(20)]
        assert [answer.body for answer in answers] == [f"request {n}".encode() for n in range(20)]
        assert answers[0].status == 200 and answers[0].header(b"x-seen") == b"yes"
        assert server.connections == 1
        pool.close()
        await server.stop()

    run(scenario)


def test_a_connection_the_server_dropped_is_replaced_transparently() -> None:
    async def scenario() -> None:
        server = EchoServer(close_after_each=True)
        pool = TritonPool("blue", [await server.start()])
        for n in range(5):
            assert (await pool.post("/echo", b"%d" % n)).body == b"%d" % n
            await asyncio.sleep(0.01)  # let the close arrive, as an idle keep-alive timeout would
        for n in range(20):  # and without waiting: the request may be written into a closing connection
            assert (await pool.post("/echo", b"%d" % n)).body == b"%d" % n
        assert server.requests >= 25
        pool.close()
        await server.stop()

    run(scenario)


def test_an_endpoint_that_refuses_connections_is_skipped() -> None:
    async def scenario() -> None:
        server = EchoServer()
        (dead_port,) = free_ports(1)
        pool = TritonPool("blue", [f"http://127.0.0.1:{dead_port}", await server.start()])
        answers = [await pool.post("/echo", b"x") for _ in range(6)]
        assert all(answer.body == b"x" for answer in answers)
        assert server.requests == 6
        assert pool.endpoints[0].down_until > time.monotonic()  # in cool-down: tried last
        pool.close()
        await server.stop()

    run(scenario)


def test_no_reachable_endpoint_is_an_error_naming_it() -> None:
    async def scenario() -> None:
        (dead_port,) = free_ports(1)
        pool = TritonPool("blue", [f"http://127.0.0.1:{dead_port}"])
        with pytest.raises(UpstreamError, match=f"cannot connect to Triton at http://127.0.0.1:{dead_port}"):
            await pool.post("/echo", b"x")

    run(scenario)


def test_a_slow_answer_times_out_and_its_connection_is_not_reused() -> None:
    async def scenario() -> None:
        server = EchoServer(delay=0.5)
        pool = TritonPool("blue", [await server.start()], timeout=0.1)
        started = time.monotonic()
        with pytest.raises(UpstreamError, match=r"no response within 0\.1 s") as caught:
            await pool.post("/echo", b"slow")
        assert caught.value.timeout and time.monotonic() - started < 0.4
        server.delay = 0.0
        assert (await pool.post("/echo", b"fast")).body == b"fast"  # a new connection, not the late answer
        assert server.connections == 2
        pool.close()
        await server.stop()

    run(scenario)


def test_connections_per_endpoint_are_capped_and_queued_requests_all_complete() -> None:
    async def scenario() -> None:
        server = EchoServer(delay=0.02)
        pool = TritonPool("blue", [await server.start()], max_connections=2)
        answers = await asyncio.gather(*(pool.post("/echo", b"%d" % n) for n in range(10)))
        assert [answer.body for answer in answers] == [b"%d" % n for n in range(10)]
        assert server.most_open <= 2
        pool.close()
        await server.stop()

    run(scenario)


def test_an_endpoint_must_be_an_http_url() -> None:
    with pytest.raises(ValueError, match="must look like http://host:port"):
        TritonPool("blue", ["https://triton.example"])
    with pytest.raises(ValueError, match="has no endpoints"):
        TritonPool("blue", [])
