"""Feedback ingestion logic: the join by request id, online metrics per version and slice, drift naming."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from pipelines.evaluation.metrics import compute_metrics, roc_auc
from pipelines.monitoring.alerts import AlertType, load_alert_policy
from pipelines.monitoring.feedback import (
    DriftWindow,
    FeedbackPolicyError,
    build_report,
    business_on_labels,
    count_new_labelled,
    data_signal,
    feedback_alerts,
    join_labels,
    load_feedback_policy,
    training_scores,
)

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
WINDOW = (T0, T0 + timedelta(days=1))


def log(ids: list[str], probabilities: list[float], version: int = 3, **extra: list) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame(
        {"request_id": ids, "row": [0] * n, "timestamp": [T0 + timedelta(seconds=i) for i in range(n)],
         "version": [version] * n, "probability": probabilities, **extra}
    )  # fmt: skip


def landed(ids: list[str], labels: list[int], hours: float = 1) -> pd.DataFrame:
    return pd.DataFrame(
        {"request_id": ids, "label": labels, "event_time": [datetime(2013, 7, 1, tzinfo=UTC)] * len(ids),
         "label_time": [T0 + timedelta(hours=hours)] * len(ids)}
    )  # fmt: skip


def test_join_by_request_id_counts_unknown_repeated_and_conflicting_ids() -> None:
    predictions = log(["a", "b", "c", "c"], [0.1, 0.7, 0.4, 0.9])  # "c" logged twice: a client retry
    labels = pd.concat([landed(["a", "b", "zz"], [0, 1, 1]), landed(["b"], [1], hours=2), landed(["a"], [1], hours=3)])
    result = join_labels(predictions, labels)
    joined = result.joined.set_index("request_id")
    assert sorted(joined.index) == ["a", "b"]  # "c" has no label yet, "zz" was never logged
    assert joined.loc["a", "label"] == 1  # the latest landing wins a conflict
    c = result.counts
    assert (c.labels, c.predictions, c.joined, c.unmatched_labels) == (5, 4, 2, 1)
    assert (c.repeated_labels, c.conflicting_labels, c.repeated_predictions) == (2, 1, 1)


def test_a_retried_request_keeps_its_first_answer() -> None:
    predictions = log(["c", "c"], [0.4, 0.9])
    assert join_labels(predictions, landed(["c"], [1])).joined["probability"].tolist() == [0.4]


def test_join_with_an_empty_log_reports_every_label_unmatched() -> None:
    result = join_labels(pd.DataFrame(), landed(["a", "b"], [0, 1]))
    assert result.counts.joined == 0 and result.counts.unmatched_labels == 2


def test_join_names_missing_columns() -> None:
    with pytest.raises(KeyError, match=r"labels lack columns \['label'\]"):
        join_labels(log(["a"], [0.5]), landed(["a"], [1]).drop(columns=["label"]))


def run_metrics_of(y: np.ndarray, p: np.ndarray, slices: dict[str, np.ndarray]) -> dict[str, float]:
    """Metrics as a training run logs them (pipelines.assembly.evaluation_metrics) for these test rows."""
    metrics = {f"test.{k}": float(v) for k, v in compute_metrics(y, p).model_dump(exclude={"undefined"}).items()
               if isinstance(v, int | float) and v is not None}  # fmt: skip
    for column, values in slices.items():
        for value in np.unique(values):
            rows = values == value
            found = compute_metrics(y[rows], p[rows]).model_dump(exclude={"undefined"})
            metrics |= {f"test.slice.{column}.{value}.{k}": float(v) for k, v in found.items()
                        if isinstance(v, int | float) and v is not None}  # fmt: skip
    return metrics


@pytest.fixture(scope="module")
def world() -> dict:
    """A calibrated model at training time; online: the same model on unchanged, concept-shifted and noisy rows."""
    rng = np.random.default_rng(7)
    n = 4000
    x = rng.normal(size=n)
    carrier = rng.choice(["UA", "B6"], size=n)
    p = 1 / (1 + np.exp(-(x - 1.2)))
    y_train = (rng.random(n) < p).astype(int)
    y_same = (rng.random(n) < p).astype(int)
    p_concept = 1 / (1 + np.exp(-(x - 0.2)))  # the world now delays more flights at the same x
    y_concept = (rng.random(n) < p_concept).astype(int)
    y_noise = np.where(carrier == "UA", rng.integers(0, 2, n), (rng.random(n) < p).astype(int))  # UA broke
    return {"p": p, "carrier": carrier, "train": run_metrics_of(y_train, p, {"carrier": carrier}),
            "same": y_same, "concept": y_concept, "noise": y_noise}  # fmt: skip


def report_for(world: dict, outcome: str, drift: list[DriftWindow] | None = None, min_rows: int | None = None):
    policy = load_feedback_policy()
    if min_rows is not None:
        policy = policy.model_copy(update={"min_labelled_rows": min_rows})
    ids = [f"r{i}" for i in range(len(world["p"]))]
    join = join_labels(log(ids, world["p"].tolist(), carrier=world["carrier"].tolist()), landed(ids, world[outcome]))
    return build_report(
        dataset="flights", model_name="flights-hgb", window=WINDOW, join=join, run_metrics={"3": world["train"]},
        slices=["carrier", "origin"], drift_windows=drift or [], policy=policy,
    )  # fmt: skip


def test_online_metrics_match_the_evaluation_metrics_per_version_and_slice(world) -> None:
    report = report_for(world, "same")
    (version,) = report.versions
    assert version.version == "3" and version.status == "judged" and version.rows == 4000
    assert version.online.roc_auc == pytest.approx(roc_auc(world["same"], world["p"]))
    assert version.online.positive_rate == pytest.approx(world["same"].mean())
    assert version.training.n == 4000 and version.training.roc_auc == pytest.approx(world["train"]["test.roc_auc"])
    ua = next(s for s in version.slices if s.column == "carrier" and s.value == "UA")
    rows = world["carrier"] == "UA"
    assert ua.online.roc_auc == pytest.approx(roc_auc(world["same"][rows], world["p"][rows]))
    assert ua.training is not None and ua.judged
    assert {s.column for s in version.slices} == {"carrier"}  # origin is not logged here: skipped, not a crash


def test_same_world_names_no_drift(world) -> None:
    report = report_for(world, "same", [DriftWindow(interval_start=T0, interval_end=T0, verdict="ok")])
    assert {f: s.status for f, s in report.signals.items()} == {"data": "ok", "concept": "ok", "model": "ok"}
    assert report.findings == [] and report.verdict == "ok"


def test_changed_relation_with_stable_inputs_is_concept_drift(world) -> None:
    report = report_for(world, "concept", [DriftWindow(interval_start=T0, interval_end=T0, verdict="ok")])
    concept = report.signals["concept"]
    assert concept.status == "alert" and concept.versions == ["3"]
    assert "while the inputs were stable" in concept.summary
    assert report.signals["data"].status == "ok"


def test_a_broken_slice_is_model_drift_named_by_slice(world) -> None:
    report = report_for(world, "noise")
    model = report.signals["model"]
    assert model.status == "alert"
    assert "carrier=UA" in model.columns and "carrier=B6" not in model.columns
    assert report.signals["data"].status == "not_evaluated"  # no factory_drift verdict given
    alerts = {a.alert_type: a for a in feedback_alerts(report, load_alert_policy(), report_uri="s3://r", raised_at=T0)}
    assert alerts[AlertType.MODEL_DRIFT].severity.value == "critical"
    assert alerts[AlertType.MODEL_DRIFT].runbook_url.endswith("#model-drift")
    assert "carrier=UA" in alerts[AlertType.MODEL_DRIFT].title


def test_too_few_labels_is_insufficient_data_and_alerts_nobody(world) -> None:
    report = report_for(world, "concept", min_rows=10_000)
    assert report.signals["concept"].status == report.signals["model"].status == "insufficient_data"
    assert report.verdict == "insufficient_data"
    assert feedback_alerts(report, load_alert_policy(), report_uri="s3://r", raised_at=T0) == []


def test_a_version_without_training_metrics_is_not_judged(world) -> None:
    ids = ["a", "b"]
    join = join_labels(log(ids, [0.2, 0.8]), landed(ids, [0, 1]))
    report = build_report(
        dataset="flights", model_name="m", window=WINDOW, join=join, run_metrics={"3": None}, slices=[],
        drift_windows=[], policy=load_feedback_policy(),
    )  # fmt: skip
    assert report.versions[0].status == "no_training_metrics" and report.findings == []


def test_data_signal_takes_the_loudest_window_and_its_features() -> None:
    windows = [
        DriftWindow(interval_start=T0, interval_end=T0, verdict="ok"),
        DriftWindow(interval_start=T0, interval_end=T0, verdict="alert", drifted_features=["temp"]),
        DriftWindow(interval_start=T0, interval_end=T0, verdict="insufficient_data"),
    ]
    signal = data_signal(windows)
    assert signal.status == "alert" and signal.columns == ["temp"] and "2 window(s)" in signal.summary


def test_training_scores_read_the_logged_names() -> None:
    logged = {"test.n": 200.0, "test.positives": 50.0, "test.roc_auc": 0.7, "test.slice.carrier.UA.n": 10.0}
    scores = training_scores(logged)
    assert scores is not None and scores.positive_rate == 0.25 and scores.brier is None
    assert training_scores(logged, slice_column="carrier", value="B6") is None


def test_business_metric_on_labels(flights_spec) -> None:
    joined = pd.DataFrame({"label": [1, 0, 0, 1]})
    assert business_on_labels(flights_spec.business_metric, joined, "delayed")["value"] == 0.5


def test_new_labelled_rows_count_distinct_ids_after_the_training_interval() -> None:
    labels = pd.concat([landed(["a", "b"], [0, 1]), landed(["a"], [0])])
    labels.loc[labels["request_id"] == "b", "event_time"] = datetime(2013, 2, 1, tzinfo=UTC)
    assert count_new_labelled(labels, datetime(2013, 4, 1, tzinfo=UTC)) == 1
    assert count_new_labelled(labels.iloc[0:0], datetime(2013, 4, 1, tzinfo=UTC)) == 0


def test_policy_errors_name_the_field(config_file) -> None:
    path = config_file("feedback.yaml", "version: '1'\nmodel_drift: {roc_auc_drop: {warn: 0.1, alert: 0.05}}\n")
    with pytest.raises(FeedbackPolicyError, match="roc_auc_drop"):
        load_feedback_policy(path)
