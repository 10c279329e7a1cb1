"""Content-addressed snapshots: same rows -> same bytes and id; tampering is caught."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from pipelines.datasets import DatasetSpec
from pipelines.datasets.demo import load_demo_flights
from pipelines.snapshots import (
    Snapshot,
    SnapshotIntegrityError,
    SnapshotManifest,
    build_snapshot,
    canonical_order,
    canonical_parquet_bytes,
    load_snapshot,
    verify_snapshot,
)

START = datetime(2013, 1, 1, tzinfo=UTC)
END = datetime(2013, 1, 2, tzinfo=UTC)
KEYS = ["carrier", "flight", "origin"]


@pytest.fixture
def tiny() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time_hour": pd.to_datetime(["2013-01-01T10:00Z", "2013-01-01T10:00Z", "2013-01-01T09:00Z"]),
            "carrier": ["UA", "AA", "UA"],
            "flight": [1545, 1141, 1714],
            "origin": ["EWR", "JFK", "LGA"],
            "arr_delay": [11.0, np.nan, 20.0],
            "tailnum": ["N14228", None, "N24211"],
        }
    )


def snapshot_of(frame: pd.DataFrame, spec: DatasetSpec, **overrides: object) -> Snapshot:
    arguments: dict[str, object] = {
        "source_query": "SELECT * FROM flights WHERE time_hour >= %(start)s AND time_hour < %(end)s",
        "interval_start": START,
        "interval_end": END,
    } | overrides
    return build_snapshot(frame, spec, **arguments)  # type: ignore[arg-type]


def test_row_and_column_order_do_not_change_the_bytes(tiny: pd.DataFrame) -> None:
    reference = canonical_parquet_bytes(tiny, "time_hour", KEYS)
    shuffled = tiny.sample(frac=1.0, random_state=3)[list(reversed(tiny.columns))]
    assert canonical_parquet_bytes(shuffled, "time_hour", KEYS) == reference
    assert canonical_parquet_bytes(tiny.set_index("carrier", drop=False), "time_hour", KEYS) == reference


def test_different_rows_give_different_bytes(tiny: pd.DataFrame) -> None:
    changed = tiny.copy()
    changed.loc[0, "arr_delay"] = 12.0
    assert canonical_parquet_bytes(changed, "time_hour", KEYS) != canonical_parquet_bytes(tiny, "time_hour", KEYS)


def test_rows_with_duplicate_keys_are_still_ordered_deterministically(tiny: pd.DataFrame) -> None:
    duplicated = pd.concat([tiny, tiny.assign(arr_delay=[1.0, 2.0, 3.0])], ignore_index=True)
    reference = canonical_parquet_bytes(duplicated, "time_hour", KEYS)
    for seed in range(3):
        shuffled = duplicated.sample(frac=1.0, random_state=seed)
        assert canonical_parquet_bytes(shuffled, "time_hour", KEYS) == reference


def test_canonical_order_sorts_by_time_then_keys(tiny: pd.DataFrame) -> None:
    ordered = canonical_order(tiny, "time_hour", KEYS)
    assert list(ordered.columns[:4]) == ["time_hour", *KEYS]
    assert list(ordered.columns[4:]) == ["arr_delay", "tailnum"]
    assert ordered["flight"].tolist() == [1714, 1141, 1545]
    assert ordered.index.tolist() == [0, 1, 2]


def test_missing_ordering_column_fails_clearly(tiny: pd.DataFrame) -> None:
    with pytest.raises(KeyError, match=r"ordering columns \['origin'\] are missing"):
        canonical_parquet_bytes(tiny.drop(columns=["origin"]), "time_hour", KEYS)


def test_manifest_describes_the_snapshot(tiny: pd.DataFrame, flights_spec: DatasetSpec) -> None:
    snapshot = snapshot_of(tiny, flights_spec)
    manifest = snapshot.manifest
    assert len(manifest.snapshot_id) == 64
    assert (manifest.dataset, manifest.spec_version, manifest.rows) == ("flights", "1.0.0", 3)
    assert manifest.size_bytes == len(snapshot.data)
    assert manifest.column_types == {
        "time_hour": "datetime64[ns, UTC]",
        "carrier": "object",
        "flight": "int64",
        "origin": "object",
        "arr_delay": "float64",
        "tailnum": "object",
    }
    assert manifest.parquet_writer.startswith("pyarrow ")
    assert SnapshotManifest.model_validate_json(manifest.model_dump_json()) == manifest


def test_created_at_is_not_part_of_the_id(tiny: pd.DataFrame, flights_spec: DatasetSpec) -> None:
    first = snapshot_of(tiny, flights_spec, created_at=datetime(2020, 1, 1, tzinfo=UTC))
    second = snapshot_of(tiny.iloc[::-1], flights_spec, created_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert first.manifest.snapshot_id == second.manifest.snapshot_id
    assert first.manifest.created_at != second.manifest.created_at


def test_verify_accepts_the_untouched_bytes_and_load_round_trips(tiny: pd.DataFrame, flights_spec: DatasetSpec) -> None:
    snapshot = snapshot_of(tiny, flights_spec)
    verify_snapshot(snapshot.data, snapshot.manifest)
    loaded = load_snapshot(snapshot.data, snapshot.manifest)
    expected = canonical_order(tiny, "time_hour", KEYS)
    pd.testing.assert_frame_equal(loaded, expected)


def test_verify_rejects_tampered_bytes(tiny: pd.DataFrame, flights_spec: DatasetSpec) -> None:
    snapshot = snapshot_of(tiny, flights_spec)
    tampered = bytearray(snapshot.data)
    tampered[len(tampered) // 2] ^= 0xFF
    with pytest.raises(SnapshotIntegrityError, match=r"bytes hash to [0-9a-f]{12}.*changed, or not this snapshot"):
        verify_snapshot(bytes(tampered), snapshot.manifest)
    with pytest.raises(SnapshotIntegrityError, match=r"bytes hash to"):
        load_snapshot(snapshot.data[:-10], snapshot.manifest)


def test_verify_rejects_an_edited_manifest(tiny: pd.DataFrame, flights_spec: DatasetSpec) -> None:
    snapshot = snapshot_of(tiny, flights_spec)
    edited = snapshot.manifest.model_copy(update={"rows": 2})
    with pytest.raises(SnapshotIntegrityError, match=r"file holds 3 rows, manifest says 2"):
        verify_snapshot(snapshot.data, edited)


def test_interval_must_be_ordered_and_timezone_aware(tiny: pd.DataFrame, flights_spec: DatasetSpec) -> None:
    with pytest.raises(ValidationError, match=r"interval_start .* is not before interval_end"):
        snapshot_of(tiny, flights_spec, interval_start=END, interval_end=START)
    with pytest.raises(ValidationError, match=r"timezone"):
        snapshot_of(tiny, flights_spec, interval_start=datetime(2013, 1, 1))


def test_real_flights_snapshot_is_reproducible(flights_spec: DatasetSpec) -> None:
    flights = load_demo_flights()
    january = flights[flights["time_hour"] < pd.Timestamp("2013-02-01", tz="UTC")]
    first = snapshot_of(january, flights_spec)
    again = snapshot_of(january.sample(frac=1.0, random_state=7), flights_spec)
    assert first.manifest.snapshot_id == again.manifest.snapshot_id
    assert first.data == again.data
    assert first.manifest.rows == len(january) == 26_865
    assert list(first.manifest.column_types)[:4] == ["time_hour", "carrier", "flight", "origin"]
    assert len(load_snapshot(first.data, first.manifest)) == len(january)
