"""Snapshots in the real S3: data first, manifest last, so a write cut off half-way is never read as a snapshot.

The extraction task writes the Parquet object, then the manifest. If S3 (or the worker) dies in between, the
data object is there without its manifest: readers must call that incomplete, and the retry must complete it
by writing only the manifest (content-addressed keys: the data already there holds exactly these bytes).
An unreachable S3 fails with the endpoint named.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from factory_providers.s3.hooks import FactoryS3Hook
from factory_providers.s3.snapshots import SnapshotMissingError, read_snapshot

from factory.processes import free_ports
from factory.stack import Stack
from pipelines.assembly import DATA_BUCKET, resolve_request, snapshot_keys
from pipelines.datasets.demo import load_demo_flights
from pipelines.snapshots import SnapshotIntegrityError, build_snapshot

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def tiny_snapshot():
    """A day of real flights with an extra marker column value, so its id is this test's own."""
    spec = resolve_request({}).spec
    start, end = pd.Timestamp("2013-01-01", tz="UTC"), pd.Timestamp("2013-01-02", tz="UTC")
    flights = load_demo_flights()
    rows = flights[(flights[spec.time_column] >= start) & (flights[spec.time_column] < end)].head(200).copy()
    rows["dest"] = "TST"  # not a real airport: no other test writes this snapshot
    return build_snapshot(rows, spec, source_query="test", interval_start=start, interval_end=end)


def test_data_without_manifest_is_incomplete_and_the_retry_writes_only_the_manifest(stack_connections, tiny_snapshot):
    snapshot = tiny_snapshot
    manifest = snapshot.manifest
    keys = snapshot_keys(manifest.dataset, manifest.snapshot_id)
    s3 = FactoryS3Hook()
    assert s3.put_if_absent(snapshot.data, DATA_BUCKET, keys.data)  # ... and then the worker died
    with pytest.raises(SnapshotMissingError, match=rf"{manifest.snapshot_id[:12]} .* is incomplete: .*manifest.json"):
        read_snapshot(manifest.dataset, manifest.snapshot_id)
    # The retry: the data is already there (same bytes by construction), only the manifest is written.
    assert not s3.put_if_absent(snapshot.data, DATA_BUCKET, keys.data)
    assert s3.put_if_absent(manifest.model_dump_json().encode(), DATA_BUCKET, keys.manifest)
    read_manifest, frame = read_snapshot(manifest.dataset, manifest.snapshot_id)
    assert read_manifest == manifest and len(frame) == manifest.rows


def test_a_changed_snapshot_object_is_refused(stack_connections, tiny_snapshot):
    snapshot = tiny_snapshot
    manifest = snapshot.manifest.model_copy(update={"snapshot_id": "0" * 64})  # a manifest that lies about its data
    keys = snapshot_keys(manifest.dataset, manifest.snapshot_id)
    s3 = FactoryS3Hook()
    s3.put_if_absent(snapshot.data, DATA_BUCKET, keys.data)
    s3.put_if_absent(manifest.model_dump_json().encode(), DATA_BUCKET, keys.manifest)
    with pytest.raises(SnapshotIntegrityError, match="changed, or not this snapshot"):
        read_snapshot(manifest.dataset, manifest.snapshot_id)


def test_s3_down_names_the_endpoint(live_stack: Stack, monkeypatch):
    from botocore.exceptions import EndpointConnectionError

    (port,) = free_ports(1)
    creds = live_stack.credentials
    endpoint = {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": live_stack.settings.region}
    conn = {"conn_type": "aws", "login": creds.s3_access_key, "password": creds.s3_secret_key, "extra": endpoint}
    monkeypatch.setenv("AIRFLOW_CONN_FACTORY_S3", json.dumps(conn))
    with pytest.raises(EndpointConnectionError, match=rf"http://127.0.0.1:{port}/factory-data/"):
        read_snapshot("flights", "a" * 64)
