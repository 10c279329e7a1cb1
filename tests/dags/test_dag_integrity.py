"""DAG integrity (after Airflow's own test_example_dags.py): every DAG file imports cleanly and is pure wiring.

Parsing must not query the metadata DB, must not fetch Connections, and must stay fast: the scheduler's
dag-processor re-parses every file continuously. The <= 0.3 s/file target is measured in benchmarks/dag_parse.py;
the bound here is deliberately generous so a loaded CI machine does not flake.
"""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))
HEAVY_MODULES = {
    "torch", "mlflow", "great_expectations", "evidently", "sklearn", "pandas", "numpy", "tritonclient", "boto3",
    "onnx", "onnxruntime", "skl2onnx", "scipy",
}  # fmt: skip


@pytest.fixture(scope="module")
def dagbag():
    from airflow import settings
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook
    from sqlalchemy import event

    queries: list[str] = []

    def count(conn, cursor, statement, *args):
        queries.append(statement)

    def refuse_connection(*args, **kwargs):
        raise AssertionError("get_connection called while parsing a DAG file")

    original = BaseHook.get_connection
    BaseHook.get_connection = classmethod(refuse_connection)  # type: ignore[method-assign]
    event.listen(settings.engine, "before_cursor_execute", count)
    try:
        bag = DagBag(dag_folder=str(DAGS_DIR))
    finally:
        event.remove(settings.engine, "before_cursor_execute", count)
        BaseHook.get_connection = original  # type: ignore[method-assign]
    bag.parse_queries = queries
    return bag


def test_there_are_dag_files():
    assert DAG_FILES, f"no DAG files found in {DAGS_DIR}"


def test_every_dag_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert len(dagbag.dags) >= len(DAG_FILES)


def test_parsing_runs_no_db_query_and_fetches_no_connection(dagbag):
    assert dagbag.parse_queries == []


def test_every_dag_has_tags_owner_retries_and_no_cycle(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md, f"{dag_id} has no doc_md (shown in the UI)"
        dag.check_cycle()  # raises AirflowDagCycleException on a cycle
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id} has no owner"
            callbacks = task.on_failure_callback or []
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            kinds = {type(callback).__name__ for callback in callbacks}
            assert {"WebhookNotifier", "EmailNotifier"} <= kinds, f"{dag_id}.{task.task_id} alerts nobody on failure"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_files_import_only_the_sdk_and_project_at_top_level(path):
    tree = ast.parse(path.read_text())
    for node in tree.body:
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            root = name.split(".")[0]
            assert root not in HEAVY_MODULES, f"{path.name} imports {name} at top level: import it inside the task"
            if root == "airflow":
                assert name.startswith("airflow.sdk"), f"{path.name} imports {name}: DAG files use airflow.sdk only"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_parse_time_is_bounded(path):
    from airflow.dag_processing.dagbag import DagBag

    DagBag(dag_folder=str(path))  # warm imports shared by all files
    started = time.perf_counter()
    bag = DagBag(dag_folder=str(path))
    elapsed = time.perf_counter() - started
    assert bag.import_errors == {}
    assert elapsed < 3.0, f"{path.name} took {elapsed:.2f} s to parse"


def test_every_pool_and_queue_a_task_names_exists_on_the_stack(dagbag, tmp_path):
    """A task naming a missing pool is never scheduled; one naming a queue no Celery worker listens on never runs."""
    from factory.celery_workers import QUEUES
    from factory.services import airflow_pools
    from factory.settings import StackSettings

    pools = {"default_pool", *airflow_pools(StackSettings.from_env({"FACTORY_HOME": str(tmp_path)}))}
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            assert task.pool in pools, f"{dag.dag_id}.{task.task_id}: pool {task.pool!r} is not created by the stack"
            assert task.queue in QUEUES, f"{dag.dag_id}.{task.task_id}: no worker listens on queue {task.queue!r}"
