"""Session fixtures: one real local stack (SeaweedFS S3, MLflow, Triton, Airflow) on free ports in a temp home.

It is started once per test session, only if a selected test asks for it, and stopped at the end; tests never
touch the developer's own stack on the default ports.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from factory.settings import isolated_settings
from factory.stack import Stack


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


@contextlib.contextmanager
def temporary_production_stack(home: Path, **extra: str) -> Iterator[Stack]:
    """A production-profile stack (not started) on PostgreSQL databases with a random prefix and its own Celery
    key prefix in Redis; on exit it is stopped and purged (databases dropped, broker keys deleted)."""
    prefix = f"factory_ci_{secrets.token_hex(4)}"
    stack = Stack(isolated_settings(home, FACTORY_PROFILE="production", FACTORY_DB_PREFIX=prefix, **extra), env={})
    try:
        yield stack
    finally:
        stack.down()
        stack.purge()
