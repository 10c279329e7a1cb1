"""Dataset spec loading, label derivation, time split and the demo loader, on tiny frames and real flights."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.datasets import DatasetSpec, DatasetSpecError, apply_target, load_dataset_spec, time_split
from pipelines.datasets.demo import load_demo_flights

FLIGHTS_YAML = Path(__file__).resolve().parents[2] / "pipelines" / "configs" / "datasets" / "flights.yaml"
LEAKY_COLUMNS = {"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"}


@pytest.fixture(scope="module")
def flights_spec() -> DatasetSpec:
    return load_dataset_spec(FLIGHTS_YAML)


@pytest.fixture(scope="module")
def flights_raw() -> dict[str, Any]:
    return yaml.safe_load(FLIGHTS_YAML.read_text())


@pytest.fixture(scope="module")
def demo_flights() -> pd.DataFrame:
    return load_demo_flights()


@pytest.fixture(scope="module")
def first_quarter(demo_flights: pd.DataFrame, flights_spec: DatasetSpec) -> pd.DataFrame:
    window = flights_spec.split.initial_interval
    assert window is not None
    times = demo_flights["time_hour"]
    return demo_flights[(times >= window.start) & (times < window.end)].reset_index(drop=True)


def write_spec(tmp_path: Path, raw: dict[str, Any], name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def mutated(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of `raw` with the field at `dotted` (a.b.c) set to `value`."""
    changed = copy.deepcopy(raw)
    *parents, leaf = dotted.split(".")
    node = changed
    for key in parents:
        node = node[key]
    node[leaf] = value
    return changed


def tiny_spec(tmp_path: Path, flights_raw: dict[str, Any], split: dict[str, Any]) -> DatasetSpec:
    """The flights spec with another split rule (the split needs only the time column)."""
    return load_dataset_spec(write_spec(tmp_path, mutated(flights_raw, "split", split)))


# --- the shipped flights spec -----------------------------------------------------------------------------


def test_flights_spec_loads_with_the_documented_choices(flights_spec: DatasetSpec) -> None:
    assert flights_spec.name == "flights"
    assert flights_spec.target.model_dump() == {
        "name": "delayed",
        "source_column": "arr_delay",
        "operator": ">",
        "threshold": 15.0,
    }
    assert flights_spec.slices == ["carrier", "origin"]
    assert flights_spec.time_column == "time_hour"
    assert flights_spec.split.method == "time_fractions"
    assert len(flights_spec.raw_columns) == 28
    assert len(flights_spec.features.version) == 12


def test_flights_features_exclude_everything_known_only_after_departure(flights_spec: DatasetSpec) -> None:
    assert not LEAKY_COLUMNS & set(flights_spec.features.columns)
    assert {"carrier", "origin", "dest"} <= set(flights_spec.features.categorical)


def test_flights_raw_schema_matches_the_demo_frame(flights_spec: DatasetSpec, demo_flights: pd.DataFrame) -> None:
    assert list(demo_flights.columns) == flights_spec.raw_columns


def test_flights_spec_names_its_file_drop(flights_spec: DatasetSpec) -> None:
    files = flights_spec.source.files
    assert files is not None
    assert (files.uri_prefix, files.format) == ("s3://factory-data/raw/flights/", "parquet")
    assert (files.bucket, files.key_prefix, files.extension) == ("factory-data", "raw/flights/", ".parquet")


def test_files_block_is_optional_and_a_bucket_root_is_a_prefix(tmp_path: Path, flights_raw: dict[str, Any]) -> None:
    without = copy.deepcopy(flights_raw)
    del without["source"]["files"]
    assert load_dataset_spec(write_spec(tmp_path, without, "no_files.yaml")).source.files is None
    root = mutated(flights_raw, "source.files", {"uri_prefix": "s3://drops/", "format": "csv"})
    files = load_dataset_spec(write_spec(tmp_path, root, "root.yaml")).source.files
    assert files is not None and (files.bucket, files.key_prefix, files.extension) == ("drops", "", ".csv")


# --- malformed specs: errors name the file and the field --------------------------------------------------


@pytest.mark.parametrize(
    ("dotted", "value", "message"),
    [
        ("sourse", {"table": "x"}, r"sourse: Extra inputs are not permitted"),
        ("target.threshhold", 3, r"target\.threshhold: Extra inputs are not permitted"),
        ("target.operator", "=>", r"target\.operator: Input should be '>', '>=', '<', '<=' or '=='"),
        ("slices", ["carrier", "runway"], r"slices: \['runway'\] are not raw or feature columns"),
        ("features.numeric", ["distance", "arr_delay"], r"features: \['arr_delay'\] are the label source"),
        ("features.categorical", ["carrier", "gate"], r"features: \['gate'\] are not raw columns"),
        ("features.numeric", ["distance", "tailnum"], r"features\.numeric: \['tailnum'\] are not numeric"),
        ("source.time_column", "year", r"source\.time_column: 'year' must be a raw column of type timestamp"),
        ("target.source_column", "carrier", r"target\.source_column: 'carrier' must be a numeric raw column"),
        ("split.train", 0.9, r"train \+ validation \+ test must be 1, got 1\.2"),
        ("split.method", "random", r"split: Input tag 'random' found using 'method' does not match"),
        ("source.s3_uri_pattern", "s3://b/x/", r"source\.s3_uri_pattern: Extra inputs are not permitted"),
        ("source.files.format", "xlsx", r"source\.files\.format: Input should be 'parquet' or 'csv'"),
        ("source.files.uri_prefix", "s3://factory-data/raw", r"source\.files\.uri_prefix: .*is not an S3 folder URI"),
        ("source.files.uri_prefix", "/data/raw/flights/", r"source\.files\.uri_prefix: .*is not an S3 folder URI"),
        ("source.files.uri_prefix", "s3://Factory_Data/raw/", r"source\.files\.uri_prefix: .*is not an S3 folder URI"),
        ("source.files.uri_prefix", "s3://factory-data//raw/", r"source\.files\.uri_prefix: .*is not an S3 folder URI"),
        ("source.files", {"uri_prefix": "s3://factory-data/raw/"}, r"source\.files\.format: Field required"),
        ("expectations.columns.distance.categories", {"values": ["a"]}, r"categories need a string column"),
        (
            "expectations.columns.hour.range",
            {"min": 30, "max": 3},
            r"range min 30\.0 is greater than max 3\.0",
        ),
        ("business_metric.expression", "delayed * 2", r"give exactly one of column or expression"),
        ("business_metric", {"name": "m", "expression": "delayed >"}, r"expression 'delayed >' is not valid"),
        (
            "business_metric",
            {"name": "m", "expression": "gate == 3"},
            r"business_metric: \['gate'\] are neither",
        ),
    ],
)
def test_malformed_spec_names_file_and_field(
    tmp_path: Path, flights_raw: dict[str, Any], dotted: str, value: Any, message: str
) -> None:
    path = write_spec(tmp_path, mutated(flights_raw, dotted, value), name="broken_flights.yaml")
    with pytest.raises(DatasetSpecError, match=message) as caught:
        load_dataset_spec(path)
    assert str(path) in str(caught.value)


def test_invalid_yaml_syntax_is_reported_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: flights\nsource: [unclosed\n")
    with pytest.raises(DatasetSpecError, match=r"bad\.yaml: not valid YAML"):
        load_dataset_spec(path)


def test_a_spec_that_is_not_a_mapping_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- name: flights\n")
    with pytest.raises(DatasetSpecError, match=r"list\.yaml: expected a mapping at the top level, got list"):
        load_dataset_spec(path)


def test_every_problem_is_listed_not_just_the_first(tmp_path: Path, flights_raw: dict[str, Any]) -> None:
    raw = mutated(mutated(flights_raw, "owner", ""), "target.operator", "!=")
    with pytest.raises(DatasetSpecError, match=r"2 problem\(s\)") as caught:
        load_dataset_spec(write_spec(tmp_path, raw))
    assert "owner:" in str(caught.value)
    assert "target.operator:" in str(caught.value)


# --- label derivation -------------------------------------------------------------------------------------


def test_apply_target_derives_label_and_reports_dropped_rows(flights_spec: DatasetSpec) -> None:
    frame = pd.DataFrame({"arr_delay": [20.0, 15.0, np.nan, -3.0, 16.0], "carrier": list("ABCDE")})
    labelled, report = apply_target(frame, flights_spec)
    assert labelled["delayed"].tolist() == [1, 0, 0, 1]
    assert labelled["carrier"].tolist() == ["A", "B", "D", "E"]
    assert labelled["delayed"].dtype == np.int8
    assert (report.rows_in, report.rows_dropped_null_source, report.rows_out) == (5, 1, 4)
    assert report.positive_rate == pytest.approx(0.5)
    assert report.rule == "arr_delay > 15"


def test_apply_target_on_real_flights(flights_spec: DatasetSpec, first_quarter: pd.DataFrame) -> None:
    labelled, report = apply_target(first_quarter, flights_spec)
    assert report.rows_dropped_null_source == int(first_quarter["arr_delay"].isna().sum()) > 0
    assert report.rows_out == len(labelled) == len(first_quarter) - report.rows_dropped_null_source
    assert labelled["delayed"].sum() == int((first_quarter["arr_delay"] > 15).sum())
    assert 0.15 < report.positive_rate < 0.35  # about 23% of Q1 2013 arrivals were late
    assert flights_spec.business_metric.evaluate(labelled) == pytest.approx(report.positive_rate)


def test_apply_target_without_the_source_column_fails_clearly(flights_spec: DatasetSpec) -> None:
    with pytest.raises(KeyError, match=r"target source column 'arr_delay' is missing"):
        apply_target(pd.DataFrame({"dep_delay": [1.0]}), flights_spec)


def test_apply_target_rejects_a_non_numeric_source(flights_spec: DatasetSpec) -> None:
    with pytest.raises(TypeError, match=r"'arr_delay' must be numeric, got object"):
        apply_target(pd.DataFrame({"arr_delay": ["late", "early"]}), flights_spec)


def test_business_metric_expression_is_evaluated(tmp_path: Path, flights_raw: dict[str, Any]) -> None:
    raw = mutated(flights_raw, "business_metric", {"name": "late_share", "expression": "arr_delay > 60"})
    spec = load_dataset_spec(write_spec(tmp_path, raw))
    frame = pd.DataFrame({"arr_delay": [0.0, 61.0, 120.0, 5.0]})
    assert spec.business_metric.evaluate(frame) == pytest.approx(0.5)
    with pytest.raises(KeyError, match=r"needs columns \['arr_delay'\]"):
        spec.business_metric.evaluate(pd.DataFrame({"other": [1]}))


# --- time split -------------------------------------------------------------------------------------------


def hourly_frame(hours: int) -> pd.DataFrame:
    times = pd.date_range("2013-01-01", periods=hours, freq="h", tz="UTC")
    return pd.DataFrame({"time_hour": times, "value": np.arange(hours)})


def test_time_fractions_cut_the_time_span(tmp_path: Path, flights_raw: dict[str, Any]) -> None:
    split = {"method": "time_fractions", "train": 0.6, "validation": 0.2, "test": 0.2}
    spec = tiny_spec(tmp_path, flights_raw, split)
    parts = time_split(hourly_frame(11), spec)  # span 10 h: cuts at +6 h and +8 h
    assert parts.train["value"].tolist() == [0, 1, 2, 3, 4, 5]
    assert parts.validation["value"].tolist() == [6, 7]
    assert parts.test["value"].tolist() == [8, 9, 10]
    assert parts.record.rows == {"train": 6, "validation": 2, "test": 3}
    assert parts.record.train_end == pd.Timestamp("2013-01-01T06:00Z")
    assert parts.record.fractions == {"train": 0.6, "validation": 0.2, "test": 0.2}


def test_time_boundaries_use_fixed_cut_points(tmp_path: Path, flights_raw: dict[str, Any]) -> None:
    split = {
        "method": "time_boundaries",
        "train_end": "2013-01-01T03:00:00Z",
        "validation_end": "2013-01-01T05:00:00Z",
    }
    spec = tiny_spec(tmp_path, flights_raw, split)
    parts = time_split(hourly_frame(8), spec)
    assert parts.record.rows == {"train": 3, "validation": 2, "test": 3}
    assert parts.record.fractions is None
    assert parts.record.method == "time_boundaries"


def test_time_split_refuses_to_leave_a_part_empty(tmp_path: Path, flights_raw: dict[str, Any]) -> None:
    split = {
        "method": "time_boundaries",
        "train_end": "2014-01-01T00:00:00Z",
        "validation_end": "2014-02-01T00:00:00Z",
    }
    spec = tiny_spec(tmp_path, flights_raw, split)
    with pytest.raises(ValueError, match=r"leaves \['validation', 'test'\] empty"):
        time_split(hourly_frame(8), spec)


@pytest.mark.parametrize(
    ("frame", "error", "message"),
    [
        (pd.DataFrame({"value": [1]}), KeyError, r"time column 'time_hour' is missing"),
        (pd.DataFrame({"time_hour": pd.date_range("2013-01-01", periods=3)}), TypeError, r"timezone-aware"),
        (hourly_frame(0), ValueError, r"cannot split an empty frame"),
    ],
)
def test_time_split_rejects_unusable_time_columns(
    flights_spec: DatasetSpec, frame: pd.DataFrame, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        time_split(frame, flights_spec)


def test_time_split_of_real_first_quarter_is_ordered_and_complete(
    flights_spec: DatasetSpec, first_quarter: pd.DataFrame
) -> None:
    labelled, _ = apply_target(first_quarter, flights_spec)
    parts = time_split(labelled, flights_spec)
    assert parts.train["time_hour"].max() < parts.validation["time_hour"].min()
    assert parts.validation["time_hour"].max() < parts.test["time_hour"].min()
    assert sum(parts.record.rows.values()) == len(labelled)
    assert parts.record.data_start == labelled["time_hour"].min()
    assert 0.6 < parts.record.rows["train"] / len(labelled) < 0.8  # 70% of the time span, not exactly of rows
    assert parts.record.train_end.month == 3 and parts.record.validation_end.month == 3


# --- demo loader ------------------------------------------------------------------------------------------


def test_demo_flights_are_typed_for_the_operational_table(demo_flights: pd.DataFrame) -> None:
    assert demo_flights.shape == (336_776, 28)
    assert str(demo_flights["time_hour"].dtype) == "datetime64[ns, UTC]"
    assert demo_flights["time_hour"].min() == pd.Timestamp("2013-01-01T10:00Z")
    assert demo_flights["distance"].dtype == np.int64
    assert demo_flights["arr_delay"].dtype == np.float64
    assert demo_flights["carrier"].map(type).eq(str).all()


def test_demo_weather_join_matches_origin_and_hour(demo_flights: pd.DataFrame) -> None:
    assert demo_flights["temp"].notna().mean() > 0.99  # a few departure hours have no weather observation
    first = demo_flights.iloc[0]
    assert (first["origin"], first["time_hour"], first["temp"]) == (
        "EWR",
        pd.Timestamp("2013-01-01T10:00Z"),
        39.02,
    )
