"""The inference log as the monitor reads it: where sampled requests + predictions live, and how one window of
them becomes the frame the drift check compares with the reference.

The gateway writes it (serving/gateway/sampling.py, `RequestSampler`): Parquet objects, one row per predicted
row, keyed by model, kind and date:

    <prefix>/<model>/predictions/date=YYYY-MM-DD/<HHMMSS>-<replica>-<seq>.parquet      (prefix: gateway-samples)

Columns: `request_id`, `row` (row index inside the request), `timestamp` (UTC), `model`, `version`, `route`,
`pool`, `latency_ms`, one column per model input named after its feature (numeric as numbers, categorical as
strings, a missing category as "" per the serving contract) and one per output (`probability`).

HHMMSS is the flush time of the batch, not the time of its records: a record sampled at 09:59:58 can sit in
an object named 100005. So a window [start, end) reads the objects flushed in [start, end + FLUSH_SLACK) and
keeps rows by their own timestamp. An object uploaded later than that (a retried upload after an S3 outage)
is missed by that window; the gateway logs such retries as errors.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from pipelines.features import MISSING_CATEGORY, FeatureSpec

DEFAULT_PREFIX = "gateway-samples"
PREDICTIONS_KIND = "predictions"
LOGGED_OUTPUT = "probability"  # = pipelines.export.signature.OUTPUT_NAME, the served positive-class probability
METADATA_COLUMNS = ("request_id", "row", "timestamp", "model", "version", "route", "pool", "latency_ms")
FLUSH_SLACK = timedelta(minutes=15)
_KEY = re.compile(
    r"^(?P<prefix>.+)/(?P<model>[^/]+)/(?P<kind>[a-z]+)/date=(?P<date>\d{4}-\d{2}-\d{2})/"
    r"(?P<time>\d{6})-(?P<replica>[^/]+)-(?P<seq>\d+)\.parquet$"
)


class InferenceLogError(ValueError):
    """Logged records that cannot be read as a window (e.g. no timestamp column); names the object."""


@dataclass(frozen=True)
class LoggedObject:
    key: str
    model: str
    kind: str
    flushed_at: datetime
    replica: str
    seq: int


def object_key(
    prefix: str, model: str, flushed_at: datetime, replica: str, seq: int, kind: str = PREDICTIONS_KIND
) -> str:
    """The key the gateway gives a batch (the writing side, for traffic replay and tests)."""
    moment = _utc(flushed_at)
    return f"{prefix.strip('/')}/{model}/{kind}/date={moment:%Y-%m-%d}/{moment:%H%M%S}-{replica}-{seq:06d}.parquet"


def parse_object_key(key: str) -> LoggedObject | None:
    """The parts of a gateway key; None for anything else under the prefix (e.g. a stray file)."""
    match = _KEY.match(key)
    if match is None:
        return None
    try:
        flushed_at = datetime.strptime(f"{match['date']} {match['time']}", "%Y-%m-%d %H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return LoggedObject(key, match["model"], match["kind"], flushed_at, match["replica"], int(match["seq"]))


def date_prefixes(
    prefix: str, model: str, start: datetime, end: datetime, *, slack: timedelta = FLUSH_SLACK
) -> list[str]:
    """The date partitions that can hold objects of the window [start, end) (flushed up to `slack` later)."""
    start, last = _utc(start), _utc(end) + slack
    if start >= _utc(end):
        raise ValueError(f"window start {start.isoformat()} is not before its end {_utc(end).isoformat()}")
    days: list[date] = []
    day = start.date()
    while day <= last.date():
        days.append(day)
        day += timedelta(days=1)
    return [f"{prefix.strip('/')}/{model}/{PREDICTIONS_KIND}/date={day:%Y-%m-%d}/" for day in days]


def objects_in_window(
    keys: Iterable[str], start: datetime, end: datetime, *, slack: timedelta = FLUSH_SLACK
) -> list[LoggedObject]:
    """Prediction objects flushed in [start, end + slack), in flush order."""
    start, last = _utc(start), _utc(end) + slack
    found = [obj for key in keys if (obj := parse_object_key(key)) is not None]
    chosen = [obj for obj in found if obj.kind == PREDICTIONS_KIND and start <= obj.flushed_at < last]
    return sorted(chosen, key=lambda obj: (obj.flushed_at, obj.replica, obj.seq))


@dataclass(frozen=True)
class InferenceWindow:
    """One window of logged traffic.

    `inputs`: the columns the drift check compares (every logged column except the metadata and the served
    output; a feature the clients stopped sending is absent, an unknown input present), a missing category
    as null like in the training data. `served`: request id, version and served probability per row.
    """

    inputs: pd.DataFrame
    served: pd.DataFrame
    objects: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.inputs)

    def served_versions(self) -> dict[str, int]:
        if "version" not in self.served:
            return {}
        counts = self.served["version"].astype(str).value_counts()
        return {str(version): int(count) for version, count in sorted(counts.items())}


def logged_frame(pieces: Sequence[tuple[str, pd.DataFrame]], start: datetime, end: datetime) -> pd.DataFrame:
    """The logged rows (all columns) of the objects (key, frame) with `start <= timestamp < end`."""
    start, end = _utc(start), _utc(end)
    kept: list[pd.DataFrame] = []
    for key, piece in pieces:
        if "timestamp" not in piece.columns:
            raise InferenceLogError(f"logged object {key} has no `timestamp` column: not a gateway prediction log")
        stamps = pd.to_datetime(piece["timestamp"], utc=True)
        kept.append(piece[(stamps >= start) & (stamps < end)])
    kept = [piece for piece in kept if not piece.empty]
    return pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()


def window_frame(
    pieces: Sequence[tuple[str, pd.DataFrame]], spec: FeatureSpec, start: datetime, end: datetime
) -> InferenceWindow:
    """Rows of the logged objects (key, frame) with `start <= timestamp < end`, split into inputs and served."""
    frame = logged_frame(pieces, start, end)
    if frame.empty:
        return InferenceWindow(
            inputs=pd.DataFrame(
                {name: pd.Series(dtype=float) for name in spec.numeric}
                | {name: pd.Series(dtype=object) for name in spec.categorical}
            ),
            served=pd.DataFrame({"request_id": [], "version": [], LOGGED_OUTPUT: []}),
            objects=[key for key, _ in pieces],
        )
    monitored = [name for name in frame.columns if name not in METADATA_COLUMNS and name != LOGGED_OUTPUT]
    inputs = frame[monitored].copy()
    for name in spec.categorical:
        if name in inputs:
            column = inputs[name]
            inputs[name] = column.where(column.notna() & (column.astype(str) != MISSING_CATEGORY), None)
    served = frame[[name for name in ("request_id", "version", LOGGED_OUTPUT) if name in frame.columns]].copy()
    return InferenceWindow(inputs=inputs, served=served, objects=[key for key, _ in pieces])


def logged_rows(
    features: pd.DataFrame,
    spec: FeatureSpec,
    *,
    model: str,
    version: int,
    probabilities: Sequence[float] | np.ndarray,
    timestamps: Sequence[datetime] | pd.Series,
    request_ids: Sequence[str] | None = None,
    route: str = "stable",
    pool: str = "default",
) -> pd.DataFrame:
    """Rows as the gateway logs them (one request per row), for traffic replay and tests.

    Numeric inputs as float (NaN when missing), categorical as str with "" for missing: what a client sends.
    """
    rows = len(features)
    if len(probabilities) != rows or len(timestamps) != rows:
        raise ValueError(f"{rows} feature rows, {len(probabilities)} probabilities, {len(timestamps)} timestamps")
    ids = list(request_ids) if request_ids is not None else [f"replay-{i:08d}" for i in range(rows)]
    frame = pd.DataFrame(
        {
            "request_id": ids,
            "row": np.zeros(rows, dtype=np.int64),
            "timestamp": pd.to_datetime(pd.Series(list(timestamps)), utc=True),
            "model": model,
            "version": np.full(rows, version, dtype=np.int64),
            "route": route,
            "pool": pool,
            "latency_ms": np.zeros(rows),
        }
    )
    for name in spec.numeric:
        frame[name] = pd.to_numeric(features[name], errors="coerce").astype(float).to_numpy()
    for name in spec.categorical:
        values = features[name].astype(object)
        frame[name] = values.where(values.notna(), MISSING_CATEGORY).astype(str).to_numpy()
    frame[LOGGED_OUTPUT] = np.asarray(probabilities, dtype=float)
    return frame


def encode_parquet(frame: pd.DataFrame) -> bytes:
    """Parquet bytes as the gateway writes them (zstd, no pandas index)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer, compression="zstd")
    return buffer.getvalue()


def decode_parquet(data: bytes) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data)).to_pandas()


def _utc(moment: datetime) -> datetime:
    """A plain UTC datetime (pendulum's DateTime, as Airflow passes interval bounds, fails to compare with
    stdlib aware datetimes)."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment} has no timezone: window bounds must be timezone-aware")
    return datetime.fromtimestamp(moment.timestamp(), tz=UTC)
