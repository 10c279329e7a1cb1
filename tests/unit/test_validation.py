"""Validation: the suite from the spec, each failure kind, and check-by-check parity of fast path and GX."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.datasets import DatasetSpec
from pipelines.datasets.demo import load_demo_flights
from pipelines.validation import (
    CheckResult,
    ValidationReport,
    build_checks,
    validate_frame,
    verdict_disagreements,
)
from pipelines.validation.checks import SAMPLE_SIZE, ColumnTypeCheck, FreshnessCheck, NullsCheck, RangeCheck

Q1_END = datetime(2013, 4, 1, tzinfo=UTC)
PARITY_ROWS = 20_000  # GX takes ~1 s per run at this size; the fast path is also checked on all of Q1


@pytest.fixture(scope="module")
def spec(flights_spec: DatasetSpec) -> DatasetSpec:
    """The shared flights spec (tests/unit/conftest.py) under the short name the tests here use."""
    return flights_spec


@pytest.fixture(scope="module")
def first_quarter() -> pd.DataFrame:
    flights = load_demo_flights()
    return flights[flights["time_hour"] < Q1_END].reset_index(drop=True)


@pytest.fixture(scope="module")
def real_sample(first_quarter: pd.DataFrame) -> pd.DataFrame:
    """Real Q1 rows, keeping the newest one so the freshness check sees the true interval end."""
    sample = first_quarter.sample(n=PARITY_ROWS - 1, random_state=5)
    return pd.concat([sample, first_quarter.tail(1)]).sort_values("time_hour", ignore_index=True)


def broken(frame: pd.DataFrame) -> pd.DataFrame:
    """Every defect kind at once: missing column, wrong type, null surge, out of range, unknown categories."""
    damaged = frame.drop(columns=["dest"])
    damaged["distance"] = damaged["distance"].astype(str)
    damaged["sched_dep_time"] = damaged["sched_dep_time"].astype("float64")
    damaged.loc[damaged.index[::2], "arr_delay"] = np.nan
    damaged.loc[damaged.index[::3], "dep_delay"] = np.nan
    damaged.loc[damaged.index[:30], "hour"] = 99
    damaged.loc[damaged.index[:5], "origin"] = "XXX"
    damaged.loc[damaged.index[5:9], "carrier"] = "ZZ"
    return damaged


def by_name(report: ValidationReport) -> dict[str, CheckResult]:
    return {check.name: check for check in report.checks}


def failed(report: ValidationReport) -> set[str]:
    return {check.name for check in report.checks if not check.success}


# --- the suite --------------------------------------------------------------------------------------------


def test_suite_covers_every_expectation_of_the_spec(spec: DatasetSpec) -> None:
    checks = build_checks(spec, interval_end=Q1_END)
    names = [check.name for check in checks]
    assert len(names) == len(set(names)) == 110
    assert {check.kind for check in checks} == {
        "row_count", "freshness", "column_exists", "column_type", "nulls", "range", "categories"
    }  # fmt: skip
    assert sum(check.kind == "column_exists" for check in checks) == len(spec.raw_columns)
    freshness = next(check for check in checks if isinstance(check, FreshnessCheck))
    assert freshness.newest_at_least == Q1_END - timedelta(hours=24)
    carrier_categories = next(check for check in checks if check.name == "carrier:categories")
    assert carrier_categories.severity == "warning"


def test_checks_become_gx_expectations_with_name_and_severity(spec: DatasetSpec) -> None:
    checks = {check.name: check for check in build_checks(spec, interval_end=Q1_END)}
    nulls = checks["dep_delay:nulls"]
    assert isinstance(nulls, NullsCheck)
    expectation = nulls.expectation().configuration
    assert expectation.type == "expect_column_values_to_not_be_null"
    assert expectation.kwargs["mostly"] == pytest.approx(0.9)
    assert expectation.meta == {"check": "dep_delay:nulls"}
    assert expectation.severity == "warning"
    assert checks["time_hour:type"].expectation().configuration.type == "expect_column_values_to_be_of_type"
    assert checks["origin:categories"].expectation().configuration.severity == "critical"


def test_interval_end_must_be_timezone_aware(spec: DatasetSpec) -> None:
    with pytest.raises(ValueError, match=r"interval_end must be timezone-aware"):
        build_checks(spec, interval_end=datetime(2013, 4, 1))


def test_unknown_engine_is_rejected(spec: DatasetSpec, real_sample: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"unknown validation engine 'spark'"):
        validate_frame(real_sample, spec, interval_end=Q1_END, engine="spark")  # type: ignore[arg-type]


# --- the fast path on real data and on each failure kind --------------------------------------------------


def test_real_first_quarter_passes(spec: DatasetSpec, first_quarter: pd.DataFrame) -> None:
    report = validate_frame(first_quarter, spec, interval_end=Q1_END, snapshot_id="ab" * 32)
    assert report.success, report.summary()
    assert not report.warnings
    checks = by_name(report)
    assert checks["table:row_count"].observed == len(first_quarter) == 80_687
    assert checks["arr_delay:nulls"].observed == pytest.approx(first_quarter["arr_delay"].isna().mean())
    assert checks["time_hour:freshness"].observed == "2013-03-31T23:00:00+00:00"
    assert checks["carrier:type"].observed == 0.0  # object column: share of non-str values
    assert checks["distance:type"].observed == "int64"
    assert report.snapshot_id == "ab" * 32


def test_missing_column_blocks(spec: DatasetSpec, real_sample: pd.DataFrame) -> None:
    report = validate_frame(real_sample.drop(columns=["dest"]), spec, interval_end=Q1_END)
    assert failed(report) == {"dest:exists", "dest:type", "dest:nulls"}
    assert by_name(report)["dest:nulls"].error == "column 'dest' is missing"
    assert not report.success


def test_wrong_type_blocks_and_range_cannot_be_computed(spec: DatasetSpec, real_sample: pd.DataFrame) -> None:
    frame = real_sample.assign(distance=real_sample["distance"].astype(str))
    report = validate_frame(frame, spec, interval_end=Q1_END)
    checks = by_name(report)
    assert failed(report) == {"distance:type", "distance:range"}
    assert checks["distance:type"].observed == 1.0
    assert checks["distance:type"].unexpected_sample[0] == str(real_sample["distance"].iloc[0])
    assert "cannot be compared to numbers" in (checks["distance:range"].error or "")


def test_null_surge_in_label_source_blocks(spec: DatasetSpec, real_sample: pd.DataFrame) -> None:
    frame = real_sample.copy()
    frame.loc[frame.index[::2], "arr_delay"] = np.nan
    report = validate_frame(frame, spec, interval_end=Q1_END)
    assert [check.name for check in report.blocking_failures] == ["arr_delay:nulls"]
    assert by_name(report)["arr_delay:nulls"].observed == pytest.approx(frame["arr_delay"].isna().mean())


def test_null_surge_in_a_warning_column_is_recorded_not_blocking(spec: DatasetSpec, real_sample: pd.DataFrame) -> None:
    frame = real_sample.copy()
    frame.loc[frame.index[::3], "dep_delay"] = np.nan
    report = validate_frame(frame, spec, interval_end=Q1_END)
    assert report.success
    assert [check.name for check in report.warnings] == ["dep_delay:nulls"]


def test_out_of_range_values_are_counted_and_sampled(spec: DatasetSpec, real_sample: pd.DataFrame) -> None:
    frame = real_sample.copy()
    frame.loc[frame.index[:30], "hour"] = 99
    report = validate_frame(frame, spec, interval_end=Q1_END)
    hour = by_name(report)["hour:range"]
    assert failed(report) == {"hour:range"}
    assert (hour.unexpected_count, hour.element_count, hour.missing_count) == (30, PARITY_ROWS, 0)
    assert hour.unexpected_sample == [99] * SAMPLE_SIZE


def test_mostly_tolerates_rare_outliers(spec: DatasetSpec, real_sample: pd.DataFrame) -> None:
    frame = real_sample.copy()
    frame.loc[frame.index[:10], "wind_speed"] = 1048.0  # 0.05% < 0.1% allowed by mostly=0.999
    assert by_name(validate_frame(frame, spec, interval_end=Q1_END))["wind_speed:range"].success
    frame.loc[frame.index[:40], "wind_speed"] = 1048.0  # 0.2%
    report = validate_frame(frame, spec, interval_end=Q1_END)
    assert [check.name for check in report.warnings] == ["wind_speed:range"]


def test_unknown_categories_block_or_warn_by_severity(spec: DatasetSpec, real_sample: pd.DataFrame) -> None:
    frame = real_sample.copy()
    frame.loc[frame.index[:5], "origin"] = "XXX"
    frame.loc[frame.index[5:9], "carrier"] = "ZZ"
    report = validate_frame(frame, spec, interval_end=Q1_END)
    assert [check.name for check in report.blocking_failures] == ["origin:categories"]
    assert [check.name for check in report.warnings] == ["carrier:categories"]
    assert by_name(report)["carrier:categories"].unexpected_sample == ["ZZ"] * 4


def test_empty_frame_fails_row_count_and_freshness_only(spec: DatasetSpec, real_sample: pd.DataFrame) -> None:
    report = validate_frame(real_sample.iloc[:0], spec, interval_end=Q1_END)
    assert failed(report) == {
        "table:row_count",
        "time_hour:freshness",
    }  # row-wise checks pass vacuously, as in GX


def test_stale_extraction_fails_freshness(spec: DatasetSpec, real_sample: pd.DataFrame) -> None:
    report = validate_frame(real_sample, spec, interval_end=Q1_END + timedelta(days=3))
    assert failed(report) == {"time_hour:freshness"}
    assert by_name(report)["time_hour:freshness"].expected["newest_at_least"] == "2013-04-03T00:00:00+00:00"


def test_report_json_round_trips(spec: DatasetSpec, real_sample: pd.DataFrame) -> None:
    report = validate_frame(broken(real_sample), spec, interval_end=Q1_END)
    assert ValidationReport.from_json(report.to_json()) == report
    assert "BLOCKED" in report.summary()


def test_verdict_disagreements_spots_a_flipped_check(spec: DatasetSpec, real_sample: pd.DataFrame) -> None:
    report = validate_frame(real_sample, spec, interval_end=Q1_END)
    flipped = [
        check.model_copy(update={"success": False}) if check.name == "hour:range" else check for check in report.checks
    ]
    assert verdict_disagreements(report, report) == []
    assert verdict_disagreements(report, report.model_copy(update={"checks": flipped})) == [
        "hour:range: fast=True fast=False"
    ]


# --- parity: the fast path reproduces Great Expectations check by check -----------------------------------


@pytest.mark.parametrize("variant", ["real", "broken", "empty"])
def test_fast_path_matches_gx_check_by_check(spec: DatasetSpec, real_sample: pd.DataFrame, variant: str) -> None:
    frame = {"real": real_sample, "broken": broken(real_sample), "empty": real_sample.iloc[:0]}[variant]
    fast = validate_frame(frame, spec, interval_end=Q1_END, engine="fast")
    reference = validate_frame(frame, spec, interval_end=Q1_END, engine="gx")
    assert verdict_disagreements(fast, reference) == []
    for mine, theirs in zip(fast.checks, reference.checks, strict=True):
        # Everything but the wording of errors: verdict, observed value, counts and the unexpected sample.
        assert mine.model_dump(exclude={"error"}) == theirs.model_dump(exclude={"error"}), mine.name
    if variant == "broken":
        assert len(reference.blocking_failures) == 9 and len(reference.warnings) == 2


def test_type_checks_match_gx_across_dtypes() -> None:
    """Every logical type against every dtype a column may arrive with, including object columns."""
    from pipelines.validation.gx_engine import evaluate_with_gx
    from pipelines.validation.run import evaluate_fast

    frame = pd.DataFrame(
        {
            "int64": np.array([1, 2, 3], dtype="int64"),
            "uint8": np.array([1, 2, 3], dtype="uint8"),
            "nullable_int": pd.array([1, None, 3], dtype="Int32"),
            "float32": np.array([1.0, np.nan, 3.0], dtype="float32"),
            "nullable_float": pd.array([1.0, None, 3.0], dtype="Float64"),
            "bool": [True, False, True],
            "nullable_bool": pd.array([True, None, False], dtype="boolean"),
            "object_str": ["a", None, "b"],
            "object_mixed": ["a", 1, 2.5],
            "object_timestamps": [
                pd.Timestamp("2013-01-01", tz="UTC"),
                None,
                pd.Timestamp("2013-01-02", tz="UTC"),
            ],
            "string": pd.array(["a", None, "b"], dtype="string"),
            "utc": pd.to_datetime(["2013-01-01", None, "2013-01-02"], utc=True),
            "naive": pd.to_datetime(["2013-01-01", None, "2013-01-02"]),
            "category": pd.Categorical(["a", "b", "a"]),
            "all_null_object": [None, None, None],
        }
    )
    checks = [
        ColumnTypeCheck(name=f"{column}:{logical}", severity="error", column=column, logical_type=logical)
        for column in frame.columns
        for logical in ("integer", "float", "number", "string", "boolean", "timestamp")
    ]
    fast = evaluate_fast(frame, checks)
    reference = evaluate_with_gx(frame, checks, suite_name="dtypes")
    for check in checks:
        assert check.to_result(fast[check.name]).model_dump(exclude={"error"}) == check.to_result(
            reference[check.name]
        ).model_dump(exclude={"error"}), check.name
    assert fast["int64:number"].success and fast["utc:timestamp"].success and fast["object_str:string"].success
    assert not fast["naive:timestamp"].success and not fast["object_mixed:string"].success


def test_range_on_exotic_dtypes_matches_gx() -> None:
    from pipelines.validation.gx_engine import evaluate_with_gx
    from pipelines.validation.run import evaluate_fast

    frame = pd.DataFrame(
        {
            "nullable_int": pd.array([1, None, 30], dtype="Int64"),
            "float32": np.array([1.0, np.nan, 30.0], dtype="float32"),
            "bool": [True, False, True],
            "object_numbers": [1.0, None, 30],
            "object_str": ["1", None, "30"],
            "utc": pd.to_datetime(["2013-01-01", None, "2013-01-02"], utc=True),
        }
    )
    checks = [
        RangeCheck(name=f"{column}:range", severity="error", column=column, min=0.0, max=10.0, mostly=0.5)
        for column in frame.columns
    ]
    fast, reference = evaluate_fast(frame, checks), evaluate_with_gx(frame, checks, suite_name="ranges")
    assert {name: e.success for name, e in fast.items()} == {name: e.success for name, e in reference.items()}
    assert fast["nullable_int:range"].success and not fast["object_str:range"].success


# --- Great Expectations housekeeping and Data Docs --------------------------------------------------------


def test_gx_is_silenced_and_writes_no_files(
    spec: DatasetSpec,
    real_sample: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO):
        validate_frame(real_sample.head(100), spec, interval_end=Q1_END, engine="gx")
    assert [r.getMessage() for r in caplog.records if r.name.startswith("great_expectations")] == []
    assert os.environ["GX_ANALYTICS_ENABLED"] == "false"
    assert list(tmp_path.iterdir()) == []


def test_data_docs_page_is_written_for_the_run(spec: DatasetSpec, real_sample: pd.DataFrame, tmp_path: Path) -> None:
    from pipelines.validation.data_docs import to_gx_validation_result, write_data_docs

    report = validate_frame(broken(real_sample), spec, interval_end=Q1_END, snapshot_id="cd" * 32)
    path = write_data_docs(report, spec, tmp_path / "docs")
    page = path.read_text(encoding="utf-8")
    assert path.name == "validation_flights_20130401T000000Z_fast.html"
    assert page.lstrip().lower().startswith("<!doctype html")
    assert "XXX" in page and "cd" * 32 in page and "Failed" in page
    gx_result = json.loads(json.dumps(to_gx_validation_result(report, spec).to_json_dict()))  # JSON-storable
    assert gx_result["statistics"]["unsuccessful_expectations"] == len(failed(report))
    origin = next(r for r in gx_result["results"] if r["expectation_config"]["meta"]["check"] == "origin:categories")
    assert origin["result"]["partial_unexpected_list"] == ["XXX"] * 5
