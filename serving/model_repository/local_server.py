"""A throwaway tritonserver over a local repository directory, for integration tests and benchmarks.

The stack's Triton (factory/services.py) serves the S3 repository on fixed ports and lives as long as the
stack. Tests and benchmarks need the opposite: a private server on free ports, over a directory they just
wrote, that is always stopped (terminate, wait, kill) even when the test fails. Same runtime and environment
rules: the Triton venv's bin first on PATH, its bundled libraries on LD_LIBRARY_PATH (numpy<2 for the python
backend).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from serving.local_process import LocalServerProcess
from serving.triton.runtime import TritonRuntime


def write_repository(files: Mapping[str, bytes], root: Path) -> None:
    """Write `files` ({'<model>/...': bytes}) under `root`, the directory tritonserver serves."""
    for relative, content in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


class LocalTritonServer(LocalServerProcess):
    """`with LocalTritonServer(runtime, repository, log_file, ports) as server:` -> a ready private server."""

    name = "tritonserver"

    def __init__(
        self,
        runtime: TritonRuntime,
        repository: Path | str,
        log_file: Path,
        ports: Sequence[int],
        *,
        ready_timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`ports`: three free ports for HTTP, gRPC and metrics (e.g. factory.processes.free_ports(3)).
        `repository` may be an S3 URI (`s3://http://host:port/bucket/prefix`), with the keys in `env`."""
        super().__init__(log_file, ready_timeout)
        self.extra_env = dict(env or {})
        self.runtime = runtime
        self.repository = repository
        self.http_port, self.grpc_port, self.metrics_port = ports

    @property
    def http_endpoint(self) -> str:
        """host:port, the form tritonclient.http expects."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.http_endpoint}"

    @property
    def health_url(self) -> str:
        return f"{self.http_url}/v2/health/ready"

    def command(self) -> tuple[list[str], dict[str, str], Path | None]:
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
        return argv, env | self.extra_env, None
