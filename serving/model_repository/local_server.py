"""A throwaway tritonserver over a local repository directory, for integration tests and benchmarks.

The stack's Triton (factory/services.py) serves the S3 repository on fixed ports and lives as long as the
stack. Tests and benchmarks need the opposite: a private server on free ports, over a directory they just
wrote, that is always stopped (terminate, wait, kill) even when the test fails. Same runtime and environment
rules: the Triton venv's bin first on PATH, its bundled libraries on LD_LIBRARY_PATH (numpy<2 for the python
backend).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from serving.triton.runtime import TritonRuntime


def write_repository(files: Mapping[str, bytes], root: Path) -> None:
    """Write `files` ({'<model>/...': bytes}) under `root`, the directory tritonserver serves."""
    for relative, content in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


class LocalTritonServer:
    """`with LocalTritonServer(runtime, repository, log_file, ports) as server:` -> a ready private server."""

    def __init__(
        self,
        runtime: TritonRuntime,
        repository: Path,
        log_file: Path,
        ports: Sequence[int],
        *,
        ready_timeout: float = 60.0,
    ) -> None:
        """`ports`: three free ports for HTTP, gRPC and metrics (e.g. factory.processes.free_ports(3))."""
        self.runtime = runtime
        self.repository = repository
        self.log_file = log_file
        self.ready_timeout = ready_timeout
        self.http_port, self.grpc_port, self.metrics_port = ports
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def http_endpoint(self) -> str:
        """host:port, the form tritonclient.http expects."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.http_endpoint}"

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs (None before start and after stop)."""
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> LocalTritonServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        argv = [
            str(self.runtime.server_binary),
            f"--model-repository={self.repository}",
            "--model-control-mode=explicit",
            f"--backend-directory={self.runtime.backend_directory}",
            "--http-address=127.0.0.1", f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
            "--metrics-address=127.0.0.1", f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false", "--exit-timeout-secs=5", "--log-verbose=0",
        ]  # fmt: skip
        env = {key: os.environ[key] for key in ("HOME", "LANG", "TMPDIR", "USER") if key in os.environ}
        env |= {
            "PATH": f"{self.runtime.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LD_LIBRARY_PATH": ":".join(str(path) for path in self.runtime.library_path),
            "VIRTUAL_ENV": str(self.runtime.venv),
        }
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            # Own session: on a hung shutdown the group (server + python-backend stubs) is killed by pgid.
            self._process = subprocess.Popen(
                argv,
                env=env,
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
        """Terminate, wait, then kill the server's process group; idempotent."""
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
                raise RuntimeError(f"tritonserver exited with {process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"tritonserver not ready after {self.ready_timeout:.0f} s:\n{self.log_tail()}")
