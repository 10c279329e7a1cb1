"""Gather the facts of a guarded retraining decision, each from its system of record.

A fact that cannot be established is returned as None with a note saying why: the decision
(`pipelines.monitoring.retraining`) then fails that guardrail closed instead of guessing.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from factory_providers.s3.hooks import FactoryS3Hook

if TYPE_CHECKING:
    from pipelines.datasets.spec import DatasetSpec

log = logging.getLogger(__name__)
TRAINING_DAG_ID = "factory_train"
ACTIVE_RUN_STATES = ["queued", "running"]


def count_new_labelled_rows(spec: DatasetSpec, since: datetime, hook: Any = None) -> int:
    """Rows of the source with a label (the target's source column not null) at or after `since`.

    Labels arrive in the operational source here (the flights table gets `arr_delay` once a flight lands), and
    the source is what a retraining learns from: the default count. `count_feedback_labelled_rows` counts the
    feedback store instead (factory_drift Param `labelled_rows_from`).
    """
    from factory_providers.source.hooks import FactorySourceHook
    from pipelines.assembly import source_time_text

    source = hook or FactorySourceHook()
    time_column, label, table = (
        _quoted(name) for name in (spec.time_column, spec.target.source_column, spec.source.table)
    )
    bound = source_time_text(since) if source.kind == "sqlite" else since
    sql = f"SELECT COUNT(*) FROM {table} WHERE {time_column} >= {source.placeholder} AND {label} IS NOT NULL"
    row = source.get_first(sql, parameters=(bound,))
    return int(row[0]) if row else 0


def count_feedback_labelled_rows(model_name: str, since: datetime, hook: Any = None) -> int:
    """Labels in the feedback store (landed by replay or a labelling pipeline, joined by factory_feedback) for
    events at or after `since`; each request id counts once."""
    from factory_providers.monitoring.feedback import read_labels
    from pipelines.monitoring.feedback import count_new_labelled

    return count_new_labelled(read_labels(model_name, hook=hook), since)


def running_trainings(ti: Any, dag_id: str = TRAINING_DAG_ID) -> int:
    """Queued or running runs of the training DAG, through the Task SDK (tasks have no metadata DB access)."""
    return int(ti.get_dr_count(dag_id=dag_id, states=ACTIVE_RUN_STATES))


def last_retraining_request(
    *, dataset: str, model_name: str, excluding_run: str | None, bucket: str, hook: FactoryS3Hook | None = None
) -> datetime | None:
    from pipelines.monitoring.monitor import last_request_time, request_log_prefix

    s3 = hook or FactoryS3Hook()
    keys = s3.list_keys(bucket_name=bucket, prefix=request_log_prefix(dataset, model_name)) or []
    return last_request_time(keys, excluding_run=excluding_run)


def established(what: str, notes: dict[str, str], produce: Any) -> Any:
    """`produce()`, or None with the reason in `notes[what]` (the guardrail reading it then fails closed)."""
    try:
        return produce()
    except Exception as error:
        log.warning("retraining fact %s could not be established: %s", what, error)
        notes[what] = f"{type(error).__name__}: {error}"[:500]
        return None


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
