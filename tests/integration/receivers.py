"""Real local alert receivers for the tests: an HTTP webhook endpoint and a minimal SMTP server.

`aiosmtpd` is not installed here, so the SMTP side is a small line-based server speaking the subset smtplib
uses (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT). Both run in threads of the test process on free ports and
record what they received; the code under test talks to them over real sockets, exactly as to production ones.
"""

from __future__ import annotations

import email
import email.policy
import json
import socketserver
import threading
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    """POSTs to any path are recorded as JSON; `fail_next(n)` answers the next n requests with 500."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._failures = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    if receiver._failures > 0:
                        receiver._failures -= 1
                        self.send_response(500)
                        self.end_headers()
                        self.wfile.write(b"receiver down")
                        return
                    receiver.payloads.append(json.loads(body))
                    receiver.paths.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def fail_next(self, count: int) -> None:
        with self._lock:
            self._failures = count

    def connection(self, endpoint: str = "/alerts") -> str:
        """The AIRFLOW_CONN_FACTORY_WEBHOOK value pointing here."""
        return json.dumps(
            {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": self.port,
                "schema": "http",
                "extra": {"endpoint": endpoint},
            }
        )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class SmtpReceiver:
    """Accepts every message; `messages` holds them parsed, with their envelope recipients."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []
        receiver = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(f"{line}\r\n".encode())

            def handle(self) -> None:
                self.reply("220 factory-test ESMTP")
                recipients: list[str] = []
                while line := self.rfile.readline():
                    command = line.decode(errors="replace").strip()
                    verb = command.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.reply("250 factory-test")
                    elif verb == "MAIL":
                        recipients = []
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        recipients.append(command.split(":", 1)[1].strip().strip("<>"))
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 end with <CRLF>.<CRLF>")
                        data = bytearray()
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                            data += chunk[1:] if chunk.startswith(b"..") else chunk
                        parsed = email.message_from_bytes(bytes(data), policy=email.policy.default)
                        receiver.messages.append(parsed)  # type: ignore[arg-type]
                        receiver.recipients.append(recipients)
                        self.reply("250 OK queued")
                    elif verb in ("RSET", "NOOP"):
                        self.reply("250 OK")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("502 not implemented")

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def connection(self, to: str = "oncall@factory.test") -> str:
        """The AIRFLOW_CONN_FACTORY_SMTP value pointing here."""
        return json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": self.port,
                "extra": {"from_email": "factory@factory.test", "to": [to]},
            }
        )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
