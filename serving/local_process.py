"""A server run as a child process for tests and benchmarks: own session, log file, ready on its health URL.

The local Triton server and the gateway replica need the same lifecycle: start in a new session (so a hung
shutdown is ended by killing the whole group, stubs and workers included), wait until the health URL answers
200 or the process dies (then fail with the log's tail), and always stop (terminate, wait, kill) — even when the
caller fails. Subclasses say what to run and where it reports health.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self


class LocalServerProcess(ABC):
    """`with Server(...) as server:` -> a server that is ready, stopped on exit."""

    name: ClassVar[str]  # in error messages

    def __init__(self, log_file: Path, ready_timeout: float) -> None:
        self.log_file = log_file
        self.ready_timeout = ready_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @abstractmethod
    def command(self) -> tuple[list[str], dict[str, str], Path | None]:
        """argv, the whole environment, and the working directory (None: inherit)."""

    @property
    @abstractmethod
    def health_url(self) -> str:
        """Answers 200 once the server is ready."""

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs (None before start and after stop)."""
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        argv, env, cwd = self.command()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            self._wait_ready(self._process)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (servers drain and flush), wait, then kill the process group; idempotent."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.health_url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {self.ready_timeout:.0f} s:\n{self.log_tail()}")
