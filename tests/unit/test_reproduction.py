"""compare_reproduction: identical runs pass; a differing metric fails and the report names the differing layers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipelines.datasets.split import SplitRecord
from pipelines.lineage import CodeLineage, EnvironmentLineage, FeatureLineage
from pipelines.reproduction import TrainingFacts, comparable_metrics, compare_reproduction
from pipelines.training.config import default_training_config, merge_overrides

T0 = datetime(2013, 1, 1, tzinfo=UTC)


def facts(**changes) -> TrainingFacts:
    base = TrainingFacts(
        snapshot_id="a" * 64,
        split=SplitRecord(
            method="time_fractions",
            time_column="time_hour",
            fractions={"train": 0.7, "validation": 0.15, "test": 0.15},
            data_start=T0,
            data_end=datetime(2013, 1, 15, tzinfo=UTC),
            train_end=datetime(2013, 1, 10, tzinfo=UTC),
            validation_end=datetime(2013, 1, 12, tzinfo=UTC),
            rows={"train": 700, "validation": 150, "test": 150},
        ),
        features=FeatureLineage(version="1.0.0", numeric=["hour"], categorical=["carrier"]),
        config=default_training_config("hgb"),
        code=CodeLineage(commit="c" * 40, branch="main", dirty=False),
        environment=EnvironmentLineage(
            python="3.11.9",
            platform="Linux",
            packages={"scikit-learn": "1.7.2", "numpy": "2.3.0"},
            cpu_count=2,
            cuda_available=False,
            image_digest=None,
        ),
    )
    return base.model_copy(update=changes)


METRICS = {"test.roc_auc": 0.7012345678901234, "test.slice.origin.EWR.roc_auc": 0.69, "latency.single_row_p50_ms": 0.4}


def compare(original: TrainingFacts, reproduced: TrainingFacts, reproduced_metrics=None, tolerance=0.0):
    return compare_reproduction(
        model_name="flights-hgb",
        version="3",
        original_run_id="run-1",
        original=original,
        reproduced=reproduced,
        original_metrics=METRICS,
        reproduced_metrics=METRICS if reproduced_metrics is None else reproduced_metrics,
        tolerance=tolerance,
    )


def test_identical_facts_and_metrics_reproduce_and_timings_are_not_compared():
    report = compare(facts(), facts(), METRICS | {"latency.single_row_p50_ms": 9.9})
    assert report.identical
    assert report.differing_layers == []
    assert [metric.name for metric in report.metrics] == ["test.roc_auc", "test.slice.origin.EWR.roc_auc"]
    assert report.verdict == "reproduced: all 2 metrics identical"


def test_a_last_bit_difference_fails_at_zero_tolerance_and_passes_within_tolerance():
    nudged = METRICS | {"test.roc_auc": METRICS["test.roc_auc"] + 1e-15}
    assert not compare(facts(), facts(), nudged).identical
    assert compare(facts(), facts(), nudged, tolerance=1e-12).identical


def test_differing_metric_names_the_environment_layer_with_the_package_versions():
    newer = facts().environment.model_copy(update={"packages": {"scikit-learn": "1.8.0", "numpy": "2.3.0"}})
    report = compare(facts(), facts(environment=newer), METRICS | {"test.roc_auc": 0.71})
    assert not report.identical
    assert report.differing_layers == ["environment"]
    assert "scikit-learn 1.7.2 -> 1.8.0" in report.layers[-1].differences
    assert "1 of 2 metrics differ (test.roc_auc)" in report.verdict
    assert "environment: scikit-learn 1.7.2 -> 1.8.0" in report.verdict


def test_each_layer_is_detected_separately():
    other_config = merge_overrides(default_training_config("hgb"), {"max_iter": 10})
    cases = {
        "data": facts(snapshot_id="b" * 64),
        "features": facts(features=FeatureLineage(version="1.1.0", numeric=["hour"], categorical=["carrier"])),
        "config": facts(config=other_config),
        "code": facts(code=CodeLineage(commit="d" * 40, branch="main", dirty=False)),
    }
    for layer, reproduced in cases.items():
        assert compare(facts(), reproduced).differing_layers == [layer], layer
    config_layer = compare(facts(), cases["config"]).layers[2]
    assert config_layer.differences == ["config.params.max_iter: 300 -> 10"]


def test_split_change_is_a_data_difference():
    moved = facts().split.model_copy(update={"rows": {"train": 699, "validation": 151, "test": 150}})
    data = compare(facts(), facts(split=moved)).layers[0]
    assert not data.same
    assert "split.rows.train: 700 -> 699" in data.differences


def test_dirty_or_unknown_original_code_is_reported():
    dirty = facts(code=CodeLineage(commit="c" * 40, branch="main", dirty=True))
    unknown = facts(code=CodeLineage(commit=None, branch=None, dirty=None, problem="git is not installed"))
    assert "uncommitted changes" in compare(dirty, facts()).layers[3].differences[0]
    assert compare(unknown, facts()).layers[3].differences == ["the original commit is unknown (git is not installed)"]


def test_a_metric_missing_on_one_side_is_a_difference_and_unexplained_drift_blames_the_trainer():
    report = compare(facts(), facts(), {"test.roc_auc": METRICS["test.roc_auc"]})
    missing = next(metric for metric in report.metrics if metric.name == "test.slice.origin.EWR.roc_auc")
    assert missing.reproduced is None and not missing.same
    assert "the trainer is not deterministic" in report.verdict


def test_comparable_metrics_drops_timings_only():
    assert comparable_metrics(METRICS) == {key: value for key, value in METRICS.items() if "latency" not in key}


@pytest.mark.parametrize("tolerance", [-1.0, float("nan"), float("inf")])
def test_bad_tolerance_is_refused(tolerance):
    with pytest.raises(ValueError, match="tolerance must be a finite number"):
        compare(facts(), facts(), tolerance=tolerance)
