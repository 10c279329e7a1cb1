"""The replay driver's retry rules against a real local HTTP server (a stand-in gateway that fails on purpose)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest

from factory.replay import send_requests
from pipelines.monitoring.replay import ReplayRequest


class FlakyGateway(BaseHTTPRequestHandler):
    """503 for the first two attempts of request "flaky", 422 for "bad", else a prediction; records every id."""

    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        request_id = self.headers["X-Request-Id"]
        self.rfile.read(int(self.headers["Content-Length"]))
        FlakyGateway.seen.append(request_id)
        if request_id == "bad":
            status, body = 422, {"error": "field 'distance' must be a number"}
        elif request_id == "flaky" and FlakyGateway.seen.count("flaky") <= 2:
            status, body = 503, {"error": "pool unavailable"}
        else:
            status, body = 200, {"request_id": request_id, "version": 4, "outputs": {"probability": [0.3]}}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[str]:
    FlakyGateway.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def request(request_id: str) -> ReplayRequest:
    return ReplayRequest(request_id, {"rows": [{"distance": 100.0}]}, datetime(2013, 7, 1, tzinfo=UTC))


def test_unavailable_answers_are_retried_with_the_same_id_bad_input_is_not(gateway: str) -> None:
    with httpx.Client(base_url=gateway) as client:
        result = send_requests(client, "m", [request("ok"), request("flaky"), request("bad")], attempts=3)
    assert FlakyGateway.seen == ["ok", "flaky", "flaky", "flaky", "bad"]
    assert (result.requested, result.answered, result.retries) == (3, 2, 2)
    assert dict(result.failures) == {"422": 1} and dict(result.versions) == {"4": 2}


def test_retries_are_bounded_and_the_failure_is_reported(gateway: str) -> None:
    with httpx.Client(base_url=gateway) as client:
        result = send_requests(client, "m", [request("flaky")], attempts=2)
    assert dict(result.failures) == {"503": 1} and result.answered == 0


def test_an_unreachable_gateway_is_a_named_failure() -> None:
    with httpx.Client(base_url="http://127.0.0.1:9", timeout=1) as client:
        result = send_requests(client, "m", [request("x")], attempts=1)
    assert dict(result.failures) == {"ConnectError": 1}


def test_the_cli_takes_a_window_with_timezones_only(capsys: pytest.CaptureFixture[str]) -> None:
    from factory.cli import build_parser

    args = build_parser().parse_args(
        ["replay", "--model", "flights-hgb", "--start", "2013-07-01T00:00:00Z", "--end", "2013-07-02T00:00:00+00:00",
         "--rate", "50", "--labels"]
    )  # fmt: skip
    assert (args.model, args.rate, args.labels) == ("flights-hgb", 50.0, True)
    assert args.start == datetime(2013, 7, 1, tzinfo=UTC) and args.end == datetime(2013, 7, 2, tzinfo=UTC)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["replay", "--model", "m", "--start", "2013-07-01", "--end", "2013-07-02"])
    assert "has no timezone" in capsys.readouterr().err
