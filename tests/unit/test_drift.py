"""Drift detection: statistics against scipy, policy loading, and detection quality on real flights data.

Reference = half of January-March 2013 (random), windows = the other half, so "no drift" windows are honest
held-out samples of the same season; injected drift is applied to such windows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipelines.features import FeatureSpec
from pipelines.monitoring import (
    DriftPolicy,
    DriftPolicyError,
    DriftReport,
    ReferenceProfile,
    Severity,
    as_feature_spec,
    build_reference_profile,
    detect_drift,
    load_drift_policy,
)
from pipelines.monitoring.demo_data import FLIGHT_DRIFT_FEATURES, load_flights_with_weather
from pipelines.monitoring.policy import VerdictTests
from pipelines.monitoring.samples import SortedCounts, sorted_finite, summarize_categorical
from pipelines.monitoring.statistics import (
    chisquare_pvalue,
    population_stability_index,
    two_proportion_z_pvalue,
    wasserstein_distance,
)

REPO_POLICY = Path(__file__).resolve().parents[2] / "pipelines" / "configs" / "policies" / "drift.yaml"
SCORE_INPUTS = ["dep_delay", "sched_dep_time", "distance", "temp", "wind_speed", "precip", "visib"]


# ---------------------------------------------------------------- statistics against the libraries


def _sample(seed: int, kind: str, size: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "continuous":
        return rng.normal(seed % 3 * 0.2, 1 + seed % 2 * 0.5, size)
    return rng.integers(seed % 4, 30 + seed % 4, size) * 1.0  # heavy ties, values only one side has


@pytest.mark.parametrize("kind", ["continuous", "ties"])
@pytest.mark.parametrize(
    ("reference_size", "current_size"),
    [(4000, 2500), (300, 20_000), (20_000, 37), (1, 5), (7, 1)],  # many reference steps per window slot, few
)
def test_wasserstein_matches_scipy(kind: str, reference_size: int, current_size: int) -> None:
    reference = _sample(reference_size, kind, reference_size)
    current = _sample(current_size + 1, kind, current_size)
    profiled = SortedCounts.from_sorted(np.sort(reference))
    ours = wasserstein_distance(profiled, np.sort(current))
    assert ours == pytest.approx(stats.wasserstein_distance(reference, current), rel=1e-10, abs=1e-12)


def test_sorted_finite_drops_nulls_and_infinities() -> None:
    finite, null_count = sorted_finite(pd.Series([3.0, np.nan, 1.0, np.inf, 3.0, -np.inf, None]))
    assert finite.tolist() == [1.0, 3.0, 3.0]
    assert null_count == 4
    summary = SortedCounts.from_sorted(finite)
    assert (summary.values.tolist(), summary.counts.tolist()) == ([1.0, 3.0], [1, 2])


def test_categorical_summary_counts_labels_and_nulls() -> None:
    summary, null_count = summarize_categorical(pd.Series(["b", None, "a", "b", np.nan, "b"]))
    assert summary.labels.tolist() == ["a", "b"]
    assert summary.counts.tolist() == [1, 3]
    assert null_count == 2


def test_integer_codes_keep_their_labels_when_nulls_make_them_float() -> None:
    as_int, _ = summarize_categorical(pd.Series([3, 1, 1]))
    as_float, null_count = summarize_categorical(pd.Series([3.0, 1.0, np.nan, 1.0, 2.5]))
    assert as_int.labels.tolist() == ["1", "3"]
    assert as_float.labels.tolist() == ["1", "2.5", "3"]
    assert null_count == 1


def test_psi_is_zero_for_equal_shares_and_matches_the_formula() -> None:
    assert population_stability_index(np.array([10.0, 30.0]), np.array([1.0, 3.0])) == pytest.approx(0.0)
    expected = (0.5 - 0.25) * np.log(0.5 / 0.25) + (0.5 - 0.75) * np.log(0.5 / 0.75)
    assert population_stability_index(np.array([25.0, 75.0]), np.array([5.0, 5.0])) == pytest.approx(expected)


def test_chisquare_and_z_edge_cases() -> None:
    # a category the reference never had: infinite statistic, p = 0 -> drift
    assert chisquare_pvalue(np.array([50.0, 50.0, 0.0]), np.array([10.0, 10.0, 5.0])) == 0.0
    # one value on both sides: nothing can differ
    assert two_proportion_z_pvalue(np.array([40.0]), np.array([7.0])) == 1.0


# ---------------------------------------------------------------- policy


def test_repository_policy_is_valid_and_keeps_evidently_defaults() -> None:
    assert load_drift_policy(REPO_POLICY) == DriftPolicy()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("thresholds:\n  wasserstein: 0.1\n", "thresholds.wasserstein"),
        ("psi:\n  warn: 0.3\n  alert: 0.2\n", "psi"),
        ("min_window_rows: plenty\n", "min_window_rows"),
        ("severity:\n  null_surge: page-everyone\n", "severity.null_surge"),
        ("tests:\n  numeric: anderson\n", "tests.numeric"),
    ],
)
def test_bad_policy_names_file_and_field(config_file: Callable[[str, str], Path], text: str, field: str) -> None:
    path = config_file("drift.yaml", text)
    with pytest.raises(DriftPolicyError, match=rf"drift\.yaml: invalid drift policy: {field}"):
        load_drift_policy(path)


def test_policy_that_is_not_a_mapping_or_missing_is_refused(config_file: Callable[[str, str], Path]) -> None:
    path = config_file("drift.yaml", "- just\n- a list\n")
    with pytest.raises(DriftPolicyError, match="must be a mapping"):
        load_drift_policy(path)
    with pytest.raises(DriftPolicyError, match="cannot read"):
        load_drift_policy(path.with_name("absent.yaml"))


# ---------------------------------------------------------------- real data fixtures


@pytest.fixture(scope="module")
def season() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(reference, held-out same season, July-August), all scored by a model fitted on the reference."""
    flights = load_flights_with_weather()
    first_quarter = flights[flights["month"].isin([1, 2, 3])]
    reference = first_quarter.sample(frac=0.5, random_state=0)
    held_out = first_quarter.drop(reference.index)
    labelled = reference[reference["arr_delay"].notna()]
    model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression())
    model.fit(labelled[SCORE_INPUTS], labelled["arr_delay"] > 15)

    def scored(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(score=model.predict_proba(frame[SCORE_INPUTS])[:, 1])

    summer = flights[flights["month"].isin([7, 8])]
    return scored(reference), scored(held_out), scored(summer)


@pytest.fixture(scope="module")
def policy() -> DriftPolicy:
    return load_drift_policy(REPO_POLICY)


@pytest.fixture(scope="module")
def profile(season, policy) -> ReferenceProfile:
    return build_reference_profile(season[0], FLIGHT_DRIFT_FEATURES, policy, prediction_column="score")


@pytest.fixture()
def window(season) -> pd.DataFrame:
    return season[1].sample(3000, random_state=11)


# ---------------------------------------------------------------- no false alarms


def test_same_season_windows_raise_no_alarm(season, profile, policy) -> None:
    rng = np.random.default_rng(7)
    held_out = season[1]
    for _ in range(25):
        size = int(rng.integers(2000, 5001))
        window = held_out.sample(size, random_state=int(rng.integers(2**31)))
        report = detect_drift(profile, window, policy)
        assert not report.dataset_drift
        assert report.verdict == "ok", report.summary
        assert len(report.features) == len(FLIGHT_DRIFT_FEATURES.columns)
        assert report.prediction is not None and not report.prediction.drifted


# ---------------------------------------------------------------- injected drift is found and named


def test_mean_shift_on_one_feature_is_named(window, profile, policy) -> None:
    shift = 0.5 * window["temp"].std()
    report = detect_drift(profile, window.assign(temp=window["temp"] + shift), policy)
    assert report.drifted_features == ["temp"]
    assert report.feature("temp").test == "wasserstein_normed"
    assert 0.4 < report.feature("temp").statistic < 0.6  # a pure shift moves W1 by the shift itself
    assert not report.dataset_drift
    assert {(finding.kind, finding.column) for finding in report.findings} == {
        ("feature_drift", "temp"),
        ("psi", "temp"),
    }
    assert report.feature("temp").psi > policy.psi.alert  # half a std moves enough mass across deciles
    assert report.verdict == "alert"
    assert DriftReport.model_validate_json(report.model_dump_json()) == report  # stored as JSON by the DAG


def test_null_surge_is_named_and_alerts(window, profile, policy) -> None:
    surged = window.copy()
    surged.loc[surged.sample(frac=0.3, random_state=1).index, "visib"] = np.nan
    report = detect_drift(profile, surged, policy)
    assert report.columns_with("null_surge") == ["visib"]
    assert report.feature("visib").current_null_share == pytest.approx(0.3, abs=0.01)
    assert report.verdict == "alert"


def test_new_category_is_detected(window, profile, policy) -> None:
    changed = window.copy()
    changed.loc[changed.sample(frac=0.2, random_state=2).index, "carrier"] = "ZZ"
    report = detect_drift(profile, changed, policy)
    carrier = report.feature("carrier")
    assert carrier.drifted and carrier.test == "jensenshannon"
    assert carrier.new_categories == ["ZZ"]
    assert report.drifted_features == ["carrier"]


def test_dropped_column_is_a_schema_alert(window, profile, policy) -> None:
    report = detect_drift(profile, window.drop(columns=["wind_speed"]), policy)
    assert [(f.column, f.kind) for f in report.schema_findings] == [("wind_speed", "missing_column")]
    assert "wind_speed" not in [feature.name for feature in report.features]
    assert report.columns_with("missing_column") == ["wind_speed"]
    assert report.verdict == "alert"


def test_dtype_change_is_a_schema_alert(window, profile, policy) -> None:
    report = detect_drift(profile, window.assign(distance=window["distance"].astype(str)), policy)
    assert [(f.column, f.kind, f.expected, f.found) for f in report.schema_findings] == [
        ("distance", "dtype_change", "numeric", "string")
    ]
    assert "distance" not in [feature.name for feature in report.features]
    assert report.verdict == "alert"


def test_categorical_dtype_and_int_to_float_are_not_schema_changes(window, profile, policy) -> None:
    report = detect_drift(
        profile, window.assign(origin=window["origin"].astype("category"), hour=window["hour"] * 1.0), policy
    )
    assert report.schema_findings == []
    assert report.verdict == "ok"


def test_new_column_warns(window, profile, policy) -> None:
    report = detect_drift(profile, window.assign(request_id=np.arange(len(window))), policy)
    assert [(f.column, f.kind) for f in report.schema_findings] == [("request_id", "new_column")]
    assert report.verdict == "warn"


def test_prediction_drift_is_caught(window, profile, policy) -> None:
    report = detect_drift(profile, window.assign(score=np.clip(window["score"] + 0.15, 0, 1)), policy)
    assert report.prediction is not None
    assert report.prediction.test == "psi" and report.prediction.drifted
    assert report.columns_with("prediction_drift") == ["score"]
    assert report.drifted_features == []  # the inputs did not move


def test_later_season_is_dataset_drift(season, profile, policy) -> None:
    report = detect_drift(profile, season[2].sample(4000, random_state=3), policy)
    assert report.dataset_drift and report.verdict == "alert"
    assert {"temp", "dewp", "dep_delay"} <= set(report.drifted_features)
    assert report.drifted_share >= policy.dataset.drift_share


def test_column_with_only_nulls_is_reported_not_tested(window, profile, policy) -> None:
    report = detect_drift(profile, window.assign(pressure=np.nan), policy)
    pressure = report.feature("pressure")
    assert pressure.test is None and not pressure.drifted
    assert pressure.current_null_share == 1.0 and pressure.null_surge


# ---------------------------------------------------------------- too little data, bad inputs


@pytest.mark.parametrize("rows", [0, 999])
def test_small_or_empty_window_is_insufficient_data_not_an_alarm(season, profile, policy, rows) -> None:
    report = detect_drift(profile, season[1].head(rows), policy)
    assert report.verdict == "insufficient_data"
    assert report.findings == [] and not report.dataset_drift
    assert f"has {rows} rows" in report.summary


def test_unknown_column_type_is_refused(season, policy) -> None:
    with pytest.raises(ValueError, match=r"unknown column type: 'tailnum' has type 'text'"):
        build_reference_profile(season[0], {"temp": "numeric", "tailnum": "text"}, policy)


def test_reference_problems_are_refused(season, policy) -> None:
    reference = season[0]
    with pytest.raises(ValueError, match=r"missing from the reference frame: \['altitude'\]"):
        build_reference_profile(reference, FeatureSpec(numeric=["altitude"]), policy)
    with pytest.raises(ValueError, match="'carrier' is declared numeric but its reference dtype is object"):
        build_reference_profile(reference, FeatureSpec(numeric=["carrier"]), policy)
    with pytest.raises(ValueError, match="no rows"):
        build_reference_profile(reference.head(0), FLIGHT_DRIFT_FEATURES, policy)
    with pytest.raises(ValueError, match="'temp' has no finite values"):
        build_reference_profile(reference.assign(temp=np.nan), FeatureSpec(numeric=["temp"]), policy)


def test_mapping_of_types_equals_feature_spec() -> None:
    spec = as_feature_spec({"a": "numeric", "b": "categorical"})
    assert spec == FeatureSpec(numeric=["a"], categorical=["b"])


# ---------------------------------------------------------------- profile persistence and policy choices


def test_saved_profile_gives_the_same_report(tmp_path, window, profile, policy) -> None:
    loaded = ReferenceProfile.load(profile.save(tmp_path / "reference.npz"))
    shifted = window.assign(dep_delay=window["dep_delay"] + 20)
    assert detect_drift(loaded, shifted, policy) == detect_drift(profile, shifted, policy)


def test_unreadable_profile_is_refused(tmp_path) -> None:
    path = tmp_path / "reference.npz"
    path.write_bytes(b"not a profile")
    with pytest.raises(ValueError, match="not a reference profile"):
        ReferenceProfile.load(path)


def test_policy_can_choose_ks_and_psi(season, window, policy) -> None:
    chosen = policy.model_copy(update={"tests": VerdictTests(numeric="ks", categorical="psi")})
    profile = build_reference_profile(season[0], FLIGHT_DRIFT_FEATURES, chosen)
    report = detect_drift(profile, window.assign(temp=window["temp"] + 5), chosen)
    assert {feature.test for feature in report.features} == {"ks", "psi"}
    assert report.feature("temp").drifted and report.feature("temp").statistic < 0.05
    assert report.feature("carrier").threshold == chosen.psi.alert


def test_policy_choice_overrides_evidentlys_size_rule() -> None:
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"x": rng.normal(size=600), "label": rng.choice(["a", "b", "c"], 600)})
    chosen = DriftPolicy(min_window_rows=10, tests=VerdictTests(numeric="wasserstein", categorical="jensenshannon"))
    for policy, expected in [
        (DriftPolicy(min_window_rows=10), {"ks", "chisquare"}),
        (chosen, {"wasserstein_normed", "jensenshannon"}),
    ]:
        profile = build_reference_profile(frame, {"x": "numeric", "label": "categorical"}, policy)
        report = detect_drift(profile, frame.head(200), policy)
        assert {feature.test for feature in report.features} == expected
        assert report.drifted_features == []


def test_severity_policy_can_silence_a_finding_kind(window, profile, policy) -> None:
    quiet = policy.model_copy(update={"severity": policy.severity.model_copy(update={"new_column": Severity.OK})})
    report = detect_drift(profile, window.assign(request_id=1), quiet)
    assert report.columns_with("new_column") == ["request_id"]
    assert report.verdict == "ok"
