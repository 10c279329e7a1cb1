"""The layers point one way: pipelines/ and serving/ never import Airflow, plugins, DAGs or the CLI."""

from __future__ import annotations

import ast

import pytest

from factory.settings import PROJECT_ROOT

FORBIDDEN = {"airflow", "factory_providers", "dags", "factory"}
PURE_FILES = sorted(
    [*PROJECT_ROOT.joinpath("pipelines").rglob("*.py"), *PROJECT_ROOT.joinpath("serving").rglob("*.py")]
)


def imported_roots(path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_there_are_pure_modules():
    assert len(PURE_FILES) > 20


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_pure_layers_import_no_orchestration(path):
    assert not imported_roots(path) & FORBIDDEN
