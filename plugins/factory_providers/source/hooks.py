"""Read one time interval of a dataset's source table through the `factory_source` Connection.

The Connection decides the database: `sqlite` (embedded profile: `host` is the database file) or `postgres`
(production: `schema` is the database). Both go through common-sql's `DbApiHook` (`get_df`, the SQLAlchemy
inspector), so the query path is the one every Airflow SQL hook uses; PostgreSQL connections are opened by the
postgres provider's own hook. The SQLite provider is not part of this environment, so SQLite connections are
opened here with the standard library, read-only: extraction must never change the operational data.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.common.sql.hooks.sql import DbApiHook

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import URL

    from pipelines.datasets.spec import DatasetSpec

SUPPORTED_CONN_TYPES = ("sqlite", "postgres")


class SourceExtractionError(RuntimeError):
    """The source cannot give the rows a spec asks for; the message names the table, columns or interval."""


class EmptyIntervalError(SourceExtractionError):
    """The interval holds no rows: nothing to snapshot, and retrying will not change that."""


# ----- messages shared by every source (this table, the S3 files of `factory_providers.s3.files`) ------------
def check_interval(start: datetime, end: datetime) -> None:
    if start >= end:
        raise SourceExtractionError(f"interval start {start.isoformat()} is not before end {end.isoformat()}")


def lacks_columns_error(
    subject: str, spec: DatasetSpec, missing: list[str], present: Iterable[str], *, noun: str
) -> SourceExtractionError:
    """`subject` (e.g. "source table 'flights'") does not hold every raw column the spec declares."""
    return SourceExtractionError(
        f"{subject} lacks columns {missing} that dataset spec {spec.name!r} {spec.version} "
        f"declares ({noun} has {sorted(present)})"
    )


def empty_interval_error(
    subject: str, spec: DatasetSpec, start: datetime, end: datetime, held: str
) -> EmptyIntervalError:
    """No row of `subject` falls in [start, end); `held` says what the source does hold, to spot a wrong interval."""
    return EmptyIntervalError(
        f"no rows in {subject} with {spec.time_column} in [{start.isoformat()}, {end.isoformat()}): "
        f"nothing to snapshot ({held})"
    )


class FactorySourceHook(DbApiHook):
    conn_name_attr = "source_conn_id"
    default_conn_name = "factory_source"
    conn_type = "sqlite"
    hook_name = "Model factory source database"

    def __init__(self, source_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(source_conn_id=source_conn_id, **kwargs)

    # ----- DbApiHook plumbing -----------------------------------------------------------------------------
    @cached_property
    def kind(self) -> str:
        kind = self.connection.conn_type
        if kind not in SUPPORTED_CONN_TYPES:
            supported = ", ".join(SUPPORTED_CONN_TYPES)
            raise SourceExtractionError(
                f"connection {self.get_conn_id()!r} has conn_type {kind!r}; supported: {supported}"
            )
        return kind

    @cached_property
    def placeholder(self) -> str:
        return "?" if self.kind == "sqlite" else "%s"

    @cached_property
    def _postgres(self) -> DbApiHook:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresHook(postgres_conn_id=self.get_conn_id(), connection=self.connection)

    def _sqlite_path(self) -> Path:
        path = Path(self.connection.host or "")
        if not path.is_file():
            raise SourceExtractionError(
                f"connection {self.get_conn_id()!r}: SQLite database {str(path)!r} does not exist "
                "(seed it with `factory seed`)"
            )
        return path

    def get_conn(self) -> Any:
        if self.kind == "postgres":
            return self._postgres.get_conn()
        return sqlite3.connect(f"file:{self._sqlite_path()}?mode=ro", uri=True)

    def get_df(self, sql: str | list[str], parameters: Any = None, **kwargs: Any) -> pd.DataFrame:
        """PostgreSQL through the postgres provider (it reads via a SQLAlchemy engine, as pandas wants); SQLite
        through the DB-API connection, which pandas supports natively."""
        if self.kind == "postgres":
            return self._postgres.get_df(sql, parameters, **kwargs)
        return super().get_df(sql, parameters, **kwargs)

    @property
    def sqlalchemy_url(self) -> URL:
        if self.kind == "postgres":
            return self._postgres.sqlalchemy_url
        from sqlalchemy.engine import URL

        return URL.create("sqlite", database=f"file:{self._sqlite_path()}", query={"mode": "ro", "uri": "true"})

    # ----- extraction -------------------------------------------------------------------------------------
    def interval_query(self, spec: DatasetSpec) -> str:
        """The parameterised SELECT of the spec's raw columns for [start, end) of its time column."""
        columns = ", ".join(_quoted(column) for column in spec.raw_columns)
        time_column = _quoted(spec.time_column)
        return (
            f"SELECT {columns} FROM {_quoted(spec.source.table)} "
            f"WHERE {time_column} >= {self.placeholder} AND {time_column} < {self.placeholder}"
        )

    def extract_interval(self, spec: DatasetSpec, start: datetime, end: datetime) -> pd.DataFrame:
        """The source rows with `start <= time < end`, typed as the spec declares (see `conform_source_frame`)."""
        from pipelines.assembly import conform_source_frame

        check_interval(start, end)
        self._check_table(spec)
        frame = self.get_df(self.interval_query(spec), parameters=self._bounds(start, end))
        if frame.empty:
            raise self._empty_error(spec, start, end)
        return conform_source_frame(frame, spec)

    def _bounds(self, start: datetime, end: datetime) -> tuple[Any, Any]:
        """Query parameters as a tuple: SQLAlchemy (the PostgreSQL path) refuses a list of scalars."""
        from pipelines.assembly import source_time_text

        if self.kind == "sqlite":
            return source_time_text(start), source_time_text(end)
        return start, end

    def _check_table(self, spec: DatasetSpec) -> None:
        table = spec.source.table
        inspector = self.inspector
        if not inspector.has_table(table):
            raise SourceExtractionError(
                f"source table {table!r} does not exist in connection {self.get_conn_id()!r} ({self.kind}); "
                "seed it with `factory seed` or fix source.table in the dataset spec"
            )
        present = {column["name"] for column in inspector.get_columns(table)}
        missing = [column for column in spec.raw_columns if column not in present]
        if missing:
            raise lacks_columns_error(f"source table {table!r}", spec, missing, present, noun="table")

    def newest_time(self, spec: DatasetSpec) -> datetime | None:
        """The time of the newest row (UTC), None for an empty table: where a drift-triggered retraining ends."""
        import pandas as pd

        self._check_table(spec)
        (newest,) = self.get_first(f"SELECT MAX({_quoted(spec.time_column)}) FROM {_quoted(spec.source.table)}")
        if newest is None:
            return None
        stamp = pd.Timestamp(newest)  # SQLite: ISO text with Z; PostgreSQL: an aware datetime
        return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).to_pydatetime()

    def _empty_error(self, spec: DatasetSpec, start: datetime, end: datetime) -> EmptyIntervalError:
        time_column, table = _quoted(spec.time_column), _quoted(spec.source.table)
        first, last = self.get_first(f"SELECT MIN({time_column}), MAX({time_column}) FROM {table}")
        held = f"the table holds {first} to {last}" if first is not None else "the table is empty"
        return empty_interval_error(f"source table {spec.source.table!r}", spec, start, end, held)


def _quoted(identifier: str) -> str:
    """A SQL identifier in double quotes (standard SQL, SQLite and PostgreSQL); names come from a spec file."""
    return '"' + identifier.replace('"', '""') + '"'
