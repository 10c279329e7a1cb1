"""Reading an interval from source files (pipelines.datasets.source_files), on in-memory files of real flights.

The S3 side is tested on the live stack (tests/integration/test_file_source.py); here: which objects count, the
interval filter and row-group pruning, CSV typing, the errors naming the problem, the manifest description, and
the key property that files and the SQL table give the same snapshot for the same rows.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.source_data import FILE_ROWS_PER_ROW_GROUP, monthly_parquet_files
from pipelines.assembly import conform_source_frame
from pipelines.datasets import DatasetSpec
from pipelines.datasets.demo import load_demo_flights
from pipelines.datasets.source_files import (
    FileRead,
    MissingColumnsError,
    SourceFileError,
    SourceObject,
    csv_dtypes,
    describe_file_extraction,
    held_text,
    interval_filter,
    interval_text,
    read_csv_interval,
    read_parquet_interval,
    select_objects,
)
from pipelines.datasets.spec import FileSourceSpec
from pipelines.snapshots import build_snapshot

JAN_1, JAN_3, JAN_15 = (datetime(2013, 1, day, tzinfo=UTC) for day in (1, 3, 15))


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    return load_demo_flights()


@pytest.fixture(scope="module")
def first_week(flights: pd.DataFrame) -> pd.DataFrame:
    """Jan 1-7, sorted by time (as the monthly files are): ~6,000 rows."""
    rows = flights[flights["time_hour"] < "2013-01-08"]
    return rows.sort_values(["time_hour", "carrier", "flight", "origin"], ignore_index=True)


def parquet_bytes(frame: pd.DataFrame, row_group_size: int = 1000) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer, row_group_size=row_group_size)
    return buffer.getvalue()


def in_interval(frame: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    times = frame["time_hour"]
    return frame[(times >= start) & (times < end)]


def snapshot_id(frame: pd.DataFrame, spec: DatasetSpec, start: datetime, end: datetime) -> str:
    snapshot = build_snapshot(
        conform_source_frame(frame, spec), spec, source_query="-", interval_start=start, interval_end=end
    )
    return snapshot.manifest.snapshot_id


# --- listing ------------------------------------------------------------------------------------------------


def test_select_objects_keeps_the_format_sorted_by_key_with_bare_etags() -> None:
    files = FileSourceSpec(uri_prefix="s3://drops/raw/", format="parquet")
    listing = [
        {"Key": "raw/2013-02.parquet", "ETag": '"bb"', "Size": 2},
        {"Key": "raw/2013-01.parquet", "ETag": '"aa"', "Size": 1},
        {"Key": "raw/old/2012-12.parquet", "ETag": '"cc"', "Size": 3},  # sub-folders are part of the drop
        {"Key": "raw/2013-01.csv", "ETag": '"dd"', "Size": 4},
        {"Key": "raw/2013-01.parquet.tmp", "ETag": '"ee"', "Size": 5},
        {"Key": "raw/_SUCCESS", "ETag": '"ff"', "Size": 0},
    ]
    assert select_objects(listing, files) == [
        SourceObject("raw/2013-01.parquet", "aa", 1),
        SourceObject("raw/2013-02.parquet", "bb", 2),
        SourceObject("raw/old/2012-12.parquet", "cc", 3),
    ]
    csv = FileSourceSpec(uri_prefix="s3://drops/raw/", format="csv")
    assert [obj.key for obj in select_objects(listing, csv)] == ["raw/2013-01.csv"]


# --- the interval filter ------------------------------------------------------------------------------------


def test_interval_filter_is_half_open_and_typed_like_the_column() -> None:
    times = pd.Series(pd.date_range("2013-01-01", periods=4, freq="D", tz="UTC"))
    table = pa.table({"t": pa.array(times, type=pa.timestamp("us", tz="UTC"))})
    expression = interval_filter(
        "t", datetime(2013, 1, 2, tzinfo=UTC), datetime(2013, 1, 4, tzinfo=UTC), table["t"].type
    )
    assert table.filter(expression)["t"].to_pylist() == [t.to_pydatetime() for t in times[1:3]]


def test_interval_filter_compares_naive_times_as_utc_and_refuses_other_types() -> None:
    naive = pa.table({"t": pa.array(pd.date_range("2013-01-01", periods=24, freq="h"), type=pa.timestamp("ns"))})
    new_york = datetime(2013, 1, 1, 5, tzinfo=pd.Timestamp("2013-01-01", tz="America/New_York").tzinfo)  # 10:00Z
    expression = interval_filter("t", new_york, datetime(2013, 1, 1, 12, tzinfo=UTC), naive["t"].type)
    assert naive.filter(expression).num_rows == 2  # 10:00 and 11:00
    with pytest.raises(SourceFileError, match=r"time column 't' is string, not a timestamp"):
        interval_filter("t", JAN_1, JAN_3, pa.string())
    with pytest.raises(ValueError, match="no timezone"):
        interval_filter("t", datetime(2013, 1, 1), JAN_3, naive["t"].type)


def test_interval_text_is_utc() -> None:
    assert interval_text("time_hour", JAN_1, JAN_3) == (
        "time_hour >= 2013-01-01T00:00:00+00:00 AND time_hour < 2013-01-03T00:00:00+00:00"
    )


# --- Parquet --------------------------------------------------------------------------------------------------


def test_parquet_reads_only_overlapping_row_groups_and_exact_rows(
    first_week: pd.DataFrame, flights_spec: DatasetSpec
) -> None:
    data = parquet_bytes(first_week)
    total = pq.ParquetFile(io.BytesIO(data)).num_row_groups
    read = read_parquet_interval(io.BytesIO(data), flights_spec, JAN_1, JAN_3)
    expected = in_interval(first_week, JAN_1, JAN_3)
    assert read.rows is not None and len(read.rows) == len(expected) > 1000
    assert read.row_groups is not None and read.row_groups[1] == total
    assert 1 <= read.row_groups[0] < total / 2  # two days of seven
    assert read.rows["time_hour"].max() < JAN_3 <= first_week["time_hour"].max()
    assert read.held == (first_week["time_hour"].min(), first_week["time_hour"].max())
    assert list(read.rows.columns) == flights_spec.raw_columns


def test_parquet_outside_the_interval_reads_no_row_group(first_week: pd.DataFrame, flights_spec: DatasetSpec) -> None:
    read = read_parquet_interval(
        io.BytesIO(parquet_bytes(first_week)), flights_spec, JAN_15, datetime(2013, 2, 1, tzinfo=UTC)
    )
    assert read.rows is None and read.row_groups is not None and read.row_groups[0] == 0
    assert not read.data_read


def test_parquet_missing_columns_are_named_only_when_the_interval_reaches_the_file(
    first_week: pd.DataFrame, flights_spec: DatasetSpec
) -> None:
    data = parquet_bytes(first_week.drop(columns=["dest", "visib"]))
    with pytest.raises(MissingColumnsError, match=r"lacks columns \['dest', 'visib'\]") as caught:
        read_parquet_interval(io.BytesIO(data), flights_spec, JAN_1, JAN_3)
    assert "carrier" in caught.value.present
    # An older file outside the interval need not have a newer spec's columns.
    assert read_parquet_interval(io.BytesIO(data), flights_spec, JAN_15, datetime(2013, 2, 1, tzinfo=UTC)).rows is None
    with pytest.raises(MissingColumnsError, match=r"lacks columns \['time_hour'\]"):
        read_parquet_interval(
            io.BytesIO(parquet_bytes(first_week.drop(columns=["time_hour"]))), flights_spec, JAN_1, JAN_3
        )


def test_parquet_that_is_not_parquet_or_has_text_times_is_refused(
    first_week: pd.DataFrame, flights_spec: DatasetSpec
) -> None:
    with pytest.raises(SourceFileError, match=r"not a readable Parquet file: .*magic bytes"):
        read_parquet_interval(io.BytesIO(b"time_hour,carrier\n2013-01-01,AA\n"), flights_spec, JAN_1, JAN_3)
    text_times = first_week.assign(time_hour=first_week["time_hour"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    with pytest.raises(SourceFileError, match=r"time column 'time_hour' is (string|large_string), not a timestamp"):
        read_parquet_interval(io.BytesIO(parquet_bytes(text_times)), flights_spec, JAN_1, JAN_3)


# --- CSV ------------------------------------------------------------------------------------------------------


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.assign(time_hour=frame["time_hour"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(index=False).encode()


def test_csv_types_codes_as_strings_and_floats_as_floats(flights_spec: DatasetSpec) -> None:
    dtypes = csv_dtypes(flights_spec)
    assert dtypes["carrier"] == dtypes["time_hour"] == "str"
    assert "distance" not in dtypes  # `number`: inferred, as the SQL driver does (int64 here)
    assert "year" not in dtypes  # `integer`: int64, or float64 when a value is missing


def test_csv_keeps_na_codes_whole_floats_and_exact_rows(first_week: pd.DataFrame, flights_spec: DatasetSpec) -> None:
    frame = first_week.copy()
    frame.loc[0, "dest"] = "NA"  # a valid code, not a missing value
    frame.loc[1, "tailnum"] = None
    frame.loc[2, "temp"] = 0.1 + 0.2  # 0.30000000000000004: must survive the text round trip
    read = read_csv_interval(csv_bytes(frame), flights_spec, JAN_1, JAN_3)
    expected = in_interval(frame, JAN_1, JAN_3)
    assert read.rows is not None and len(read.rows) == len(expected)
    assert read.rows.loc[0, "dest"] == "NA"
    assert pd.isna(read.rows.loc[1, "tailnum"])
    assert read.rows.loc[2, "temp"] == 0.1 + 0.2
    assert read.row_groups is None and read.data_read
    assert read.held == (frame["time_hour"].min(), frame["time_hour"].max())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"not a readable CSV file: No columns to parse"),
        (b"time_hour,carrier\n2013-01-01T00:00:00Z,AA\n", r"lacks columns \['year', 'month'"),
        ("time_hour,carrier\n\xff\xfe\n".encode("latin-1"), r"not a readable CSV file"),
    ],
)
def test_csv_errors_name_the_problem(content: bytes, message: str, flights_spec: DatasetSpec) -> None:
    with pytest.raises(SourceFileError, match=message):
        read_csv_interval(content, flights_spec, JAN_1, JAN_3)


def test_csv_with_an_unparsable_time_is_refused(first_week: pd.DataFrame, flights_spec: DatasetSpec) -> None:
    frame = first_week.head(3).assign(time_hour=["2013-01-01T00:00:00Z", "yesterday", "2013-01-01T01:00:00Z"])
    with pytest.raises(SourceFileError, match=r"time column 'time_hour' holds a value that is not an ISO 8601 time"):
        read_csv_interval(frame.to_csv(index=False).encode(), flights_spec, JAN_1, JAN_3)


# --- the key property: files and table give the same snapshot -------------------------------------------------


def test_monthly_files_give_the_snapshot_of_the_table_rows(flights: pd.DataFrame, flights_spec: DatasetSpec) -> None:
    """The rows the SQL source returns for [start, end), typed as the demo table, against the files' rows."""
    months = monthly_parquet_files(flights, flights_spec)
    assert list(months)[:2] == ["2013-01", "2013-02"] and len(months) == 13  # Dec 31 evenings are 2014-01 in UTC
    january = pq.ParquetFile(io.BytesIO(months["2013-01"]))
    assert january.metadata.num_rows == int((flights["time_hour"] < "2013-02-01").sum())
    assert january.metadata.row_group(0).num_rows == FILE_ROWS_PER_ROW_GROUP
    assert january.schema_arrow.metadata is None  # no pandas metadata: bytes independent of the pandas version

    reads = [read_parquet_interval(io.BytesIO(data), flights_spec, JAN_1, JAN_15) for data in months.values()]
    rows = pd.concat([read.rows for read in reads if read.rows is not None], ignore_index=True)
    assert [read.data_read for read in reads].count(True) == 1
    table_rows = in_interval(flights, JAN_1, JAN_15)
    assert snapshot_id(rows, flights_spec, JAN_1, JAN_15) == snapshot_id(table_rows, flights_spec, JAN_1, JAN_15)
    csv_rows = read_csv_interval(csv_bytes(table_rows), flights_spec, JAN_1, JAN_15).rows
    assert csv_rows is not None
    assert snapshot_id(csv_rows, flights_spec, JAN_1, JAN_15) == snapshot_id(table_rows, flights_spec, JAN_1, JAN_15)


def test_an_all_missing_string_column_from_csv_snapshots_like_sql_nulls(
    first_week: pd.DataFrame, flights_spec: DatasetSpec
) -> None:
    frame = first_week.head(50).assign(tailnum=None)  # SQL gives None; CSV gives an all-NaN column
    csv_rows = read_csv_interval(csv_bytes(frame), flights_spec, JAN_1, JAN_3).rows
    assert csv_rows is not None and csv_rows["tailnum"].isna().all()
    assert snapshot_id(csv_rows, flights_spec, JAN_1, JAN_3) == snapshot_id(frame, flights_spec, JAN_1, JAN_3)


def test_microsecond_times_snapshot_like_nanoseconds(first_week: pd.DataFrame, flights_spec: DatasetSpec) -> None:
    micro = first_week.assign(time_hour=first_week["time_hour"].dt.as_unit("us"))
    read = read_parquet_interval(io.BytesIO(parquet_bytes(micro)), flights_spec, JAN_1, JAN_3)
    assert read.rows is not None
    expected = in_interval(first_week, JAN_1, JAN_3)
    assert snapshot_id(read.rows, flights_spec, JAN_1, JAN_3) == snapshot_id(expected, flights_spec, JAN_1, JAN_3)


# --- the manifest description ---------------------------------------------------------------------------------


def test_description_names_prefix_filter_and_only_the_objects_read(flights_spec: DatasetSpec) -> None:
    files = FileSourceSpec(uri_prefix="s3://factory-data/raw/flights/", format="parquet")
    rows = pd.DataFrame({"x": np.arange(3)})
    reads = [
        (SourceObject("raw/flights/2013-01.parquet", "e1", 10), FileRead(rows=rows, row_groups=(2, 4), held=None)),
        (SourceObject("raw/flights/2013-02.parquet", "e2", 10), FileRead(rows=None, row_groups=(0, 4), held=None)),
    ]
    text = describe_file_extraction(flights_spec, files, JAN_1, JAN_15, reads)
    assert text == describe_file_extraction(flights_spec, files, JAN_1, JAN_15, reads)
    described = json.loads(text)
    assert described["uri_prefix"] == "s3://factory-data/raw/flights/" and described["format"] == "parquet"
    assert described["filter"] == interval_text("time_hour", JAN_1, JAN_15)
    assert described["columns"] == flights_spec.raw_columns
    assert described["objects_listed"] == 2
    assert described["objects_read"] == [
        {"key": "raw/flights/2013-01.parquet", "etag": "e1", "rows": 3, "row_groups": "2/4"}
    ]


def test_held_text_spans_every_file_that_knows_its_range() -> None:
    jan, feb = pd.Timestamp("2013-01-01T10:00Z"), pd.Timestamp("2013-02-28T23:00Z")
    reads = [
        FileRead(rows=None, row_groups=(0, 4), held=(pd.Timestamp("2013-02-01T00:00Z"), feb)),
        FileRead(rows=None, row_groups=(0, 4), held=(jan, pd.Timestamp("2013-01-31T23:00Z"))),
        FileRead(rows=None, row_groups=None, held=None),
    ]
    assert held_text(reads) == "the files hold 2013-01-01T10:00:00+00:00 to 2013-02-28T23:00:00+00:00"
    assert held_text(reads[2:]) == "the files hold no time range that could be read cheaply"
