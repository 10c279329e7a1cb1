"""Imported once by each local Celery worker's main process (Celery `imports`, set in `factory.services`), before
it forks its pool, so that every task process inherits what it would otherwise load again on its own.

Why: a task process starts by loading Airflow's plugins (the listener manager; 1.9 s cold here) and the task
runner. LocalExecutor's task processes inherit both from the scheduler; Celery's pool processes are forked from a
worker that had loaded neither, so every Celery task spent ~1.5 s more than a LocalExecutor one before running any
code (Airflow's overhead per task 2.0 s vs 0.5 s; benchmarks/celery_vs_local.py, docs/benchmarks.md).
As with LocalExecutor, a changed plugin needs a worker restart.
"""

from __future__ import annotations

from airflow.sdk.execution_time import task_runner  # noqa: F401  (the module every task process runs)
from airflow.sdk.listener import get_listener_manager

get_listener_manager()
