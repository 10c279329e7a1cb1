"""Session fixtures: one real local stack (SeaweedFS S3, MLflow, Triton, Airflow) on free ports in a temp home.

It is started once per test session, only if a selected test asks for it, and stopped at the end; tests never
touch the developer's own stack on the default ports.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from factory.processes import free_ports
from factory.settings import Ports, StackSettings
from factory.stack import Stack


def isolated_settings(home: Path, **extra: str) -> StackSettings:
    """Settings for a throwaway stack: its own state dir and a free port for every service."""
    names = [field.name for field in fields(Ports)]
    env = {f"FACTORY_PORT_{name.upper()}": str(port) for name, port in zip(names, free_ports(len(names)), strict=True)}
    return StackSettings.from_env({"FACTORY_HOME": str(home), **env, **extra})


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(isolated_settings(tmp_path_factory.mktemp("stack")), env={}, report=lambda line: print(line))
    try:
        stack.up()
    except Exception:
        stack.down()
        raise
    yield stack
    stack.down()


@pytest.fixture
def stack_connections(live_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """Expose the live stack's Airflow Connections (AIRFLOW_CONN_*) to hooks used in-process."""
    for key, value in live_stack.airflow_env().items():
        if key.startswith("AIRFLOW_CONN_"):
            monkeypatch.setenv(key, value)
    return live_stack


def stack_subprocess_env(stack: Stack) -> dict[str, str]:
    """Environment for a child process that behaves like an Airflow component of `stack`."""
    return {**os.environ, **stack.airflow_env()}
