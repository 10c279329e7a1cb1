"""Traffic replay plan: window selection, stable request ids, JSON payloads, labels and their idempotent keys."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from pipelines.datasets.demo import load_demo_flights
from pipelines.monitoring.replay import (
    check_label_frame,
    label_frame,
    label_object_key,
    label_partitions,
    paced_offsets,
    plan_replay,
    request_ids,
    window_rows,
)

START, END = datetime(2013, 7, 1, 12, tzinfo=UTC), datetime(2013, 7, 1, 15, tzinfo=UTC)


@pytest.fixture(scope="module")
def july_morning() -> pd.DataFrame:
    flights = load_demo_flights()
    return flights[(flights["month"] == 7) & (flights["day"] == 1)].reset_index(drop=True)


def test_plan_sends_every_row_of_the_window_once_and_labels_the_landed_ones(flights_spec, july_morning) -> None:
    plan = plan_replay(july_morning, flights_spec, START, END)
    rows = window_rows(july_morning, flights_spec, START, END)
    assert len(plan.requests) == len(rows) > 100
    assert all(START <= request.event_time < END for request in plan.requests)
    assert len({request.request_id for request in plan.requests}) == len(plan.requests)
    # Cancelled flights (no arr_delay) are sent but never labelled, as in production.
    assert plan.unlabelled == int(rows["arr_delay"].isna().sum())
    expected = (rows.loc[rows["arr_delay"].notna(), "arr_delay"] > 15).astype(int).to_numpy()
    assert plan.labels["label"].to_numpy().tolist() == expected.tolist()
    assert set(plan.labels["request_id"]) <= {request.request_id for request in plan.requests}


def test_request_ids_are_stable_across_retries_and_row_order(flights_spec, july_morning) -> None:
    first = plan_replay(july_morning, flights_spec, START, END)
    shuffled = july_morning.sample(frac=1.0, random_state=3)
    again = plan_replay(shuffled, flights_spec, START, END)
    assert [r.request_id for r in first.requests] == [r.request_id for r in again.requests]
    assert first.requests[0].request_id.startswith("replay-")


def test_repeated_keys_get_distinct_ids(flights_spec, july_morning) -> None:
    rows = window_rows(july_morning, flights_spec, START, END)
    doubled = pd.concat([rows.iloc[:3], rows.iloc[:3]], ignore_index=True)
    ids = request_ids(doubled, flights_spec)
    assert len(set(ids)) == 6
    assert ids[:3] == request_ids(rows.iloc[:3], flights_spec)  # the first occurrence keeps its id


def test_payload_is_what_the_gateway_takes_with_missing_values_as_null(flights_spec, july_morning) -> None:
    frame = july_morning.copy()
    frame.loc[:, "wind_gust"] = np.nan
    frame.loc[:, "carrier"] = None
    body = plan_replay(frame, flights_spec, START, END).requests[0].body
    (row,) = body["rows"]
    assert set(row) == set(flights_spec.features.columns)
    assert row["wind_gust"] is None and row["carrier"] is None
    assert isinstance(row["distance"], float) and isinstance(row["origin"], str)


def test_bad_windows_and_missing_columns_are_named(flights_spec, july_morning) -> None:
    with pytest.raises(ValueError, match="not before its end"):
        plan_replay(july_morning, flights_spec, END, START)
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_replay(july_morning, flights_spec, START.replace(tzinfo=None), END)
    with pytest.raises(KeyError, match="temp"):
        plan_replay(july_morning.drop(columns=["temp"]), flights_spec, START, END)


def test_label_objects_are_named_by_content_and_landing_day(flights_spec, july_morning) -> None:
    labels = plan_replay(july_morning, flights_spec, START, END).labels
    landed = datetime(2026, 3, 2, 10, tzinfo=UTC)
    key = label_object_key("flights-hgb", labels, landed)
    assert key.startswith("feedback/flights-hgb/labels/date=2026-03-02/") and key.endswith(".parquet")
    # Same labels in another order, landed later the same day: the same object (a retry writes nothing new).
    assert label_object_key("flights-hgb", labels.iloc[::-1], landed.replace(hour=23)) == key
    assert label_object_key("flights-hgb", labels.iloc[1:], landed) != key
    frame = label_frame(labels, landed)
    assert list(frame.columns) == ["request_id", "label", "event_time", "label_time"]
    assert check_label_frame(frame, key)["label_time"].iloc[0] == pd.Timestamp(landed)


def test_foreign_label_objects_are_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"k\.parquet lacks columns \['label_time'\]"):
        check_label_frame(pd.DataFrame({"request_id": ["a"], "label": [1], "event_time": [START]}), "k.parquet")
    bad = pd.DataFrame({"request_id": ["a"], "label": [2], "event_time": [START], "label_time": [END]})
    with pytest.raises(ValueError, match="other than 0/1"):
        check_label_frame(bad, "k.parquet")


def test_label_partitions_cover_every_landing_day() -> None:
    parts = label_partitions("m", datetime(2026, 3, 1, 22, tzinfo=UTC), datetime(2026, 3, 3, 1, tzinfo=UTC))
    assert [p.rsplit("=", 1)[1] for p in parts] == ["2026-03-01/", "2026-03-02/", "2026-03-03/"]


def test_pacing() -> None:
    assert paced_offsets(3, None).tolist() == [0, 0, 0]
    assert paced_offsets(3, 2.0).tolist() == [0.0, 0.5, 1.0]
