"""The training DAG's pure glue: Params resolution, S3 layout, MLflow flattening, source typing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest
import yaml

from pipelines.assembly import (
    TrainRequestError,
    conform_source_frame,
    failure_experiment,
    flatten_params,
    resolve_request,
    run_key,
    snapshot_keys,
    source_time_text,
)


def test_defaults_come_from_the_spec_and_the_checked_in_config():
    request = resolve_request({})
    assert request.spec.name == "flights"
    assert request.config.kind == "hgb"
    assert request.interval == request.spec.split.initial_interval
    assert request.owner == request.spec.owner


def test_blank_form_fields_mean_default_and_overrides_reach_the_config():
    request = resolve_request({"interval_start": " ", "interval_end": "", "owner": "", "trainer": "logreg"})
    assert request.interval == request.spec.split.initial_interval
    assert request.config.kind == "logreg"
    start, end = datetime(2013, 1, 1, tzinfo=UTC), datetime(2013, 1, 15, tzinfo=UTC)
    explicit = resolve_request({"interval_start": start.isoformat(), "interval_end": end.isoformat()})
    assert (explicit.interval.start, explicit.interval.end) == (start, end)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"trainer": "xgboost"}, r"invalid factory_train params: trainer: Input should be 'hgb', 'logreg' or 'mlp'"),
        ({"learning_rate": 0.1}, r"learning_rate: Extra inputs are not permitted"),
        ({"interval_start": "2013-01-01T00:00:00+00:00"}, r"give both bounds or neither"),
        (
            {"interval_start": "2013-02-01T00:00:00+00:00", "interval_end": "2013-01-01T00:00:00+00:00"},
            r"is not before interval_end",
        ),
        ({"interval_start": "2013-01-01T00:00:00", "interval_end": "2013-02-01T00:00:00"}, r"timezone"),
    ],
)
def test_bad_params_are_named(params, message):
    with pytest.raises(TrainRequestError, match=message):
        resolve_request(params)


def test_unknown_override_is_refused_by_the_training_config():
    with pytest.raises(ValueError, match="nonsense"):
        resolve_request({"overrides": {"nonsense": 1}})


def test_failures_with_broken_params_still_have_an_experiment():
    assert failure_experiment({}) == "factory/flights"
    assert failure_experiment({"trainer": "xgboost"}) != "factory/flights"


def test_s3_layout_is_content_addressed_and_run_keys_are_safe():
    keys = snapshot_keys("flights", "abc123")
    assert (keys.data, keys.manifest) == (
        "snapshots/flights/abc123/data.parquet",
        "snapshots/flights/abc123/manifest.json",
    )
    assert keys.validation_prefix("r1") == "snapshots/flights/abc123/validation/r1"
    assert run_key("manual__2026-11-23T23:03:29.703504+00:00") == "manual__2026-11-23T23_03_29.703504_00_00"
    with pytest.raises(ValueError, match="no usable characters"):
        run_key("::")


def test_source_time_text_is_utc_and_refuses_naive_bounds():
    moment = datetime(2013, 1, 1, 5, 0, tzinfo=timezone(timedelta(hours=5)))
    assert source_time_text(moment) == "2013-01-01T00:00:00Z"
    with pytest.raises(ValueError, match="no timezone"):
        source_time_text(datetime(2013, 1, 1))


def test_flatten_params_nests_with_dots_and_joins_lists():
    flat = flatten_params({"config": {"params": {"max_iter": 300}, "seeds": [1, 2]}, "owner": None})
    assert flat == {"config.params.max_iter": "300", "config.seeds": "1,2", "owner": ""}
    assert len(flatten_params({"long": "x" * 7000})["long"]) == 6000


def test_conform_source_frame_types_time_and_all_null_numeric_columns():
    spec = resolve_request({}).spec
    numeric = next(name for name, column in spec.expectations.columns.items() if column.type in {"float", "number"})
    frame = pd.DataFrame({spec.time_column: ["2013-01-01T05:00:00Z"], numeric: [None]})
    conformed = conform_source_frame(frame, spec)
    assert str(conformed[spec.time_column].dtype) == "datetime64[ns, UTC]"
    assert conformed[numeric].dtype == "float64"
    assert frame[numeric].dtype == object  # the input is not modified


def test_source_defaults_to_the_table_and_files_need_a_files_block(tmp_path):
    assert resolve_request({}).source == "table"
    assert resolve_request({"source": "files"}).source == "files"
    with pytest.raises(TrainRequestError, match=r"source: Input should be 'table' or 'files'"):
        resolve_request({"source": "kafka"})
    raw = yaml.safe_load(resolve_request({}).spec_path.read_text())
    del raw["source"]["files"]
    without_files = tmp_path / "no_files.yaml"
    without_files.write_text(yaml.safe_dump(raw))
    assert resolve_request({"dataset_spec": str(without_files)}).source == "table"
    with pytest.raises(
        TrainRequestError, match=r"source: 'files' asked for, but dataset spec 'flights' .* no source\.files"
    ):
        resolve_request({"dataset_spec": str(without_files), "source": "files"})


def test_conform_source_frame_gives_nanosecond_times_and_none_for_missing_strings():
    spec = resolve_request({}).spec
    frame = pd.DataFrame(
        {
            spec.time_column: pd.Series(pd.to_datetime(["2013-01-01T05:00:00Z"]).as_unit("us")),
            "carrier": [float("nan")],  # CSV's missing string, in an all-missing column: float64
            "dest": pd.Series(["JFK"], dtype=object),
        }
    )
    conformed = conform_source_frame(frame, spec)
    assert str(conformed[spec.time_column].dtype) == "datetime64[ns, UTC]"
    assert conformed["carrier"].dtype == object and conformed["carrier"].tolist() == [None]
    assert conformed["dest"].tolist() == ["JFK"]


def test_a_drift_triggered_run_trains_on_the_latest_window_of_the_initial_length():
    newest = datetime(2013, 12, 31, 23, 0, tzinfo=UTC)
    request = resolve_request({}, newest_row=newest)
    initial = request.spec.split.initial_interval
    assert request.interval.end == datetime(2013, 12, 31, 23, 0, 1, tzinfo=UTC)  # half-open: the newest row is in
    assert request.interval.end - request.interval.start == initial.end - initial.start
    # An interval given in the Params wins over the trigger: a human asked for exactly that.
    given = {"interval_start": "2013-02-01T00:00:00Z", "interval_end": "2013-03-01T00:00:00Z"}
    assert resolve_request(given, newest_row=newest).interval.end == datetime(2013, 3, 1, tzinfo=UTC)
    with pytest.raises(TrainRequestError, match="has no timezone"):
        resolve_request({}, newest_row=datetime(2013, 8, 1))
