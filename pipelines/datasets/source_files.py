"""One time interval of a dataset read from source files (Parquet or CSV), given the files' bytes.

The S3 side (listing a prefix, ranged reads pinned to an ETag) lives in `factory_providers.s3.files`; what can
be decided from the bytes alone lives here, free of I/O so it is unit-testable on in-memory files: which objects
are source files, which Parquet row groups can hold the interval (pyarrow prunes them by their time statistics,
so the rest is never fetched), how CSV text is typed, and how an extraction is described in the snapshot
manifest. After `conform_source_frame`, the rows must be the frame the SQL table gives for the same interval,
so that a snapshot's id names the data, not where it was read from.

Times without a timezone are read as UTC, as `conform_source_frame` does for the SQL source.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from pipelines.datasets.spec import DatasetSpec, FileSourceSpec


class SourceFileError(ValueError):
    """A file that cannot serve as source rows: corrupt, not in its format, or an unusable time column."""


class MissingColumnsError(SourceFileError):
    """The file lacks raw columns the spec declares."""

    def __init__(self, missing: list[str], present: Iterable[str]) -> None:
        self.missing, self.present = missing, sorted(present)
        super().__init__(f"lacks columns {missing} (file has {self.present})")


@dataclass(frozen=True)
class SourceObject:
    """One listed object; `etag` (without quotes) pins the version that is read and described."""

    key: str
    etag: str
    size: int


@dataclass(frozen=True)
class FileRead:
    """What one file gave for the interval: its rows (the spec's raw columns, not yet conformed)."""

    rows: pd.DataFrame | None  # None: nothing in the interval
    row_groups: tuple[int, int] | None  # Parquet: (read, in the file); None for formats without row groups
    held: tuple[pd.Timestamp, pd.Timestamp] | None  # the file's time range, when known without extra reading

    @property
    def data_read(self) -> bool:
        """Whether rows were decoded (a Parquet file whose row groups all lie outside had only its footer read)."""
        return self.row_groups is None or self.row_groups[0] > 0


def select_objects(listing: Iterable[Mapping[str, Any]], files: FileSourceSpec) -> list[SourceObject]:
    """The listed objects (S3 `Contents` entries) in the spec's format, by key: the order they are read in."""
    selected = [
        SourceObject(key=item["Key"], etag=str(item["ETag"]).strip('"'), size=int(item["Size"]))
        for item in listing
        if item["Key"].endswith(files.extension)
    ]
    return sorted(selected, key=lambda obj: obj.key)


def _utc(moment: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is None:
        raise ValueError(f"{moment} has no timezone: interval bounds must be timezone-aware")
    return stamp.tz_convert("UTC")


def interval_text(time_column: str, start: datetime, end: datetime) -> str:
    """The interval predicate, for people reading a manifest."""
    return f"{time_column} >= {_utc(start).isoformat()} AND {time_column} < {_utc(end).isoformat()}"


def interval_filter(time_column: str, start: datetime, end: datetime, time_type: pa.DataType) -> ds.Expression:
    """[start, end) on the time column, bounds typed as the column (unit, timezone) so row groups are pruned
    by their statistics. A timestamp column without timezone is compared in UTC."""
    if not pa.types.is_timestamp(time_type):
        raise SourceFileError(f"time column {time_column!r} is {time_type}, not a timestamp")

    def bound(moment: datetime) -> pa.Scalar:
        stamp = _utc(moment)
        return pa.scalar(stamp if time_type.tz else stamp.tz_localize(None), type=time_type)

    column = ds.field(time_column)
    return (column >= bound(start)) & (column < bound(end))


def read_parquet_interval(source: Any, spec: DatasetSpec, start: datetime, end: datetime) -> FileRead:
    """Rows of one Parquet file in [start, end). `source` is anything pyarrow opens (a path, a buffer, a
    pyarrow file); only the footer and the row groups whose time statistics overlap the interval are read."""
    time_column = spec.time_column
    try:
        fragment = ds.ParquetFileFormat().make_fragment(source)
        schema = fragment.physical_schema  # reads the footer: a file that is not Parquet fails here
        if time_column not in schema.names:
            raise MissingColumnsError([time_column], schema.names)
        expression = interval_filter(time_column, start, end, schema.field(time_column).type)
        groups = fragment.row_groups
        selected = fragment.subset(filter=expression)
        counts = (len(selected.row_groups), len(groups))
        held = _held(groups, time_column)
        if not selected.row_groups:
            return FileRead(rows=None, row_groups=counts, held=held)
        # Only files that hold rows of the interval must have every column: older files need not follow a
        # later spec version as long as the interval does not reach them.
        if missing := [column for column in spec.raw_columns if column not in schema.names]:
            raise MissingColumnsError(missing, schema.names)
        table = selected.to_table(filter=expression, columns=spec.raw_columns)
    except pa.ArrowException as error:
        raise SourceFileError(f"not a readable Parquet file: {error}") from error
    return FileRead(rows=table.to_pandas() if table.num_rows else None, row_groups=counts, held=held)


def _held(groups: Sequence[ds.RowGroupInfo], time_column: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    stats = [group.statistics.get(time_column) for group in groups]
    if not stats or any(not item or item.get("min") is None for item in stats):
        return None
    return _as_utc(min(item["min"] for item in stats)), _as_utc(max(item["max"] for item in stats))


def _as_utc(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def csv_dtypes(spec: DatasetSpec) -> dict[str, str]:
    """Types CSV text cannot carry: strings stay strings ("0123" is a code, not a number), float columns are
    float even when every value is whole. Integer and `number` columns are inferred, as the SQL drivers do
    (int64, or float64 when a value is missing); the time column is parsed afterwards."""
    columns = spec.expectations.columns
    dtypes = {name: "str" for name, column in columns.items() if column.type in {"string", "timestamp"}}
    return dtypes | {name: "float64" for name, column in columns.items() if column.type == "float"}


def read_csv_interval(data: bytes | IO[bytes], spec: DatasetSpec, start: datetime, end: datetime) -> FileRead:
    """Rows of one CSV file (header line, comma-separated, UTF-8, empty field = missing) in [start, end).

    Floats are parsed round-trip exact and only the empty field means missing ("NA" is a valid code)."""
    buffer = io.BytesIO(data) if isinstance(data, bytes) else data
    time_column = spec.time_column
    try:
        header = list(pd.read_csv(buffer, nrows=0).columns)
        if missing := [column for column in spec.raw_columns if column not in header]:
            raise MissingColumnsError(missing, header)
        buffer.seek(0)
        frame = pd.read_csv(
            buffer,
            usecols=spec.raw_columns,
            dtype=csv_dtypes(spec),
            keep_default_na=False,
            na_values=[""],
            float_precision="round_trip",
        )
    except (ValueError, UnicodeDecodeError) as error:  # pandas' ParserError and EmptyDataError are ValueErrors
        if isinstance(error, SourceFileError):
            raise
        raise SourceFileError(f"not a readable CSV file: {error}") from error
    try:
        times = pd.to_datetime(frame[time_column], utc=True, format="ISO8601")
    except (ValueError, TypeError) as error:
        raise SourceFileError(
            f"time column {time_column!r} holds a value that is not an ISO 8601 time: {error}"
        ) from error
    held = (times.min(), times.max()) if times.notna().any() else None
    inside = (times >= _utc(start)) & (times < _utc(end))
    rows = frame.assign(**{time_column: times})[inside].reset_index(drop=True)
    return FileRead(rows=rows if len(rows) else None, row_groups=None, held=held)


def describe_file_extraction(
    spec: DatasetSpec,
    files: FileSourceSpec,
    start: datetime,
    end: datetime,
    reads: Sequence[tuple[SourceObject, FileRead]],
) -> str:
    """The manifest's `source_query` for a file extraction: deterministic JSON naming the prefix, the filter and
    every object whose data was read, with its ETag (the version read), row groups read and rows kept."""

    def entry(obj: SourceObject, read: FileRead) -> dict[str, Any]:
        item: dict[str, Any] = {"key": obj.key, "etag": obj.etag, "rows": 0 if read.rows is None else len(read.rows)}
        if read.row_groups is not None:
            item["row_groups"] = f"{read.row_groups[0]}/{read.row_groups[1]}"
        return item

    return json.dumps(
        {
            "source": "files",
            "uri_prefix": files.uri_prefix,
            "format": files.format,
            "columns": spec.raw_columns,
            "filter": interval_text(spec.time_column, start, end),
            "objects_listed": len(reads),
            "objects_read": [entry(obj, read) for obj, read in reads if read.data_read],
        }
    )


def held_text(reads: Iterable[FileRead]) -> str:
    """The time range the files hold, for the empty-interval message (from what was read anyway)."""
    ranges = [read.held for read in reads if read.held is not None]
    if not ranges:
        return "the files hold no time range that could be read cheaply"
    first, last = min(low for low, _ in ranges), max(high for _, high in ranges)
    return f"the files hold {first.isoformat()} to {last.isoformat()}"
