"""The fast path's default per-feature verdicts equal Evidently 0.7.23 DataDriftPreset's, on the same data.

Not only the verdicts: the test Evidently picks and its statistic must match too, so agreement is not luck of
thresholds. Evidently is slow (seconds per run), hence small reference samples here and the full-size runs
marked slow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.features import FeatureSpec
from pipelines.monitoring import DriftPolicy, DriftReport, build_reference_profile, detect_drift
from pipelines.monitoring.demo_data import FLIGHT_DRIFT_FEATURES, load_flights_with_weather
from pipelines.monitoring.evidently_adapter import (
    comparable_columns,
    evidently_feature_verdicts,
    evidently_report,
    run_evidently_drift,
)
from pipelines.monitoring.profile import ColumnTypes

POLICY = DriftPolicy(min_window_rows=100)


def fast_report(reference: pd.DataFrame, current: pd.DataFrame, column_types: ColumnTypes) -> DriftReport:
    return detect_drift(build_reference_profile(reference, column_types, POLICY), current, POLICY)


def assert_same_verdicts(reference: pd.DataFrame, current: pd.DataFrame, column_types: ColumnTypes) -> DriftReport:
    report = fast_report(reference, current, column_types)
    evidently = evidently_feature_verdicts(run_evidently_drift(reference, current, column_types))
    assert sorted(evidently) == sorted(feature.name for feature in report.features)
    for feature in report.features:
        theirs = evidently[feature.name]
        assert (feature.name, feature.test, feature.drifted) == (theirs.column, theirs.test, theirs.drifted)
        assert feature.statistic == pytest.approx(theirs.statistic, rel=1e-9, abs=1e-12), feature.name
        assert feature.threshold == theirs.threshold
    return report


@pytest.fixture(scope="module")
def first_quarter() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reference, held-out) halves of January-March 2013."""
    flights = load_flights_with_weather()
    quarter = flights[flights["month"].isin([1, 2, 3])]
    reference = quarter.sample(frac=0.5, random_state=0)
    return reference, quarter.drop(reference.index)


@pytest.fixture(scope="module")
def summer() -> pd.DataFrame:
    flights = load_flights_with_weather()
    return flights[flights["month"].isin([7, 8])]


def synthetic(rng: np.random.Generator, rows: int, shift: float = 0.0) -> pd.DataFrame:
    """Columns that exercise every test Evidently can pick: continuous, 4-5 values, binary, 3-4 labels.

    `shift` moves the first three; the two binary columns never change, so both verdicts occur.
    """
    return pd.DataFrame(
        {
            "continuous": rng.normal(shift, 1.0, rows),
            "few_values": rng.integers(0, 4, rows) + (rng.random(rows) < shift),
            "labels": rng.choice(["a", "b", "c", "d"] if shift else ["a", "b", "c"], rows),
            "binary": (rng.random(rows) < 0.5).astype(float),
            "yes_no": rng.choice(["y", "n"], rows),
        }
    )


SYNTHETIC_TYPES = {
    "continuous": "numeric",
    "few_values": "numeric",
    "labels": "categorical",
    "binary": "numeric",
    "yes_no": "categorical",
}


@pytest.mark.parametrize(
    ("reference_rows", "expected_tests"),
    [
        (800, {"ks", "chisquare", "z"}),  # small reference: KS / chi-square / z-test
        (5000, {"wasserstein_normed", "jensenshannon"}),  # large: Wasserstein, JS for few values and labels
    ],
)
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # Evidently's chi-square on a new label
def test_every_default_test_agrees_on_synthetic_data(reference_rows, expected_tests) -> None:
    rng = np.random.default_rng(reference_rows)
    report = assert_same_verdicts(synthetic(rng, reference_rows), synthetic(rng, 400, shift=0.4), SYNTHETIC_TYPES)
    assert {feature.test for feature in report.features} == expected_tests
    assert report.drifted_features == ["continuous", "few_values", "labels"]  # both verdicts are compared


def test_agrees_on_same_season_flights(first_quarter) -> None:
    reference, held_out = first_quarter
    report = assert_same_verdicts(
        reference.sample(10_000, random_state=1), held_out.sample(3000, random_state=2), FLIGHT_DRIFT_FEATURES
    )
    assert report.drifted_features == []


def test_agrees_on_later_season_flights(first_quarter, summer) -> None:
    reference, _ = first_quarter
    report = assert_same_verdicts(
        reference.sample(10_000, random_state=3), summer.sample(3000, random_state=4), FLIGHT_DRIFT_FEATURES
    )
    assert {"temp", "dewp", "humid"} <= set(report.drifted_features)


def test_agrees_on_injected_drift(first_quarter) -> None:
    reference, held_out = first_quarter
    window = held_out.sample(3000, random_state=5)
    window = window.assign(temp=window["temp"] + 0.5 * window["temp"].std())
    window.loc[window.sample(frac=0.2, random_state=6).index, "carrier"] = "ZZ"
    window.loc[window.sample(frac=0.3, random_state=7).index, "visib"] = np.nan
    report = assert_same_verdicts(reference.sample(10_000, random_state=8), window, FLIGHT_DRIFT_FEATURES)
    assert report.drifted_features == ["temp", "carrier"]


@pytest.mark.slow
def test_agrees_on_full_reference_over_many_windows(first_quarter, summer) -> None:
    reference, held_out = first_quarter
    windows = [held_out.sample(4000, random_state=seed) for seed in range(5)]
    windows += [summer.sample(4000, random_state=seed) for seed in range(3)]
    for window in windows:
        assert_same_verdicts(reference, window, FLIGHT_DRIFT_FEATURES)


def test_human_report_writes_html_and_matches_the_fast_path(tmp_path, first_quarter, summer) -> None:
    reference, _ = first_quarter
    reference_sample = reference.sample(5000, random_state=9)
    current = summer.sample(2000, random_state=10).drop(columns=["wind_gust"])
    spec = FeatureSpec(numeric=["dep_delay", "temp", "wind_gust", "visib"], categorical=["carrier", "dest"])
    html, report_json = evidently_report(
        reference_sample, current, spec, html_path=tmp_path / "drift.html", sample_size=5000
    )
    assert html.exists() and html.stat().st_size > 10_000
    verdicts = evidently_feature_verdicts(report_json)
    assert "wind_gust" not in verdicts  # dropped from the window: the fast path reports it as a schema finding
    fast = fast_report(reference_sample, current, spec)
    assert {name: verdict.drifted for name, verdict in verdicts.items()} == {
        feature.name: feature.drifted for feature in fast.features
    }


def test_human_report_samples_large_frames(tmp_path, first_quarter) -> None:
    reference, held_out = first_quarter
    _, report_json = evidently_report(
        reference, held_out, {"temp": "numeric"}, html_path=tmp_path / "drift.html", sample_size=500
    )
    # 500 reference rows is "small data" for Evidently: the test it picks proves the sample was bounded
    assert evidently_feature_verdicts(report_json)["temp"].test == "ks"


def test_comparable_columns_leaves_out_what_evidently_cannot_test() -> None:
    reference = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"], "c": [1.0, 2.0], "d": ["p", "q"]})
    current = pd.DataFrame({"a": [np.nan, np.nan], "b": ["x", "x"], "c": ["1", "2"]})
    spec = FeatureSpec(numeric=["a", "c"], categorical=["b", "d"])
    assert comparable_columns(reference, current, spec) == FeatureSpec(categorical=["b"])


def test_verdicts_need_tests_in_the_report() -> None:
    with pytest.raises(ValueError, match="include_tests=True"):
        evidently_feature_verdicts({"metrics": [], "tests": []})
