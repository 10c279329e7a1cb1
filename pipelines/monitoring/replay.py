"""Traffic replay as pure logic: a later time window of the dataset becomes gateway requests and, separately,
the labels that arrive after them.

Why replay: the flights data drifts with the seasons, so sending April..December through the gateway makes
real drift (and real delayed labels) appear for the monitor, the feedback DAG and the tests, with no
synthetic generator to trust.

Request ids are derived from the row, not drawn at random: `replay-<sha256(dataset, time, key columns)>`.
A retried replay sends the same ids, so the gateway's log and the label store agree on them and the feedback
join stays one-to-one. Label objects are named by the hash of their content (request ids and labels), so
writing the same labels twice writes one object (create-only PUT, see `factory.replay`).

Layout of the feedback landing area (`label_object_key`):

    feedback/<model>/labels/date=YYYY-MM-DD/<sha256 of the labels, 32 hex>.parquet

Columns: `request_id`, `label` (0/1), `event_time` (the row's time column: what "new labelled data since the
training interval" counts by) and `label_time` (when the label landed: what the feedback window reads by).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from pipelines.datasets.spec import DatasetSpec
from pipelines.datasets.target import apply_target

FEEDBACK_PREFIX = "feedback"
LABELS_KIND = "labels"
LABEL_COLUMNS = ("request_id", "label", "event_time", "label_time")
REQUEST_ID_PREFIX = "replay-"


@dataclass(frozen=True)
class ReplayRequest:
    """One gateway request: its id (sent as `X-Request-Id`), its JSON body and the row's event time."""

    request_id: str
    body: dict[str, Any]
    event_time: datetime


@dataclass(frozen=True)
class ReplayPlan:
    """What replaying one window sends and which labels arrive later (rows without a label source, e.g.
    cancelled flights, are sent but never labelled, as in production)."""

    requests: list[ReplayRequest]
    labels: pd.DataFrame  # request_id, label, event_time (label_time is set when they land)

    @property
    def unlabelled(self) -> int:
        return len(self.requests) - len(self.labels)


def window_rows(frame: pd.DataFrame, spec: DatasetSpec, start: datetime, end: datetime) -> pd.DataFrame:
    """Rows with `start <= time < end`, in a stable order (time, then the spec's key columns)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("replay window bounds must be timezone-aware")
    if start >= end:
        raise ValueError(f"replay window start {start.isoformat()} is not before its end {end.isoformat()}")
    time_column = spec.time_column
    missing = sorted({time_column, *spec.source.key_columns, *spec.features.columns} - set(frame.columns))
    if missing:
        raise KeyError(f"replay needs columns {missing} that the dataset frame lacks")
    times = pd.to_datetime(frame[time_column], utc=True)
    chosen = frame.loc[(times >= pd.Timestamp(start)) & (times < pd.Timestamp(end))].copy()
    chosen[time_column] = pd.to_datetime(chosen[time_column], utc=True)
    return chosen.sort_values([time_column, *spec.source.key_columns], kind="stable").reset_index(drop=True)


def request_ids(rows: pd.DataFrame, spec: DatasetSpec) -> list[str]:
    """Stable ids from (dataset, time, key columns); a repeated key gets an occurrence suffix so ids stay unique
    within a window (the same rows in the same order always get the same ids)."""
    stamps = rows[spec.time_column].map(lambda moment: pd.Timestamp(moment).isoformat())
    columns = [stamps, *(rows[column].astype(str) for column in spec.source.key_columns)]
    keys = ["|".join((spec.name, *values)) for values in zip(*columns, strict=True)]
    seen: dict[str, int] = {}
    ids = []
    for key in keys:
        count = seen.get(key, 0)
        seen[key] = count + 1
        digest = hashlib.sha256(f"{key}#{count}".encode() if count else key.encode()).hexdigest()[:32]
        ids.append(f"{REQUEST_ID_PREFIX}{digest}")
    return ids


def json_row(row: dict[str, Any], numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    """One row as a client sends it: numbers as float, categories as str, a missing value as null."""
    body: dict[str, Any] = {}
    for name in numeric:
        value = row[name]
        body[name] = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
    for name in categorical:
        value = row[name]
        body[name] = None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    return body


def plan_replay(frame: pd.DataFrame, spec: DatasetSpec, start: datetime, end: datetime) -> ReplayPlan:
    """The requests (one row each, as the gateway logs them) and the labels of the window [start, end)."""
    rows = window_rows(frame, spec, start, end)
    ids = request_ids(rows, spec)
    numeric, categorical = list(spec.features.numeric), list(spec.features.categorical)
    records = rows[[*numeric, *categorical]].astype(object).to_dict(orient="records")
    times = [moment.to_pydatetime() for moment in rows[spec.time_column]]
    requests = [
        ReplayRequest(request_id, {"rows": [json_row(record, numeric, categorical)]}, moment)
        for request_id, record, moment in zip(ids, records, times, strict=True)
    ]
    keyed = rows.assign(request_id=ids)
    labelled, _ = apply_target(keyed, spec)
    labels = pd.DataFrame(
        {
            "request_id": labelled["request_id"].astype(str),
            "label": labelled[spec.target.name].astype("int8"),
            "event_time": pd.to_datetime(labelled[spec.time_column], utc=True),
        }
    )
    return ReplayPlan(requests=requests, labels=labels)


def batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    if size < 1:
        raise ValueError(f"batch size must be positive, got {size}")
    for first in range(0, len(items), size):
        yield items[first : first + size]


def label_frame(labels: pd.DataFrame, label_time: datetime) -> pd.DataFrame:
    """Labels as they land: the plan's columns plus when they landed."""
    if label_time.tzinfo is None:
        raise ValueError("label_time must be timezone-aware")
    frame = labels.loc[:, ["request_id", "label", "event_time"]].reset_index(drop=True)
    frame["label_time"] = pd.Timestamp(label_time).tz_convert(UTC)
    return frame[list(LABEL_COLUMNS)]


def labels_digest(labels: pd.DataFrame) -> str:
    """Content hash of a label batch: request ids, labels and event times (not when they landed), so a retried
    write of the same labels on the same day finds its object already there."""
    ordered = labels.sort_values("request_id", kind="stable")
    hasher = hashlib.sha256()
    for request_id, label, event_time in zip(
        ordered["request_id"], ordered["label"], pd.to_datetime(ordered["event_time"], utc=True), strict=True
    ):
        hasher.update(f"{request_id}\t{int(label)}\t{event_time.isoformat()}\n".encode())
    return hasher.hexdigest()[:32]


def labels_prefix(model: str, prefix: str = FEEDBACK_PREFIX) -> str:
    return f"{prefix.strip('/')}/{model}/{LABELS_KIND}/"


def label_object_key(model: str, labels: pd.DataFrame, label_time: datetime, prefix: str = FEEDBACK_PREFIX) -> str:
    moment = label_time.astimezone(UTC)
    return f"{labels_prefix(model, prefix)}date={moment:%Y-%m-%d}/{labels_digest(labels)}.parquet"


def label_partitions(model: str, start: datetime, end: datetime, prefix: str = FEEDBACK_PREFIX) -> list[str]:
    """The date partitions holding labels that landed in [start, end)."""
    if start >= end:
        raise ValueError(f"label window start {start.isoformat()} is not before its end {end.isoformat()}")
    days = pd.date_range(start.astimezone(UTC).date(), end.astimezone(UTC).date(), freq="D")
    return [f"{labels_prefix(model, prefix)}date={day:%Y-%m-%d}/" for day in days]


def check_label_frame(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """A stored label object as typed columns; a foreign object fails naming its key and what it lacks."""
    missing = sorted(set(LABEL_COLUMNS) - set(frame.columns))
    if missing:
        raise ValueError(f"label object {key} lacks columns {missing}: not a feedback label batch")
    labels = pd.to_numeric(frame["label"], errors="coerce")
    if labels.isna().any() or not labels.isin([0, 1]).all():
        raise ValueError(f"label object {key} holds labels other than 0/1")
    return pd.DataFrame(
        {
            "request_id": frame["request_id"].astype(str),
            "label": labels.astype("int8"),
            "event_time": pd.to_datetime(frame["event_time"], utc=True),
            "label_time": pd.to_datetime(frame["label_time"], utc=True),
        }
    )


def paced_offsets(count: int, rate: float | None) -> np.ndarray:
    """Seconds after the start at which each of `count` requests is due (None / 0: as fast as possible)."""
    if rate is None or rate <= 0:
        return np.zeros(count)
    return np.arange(count, dtype=float) / rate
