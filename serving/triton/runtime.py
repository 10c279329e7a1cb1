"""Locate and prepare the local Triton runtime shipped by the `nvidia-pytriton` wheel.

The wheel installs `tritonserver`, its python backend and one backend stub per Python version; the stub for the
interpreter that runs the models must sit next to `libtriton_python.so`, and the bundled shared libraries must be on
LD_LIBRARY_PATH. This module hides those facts from the stack manager.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

PYTHON_TAG = f"{sys.version_info.major}.{sys.version_info.minor}"


class TritonRuntimeError(RuntimeError):
    """The Triton runtime environment is missing or incomplete; the message says how to fix it."""


@dataclass(frozen=True)
class TritonRuntime:
    venv: Path
    server_binary: Path
    backend_directory: Path
    cache_directory: Path
    library_path: tuple[Path, ...]

    @property
    def bin_dir(self) -> Path:
        return self.venv / "bin"


def locate(venv: Path) -> TritonRuntime:
    """Find tritonserver in `venv` and make sure the python-backend stub is installed next to the backend."""
    site_packages = venv / "lib" / f"python{PYTHON_TAG}" / "site-packages"
    root = site_packages / "pytriton" / "tritonserver"
    binary = root / "bin" / "tritonserver"
    if not binary.is_file():
        raise TritonRuntimeError(
            f"tritonserver not found at {binary}: create the Triton env with `make bootstrap` "
            f"(installs serving/triton/requirements.txt into {venv})"
        )
    backend = root / "backends" / "python"
    stub = backend / "triton_python_backend_stub"
    if not stub.is_file():
        source = root / "python_backend_stubs" / PYTHON_TAG / "triton_python_backend_stub"
        if not source.is_file():
            raise TritonRuntimeError(f"no python backend stub for Python {PYTHON_TAG} in {source.parent.parent}")
        shutil.copy2(source, stub)
    libdir = Path(sysconfig.get_config_var("LIBDIR") or "/usr/lib")
    return TritonRuntime(
        venv=venv,
        server_binary=binary,
        backend_directory=root / "backends",
        cache_directory=root / "caches",
        library_path=(site_packages / "nvidia_pytriton.libs", libdir),
    )
