"""A gateway replica as a child process (`python -m serving.gateway`), for integration tests and benchmarks.

Runs the real entry point (uvicorn + uvloop + httptools), so what is tested and measured is what the stack runs;
always stopped (terminate, wait, kill) even when the caller fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType


class LocalGateway:
    """`with LocalGateway(env, log_file, port) as gateway:` -> a gateway answering /healthz on `port`."""

    def __init__(self, env: Mapping[str, str], log_file: Path, port: int, *, ready_timeout: float = 60.0) -> None:
        self.env = dict(env)
        self.log_file = log_file
        self.port = port
        self.ready_timeout = ready_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LocalGateway:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        keep = ("PATH", "HOME", "LANG", "TMPDIR", "USER")
        env = {key: os.environ[key] for key in keep if key in os.environ}
        env |= {"FACTORY_GATEWAY_HOST": "127.0.0.1", "FACTORY_PORT_GATEWAY": str(self.port), **self.env}
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        root = Path(__file__).resolve().parents[2]
        env["PYTHONPATH"] = str(root)
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "serving.gateway"],
                env=env,
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(self._process)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (uvicorn drains and the sampler flushes), wait, then kill the group; idempotent."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"gateway exited with {process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway not healthy after {self.ready_timeout:.0f} s:\n{self.log_tail()}")
