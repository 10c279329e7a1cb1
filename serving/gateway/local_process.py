"""A gateway replica as a child process (`python -m serving.gateway`), for integration tests and benchmarks.

Runs the real entry point (uvicorn + uvloop + httptools), so what is tested and measured is what the stack runs;
always stopped (terminate, wait, kill) even when the caller fails.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from serving.local_process import LocalServerProcess


class LocalGateway(LocalServerProcess):
    """`with LocalGateway(env, log_file, port) as gateway:` -> a gateway answering /healthz on `port`."""

    name = "gateway"

    def __init__(self, env: Mapping[str, str], log_file: Path, port: int, *, ready_timeout: float = 60.0) -> None:
        super().__init__(log_file, ready_timeout)
        self.env = dict(env)
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def health_url(self) -> str:
        return f"{self.url}/healthz"

    def command(self) -> tuple[list[str], dict[str, str], Path | None]:
        keep = ("PATH", "HOME", "LANG", "TMPDIR", "USER")
        env = {key: os.environ[key] for key in keep if key in os.environ}
        env |= {"FACTORY_GATEWAY_HOST": "127.0.0.1", "FACTORY_PORT_GATEWAY": str(self.port), **self.env}
        root = Path(__file__).resolve().parents[2]
        env["PYTHONPATH"] = str(root)
        return [sys.executable, "-m", "serving.gateway"], env, root
