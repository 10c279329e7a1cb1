"""Extraction from source files in S3 (Parquet, CSV) on the live stack, against the SQL table it must agree with.

`factory seed` writes the demo rows both to the source table and as monthly Parquet files; for the same
interval both must give the same snapshot id. The CSV path, each error, the ETag pinning and the DAG's
`source=files` branch are checked on the real SeaweedFS.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.airflow_api import AirflowClient
from factory.settings import PROJECT_ROOT
from factory.source_data import seed_demo_sources, seed_source_files
from factory.stack import Stack, s3_client
from pipelines.assembly import DATA_BUCKET, resolve_request
from pipelines.datasets.spec import DatasetSpec, FileSourceSpec
from pipelines.snapshots import build_snapshot
from tests.integration.conftest import stack_subprocess_env

pytestmark = pytest.mark.services

JAN_1, JAN_2, JAN_4, JAN_15 = (datetime(2013, 1, day, tzinfo=UTC) for day in (1, 2, 4, 15))
SEEDED_PREFIX = "raw/flights/"
TEST_PREFIX = "tests/file-source"
MONTHS = [f"2013-{month:02d}" for month in range(1, 13)] + ["2014-01"]  # Dec 31 evenings are 2014 in UTC


@pytest.fixture(scope="module")
def seeded(live_stack: Stack):
    return seed_demo_sources(live_stack.settings, live_stack.credentials)


@pytest.fixture(scope="module")
def s3(live_stack: Stack):
    return s3_client(live_stack.settings, live_stack.credentials)


@pytest.fixture(scope="module")
def spec() -> DatasetSpec:
    return resolve_request({}).spec


def with_files(spec: DatasetSpec, folder: str, file_format: str = "parquet") -> DatasetSpec:
    files = FileSourceSpec(uri_prefix=f"s3://{DATA_BUCKET}/{TEST_PREFIX}/{folder}/", format=file_format)
    return spec.model_copy(update={"source": spec.source.model_copy(update={"files": files})})


def snapshot_id(frame: pd.DataFrame, spec: DatasetSpec, start: datetime, end: datetime) -> str:
    return build_snapshot(frame, spec, source_query="-", interval_start=start, interval_end=end).manifest.snapshot_id


def table_rows(spec: DatasetSpec, start: datetime, end: datetime) -> pd.DataFrame:
    from factory_providers.source.hooks import FactorySourceHook

    return FactorySourceHook().extract_interval(spec, start, end)


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    return buffer.getvalue()


def test_seed_writes_one_parquet_file_per_month_once(seeded, live_stack, s3):
    table, files = seeded
    assert files is not None and files.uri_prefix == f"s3://{DATA_BUCKET}/{SEEDED_PREFIX}"
    assert (files.files, files.rows) == (13, table.rows)
    listed = s3.list_objects_v2(Bucket=DATA_BUCKET, Prefix=SEEDED_PREFIX)["Contents"]
    assert sorted(item["Key"] for item in listed) == [f"{SEEDED_PREFIX}{month}.parquet" for month in MONTHS]
    again = seed_source_files(live_stack.settings, live_stack.credentials)
    assert again.written == 0  # write-once: existing drops are never replaced
    relisted = s3.list_objects_v2(Bucket=DATA_BUCKET, Prefix=SEEDED_PREFIX)["Contents"]
    assert [(i["Key"], i["ETag"], i["LastModified"]) for i in relisted] == [
        (i["Key"], i["ETag"], i["LastModified"]) for i in listed
    ]


def test_files_and_table_give_the_same_snapshot(seeded, stack_connections, spec, s3):
    from factory_providers.s3.files import extract_files_interval

    extraction = extract_files_interval(spec, JAN_1, JAN_15)
    from_table = table_rows(spec, JAN_1, JAN_15)
    assert len(extraction.frame) == len(from_table) > 10_000
    assert snapshot_id(extraction.frame, spec, JAN_1, JAN_15) == snapshot_id(from_table, spec, JAN_1, JAN_15)

    described = json.loads(extraction.source_query)
    assert described["uri_prefix"] == f"s3://{DATA_BUCKET}/{SEEDED_PREFIX}" and described["objects_listed"] == 13
    (january,) = described["objects_read"]  # the other 12 files had only their footer read
    key = f"{SEEDED_PREFIX}2013-01.parquet"
    assert (january["key"], january["rows"]) == (key, len(from_table))
    assert january["etag"] == s3.head_object(Bucket=DATA_BUCKET, Key=key)["ETag"].strip('"')
    read, total = map(int, january["row_groups"].split("/"))
    assert 1 <= read < total  # two weeks of a month: the later row groups are skipped


def test_csv_files_give_the_same_snapshot(seeded, stack_connections, spec, s3):
    from factory_providers.s3.files import extract_files_interval

    rows = table_rows(spec, JAN_1, JAN_4)
    as_text = rows.assign(time_hour=rows["time_hour"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    for day, part in as_text.groupby(rows["time_hour"].dt.day):  # one file per day, interval spans two of three
        s3.put_object(
            Bucket=DATA_BUCKET, Key=f"{TEST_PREFIX}/csv/day-{day}.csv", Body=part.to_csv(index=False).encode()
        )
    csv_spec = with_files(spec, "csv", "csv")
    extraction = extract_files_interval(csv_spec, JAN_2, JAN_4)
    assert snapshot_id(extraction.frame, spec, JAN_2, JAN_4) == snapshot_id(
        table_rows(spec, JAN_2, JAN_4), spec, JAN_2, JAN_4
    )
    described = json.loads(extraction.source_query)
    assert described["format"] == "csv"
    assert [item["key"] for item in described["objects_read"]] == [f"{TEST_PREFIX}/csv/day-{d}.csv" for d in (1, 2, 3)]
    assert described["objects_read"][0]["rows"] == 0  # read whole (CSV has no index), nothing kept


def test_no_files_under_the_prefix_is_named(stack_connections, spec):
    from factory_providers.s3.files import extract_files_interval
    from factory_providers.source.hooks import SourceExtractionError

    with pytest.raises(
        SourceExtractionError, match=rf"no \.parquet files under s3://{DATA_BUCKET}/{TEST_PREFIX}/none/"
    ):
        extract_files_interval(with_files(spec, "none"), JAN_1, JAN_15)


def test_a_file_missing_spec_columns_is_named_with_the_columns(seeded, stack_connections, spec, s3):
    from factory_providers.s3.files import extract_files_interval
    from factory_providers.source.hooks import SourceExtractionError

    rows = table_rows(spec, JAN_1, JAN_2).drop(columns=["dest", "visib"])
    s3.put_object(Bucket=DATA_BUCKET, Key=f"{TEST_PREFIX}/missing/2013-01.parquet", Body=parquet_bytes(rows))
    uri = f"s3://{DATA_BUCKET}/{TEST_PREFIX}/missing/2013-01.parquet"
    with pytest.raises(SourceExtractionError, match=rf"source file {uri} lacks columns \['dest', 'visib'\] .*file has"):
        extract_files_interval(with_files(spec, "missing"), JAN_1, JAN_15)


@pytest.mark.parametrize(
    ("file_format", "content", "message"),
    [
        ("parquet", b"PAR1 this is not a parquet file PAR1", r"not a readable Parquet file"),
        ("csv", b"time_hour,year\n2013-01-01T00:00:00Z,2013\n", r"lacks columns \['month'"),
        ("csv", b"\x00\xff\xfe\x01", r"not a readable CSV file"),
    ],
)
def test_an_unreadable_file_is_named(stack_connections, spec, s3, file_format, content, message):
    from factory_providers.s3.files import extract_files_interval
    from factory_providers.source.hooks import SourceExtractionError

    folder = f"bad-{file_format}-{len(content)}"
    key = f"{TEST_PREFIX}/{folder}/2013-01.{file_format}"
    s3.put_object(Bucket=DATA_BUCKET, Key=key, Body=content)
    with pytest.raises(SourceExtractionError, match=rf"source file s3://{DATA_BUCKET}/{key}.*{message}"):
        extract_files_interval(with_files(spec, folder, file_format), JAN_1, JAN_15)


def test_an_empty_interval_says_what_the_files_hold(seeded, stack_connections, spec):
    from factory_providers.s3.files import extract_files_interval
    from factory_providers.source.hooks import EmptyIntervalError

    with pytest.raises(EmptyIntervalError) as caught:
        extract_files_interval(spec, datetime(2015, 1, 1, tzinfo=UTC), datetime(2015, 1, 15, tzinfo=UTC))
    assert str(caught.value) == (
        f"no rows in the 13 parquet files under s3://{DATA_BUCKET}/{SEEDED_PREFIX} with time_hour in "
        "[2015-01-01T00:00:00+00:00, 2015-01-15T00:00:00+00:00): nothing to snapshot "
        "(the files hold 2013-01-01T10:00:00+00:00 to 2014-01-01T04:00:00+00:00)"
    )


def test_reads_are_pinned_to_the_listed_etag(stack_connections, s3):
    """A file overwritten between listing and reading fails the read instead of mixing versions."""
    from factory_providers.s3.files import _PinnedObjectReader
    from factory_providers.s3.hooks import FactoryS3Hook
    from factory_providers.source.hooks import SourceExtractionError

    from pipelines.datasets.source_files import SourceObject

    key = f"{TEST_PREFIX}/pinned/data.csv"
    etag = s3.put_object(Bucket=DATA_BUCKET, Key=key, Body=b"version 1")["ETag"].strip('"')
    reader = _PinnedObjectReader(FactoryS3Hook().get_conn(), DATA_BUCKET, SourceObject(key, etag, 9))
    assert reader.read(7) == b"version" and reader.readall() == b" 1"
    s3.put_object(Bucket=DATA_BUCKET, Key=key, Body=b"version 2")
    reader.seek(0)
    with pytest.raises(SourceExtractionError, match=rf"source file s3://{DATA_BUCKET}/{key} changed while it was read"):
        reader.read(7)


DAG_CHILD = f"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(PROJECT_ROOT / "dags" / "factory_train.py")!r})
assert not bag.import_errors, bag.import_errors
run = bag.get_dag("factory_train").test(run_conf=json.loads(sys.argv[1]), mark_success_pattern=sys.argv[2])
print("DAGRUN " + json.dumps({{"state": str(run.state), "run_id": run.run_id}}), flush=True)
"""


def test_the_training_dag_extracts_from_files_when_asked(seeded, live_stack, stack_connections, spec):
    """Param source=files reaches the extraction task; the snapshot is the table's (later tasks marked success)."""
    conf = {"interval_start": "2013-01-01T00:00:00Z", "interval_end": "2013-01-15T00:00:00Z", "source": "files"}
    after_extraction = "(?!extract_snapshot$).*"  # every task but the extraction (fullmatched)
    result = subprocess.run(
        [sys.executable, "-c", DAG_CHILD, json.dumps(conf), after_extraction], env=stack_subprocess_env(live_stack),
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    lines = [line for line in result.stdout.splitlines() if line.startswith("DAGRUN ")]
    assert lines, result.stdout[-3000:] + result.stderr[-3000:]
    run = json.loads(lines[0].removeprefix("DAGRUN "))
    assert run["state"] == "success", result.stderr[-3000:]
    creds = live_stack.credentials
    client = AirflowClient(live_stack.settings.airflow_url, creds.airflow_admin_user, creds.airflow_admin_password)
    try:
        snapshot = client.xcom("factory_train", run["run_id"], "extract_snapshot")
    finally:
        client.close()
    manifest_key = snapshot["manifest_uri"].removeprefix(f"s3://{DATA_BUCKET}/")
    s3 = s3_client(live_stack.settings, live_stack.credentials)
    manifest = json.loads(s3.get_object(Bucket=DATA_BUCKET, Key=manifest_key)["Body"].read())
    assert json.loads(manifest["source_query"])["source"] == "files"
    assert snapshot["snapshot_id"] == snapshot_id(table_rows(spec, JAN_1, JAN_15), spec, JAN_1, JAN_15)
