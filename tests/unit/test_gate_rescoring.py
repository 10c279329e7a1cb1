"""The gate's glue around the pure decision: both registered ONNX artifacts scored on the same rows, bad
artifacts refused before anything is scored, the version's tags through approval, the model card inputs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pipelines.assembly import TrainingSummary
from pipelines.datasets.split import SplitRecord
from pipelines.datasets.target import TargetReport
from pipelines.evaluation.report import evaluate_model
from pipelines.export.runtime import onnx_predict_proba
from pipelines.export.signature import onnx_inputs_from_frame, read_onnx_signature
from pipelines.features import FeatureSpec
from pipelines.gate import GateInputError, GatePolicy, SignatureMismatchError
from pipelines.gate.card import UNSTATED, gated_model_card, load_model_card_config
from pipelines.gate.outcome import DECISION_TAG, GateOutcome, approval_request, final_outcome, gate_tags
from pipelines.gate.rescoring import ModelArtifactError, RegisteredModel, judge_registered_models
from pipelines.lineage import CodeLineage, DataLineage, EnvironmentLineage, FeatureLineage, Governance, RunRecord
from pipelines.model_card import render_model_card_markdown
from pipelines.training.config import default_training_config
from pipelines.training.factory import train_model

SPEC = FeatureSpec(numeric=["sched_dep_time", "distance"], categorical=["carrier", "origin"])
NARROW = FeatureSpec(numeric=["sched_dep_time"], categorical=["carrier", "origin"])
POLICY = GatePolicy.model_validate(
    {
        "name": "rescoring-test",
        "version": "1",
        "bootstrap": {"n_resamples": 200, "seed": 3},
        "value_bounds": {"roc_auc": {"min": 0.5}},
        "changes": [{"metric": "roc_auc", "min_improvement": 0.001, "max_regression": 0.05}],
        "slices": {"min_size": 200, "critical": [{"column": "origin", "values": ["EWR", "JFK", "LGA"]}]},
        "approval": {"response_timeout_hours": 0.5},
    }
)

pytestmark = pytest.mark.usefixtures("one_thread_per_library")


@pytest.fixture(scope="module")
def rows(labelled_flights: Callable[[int], pd.DataFrame]) -> pd.DataFrame:
    flights = labelled_flights(6_000)
    return flights.assign(delayed=(flights["arr_delay"] > 15).astype("int8"))


@pytest.fixture(scope="module")
def models(rows: pd.DataFrame) -> dict[str, bytes]:
    """ONNX bytes of a logistic regression on SPEC (two training sizes) and one on a narrower contract."""
    train, val = rows.iloc[:3_000], rows.iloc[3_000:4_000]
    config = default_training_config("logreg")

    def fit(spec: FeatureSpec, n: int) -> bytes:
        return train_model(config, spec, train.iloc[:n], train["delayed"].iloc[:n], val, val["delayed"]).to_onnx()

    return {"strong": fit(SPEC, 3_000), "weak": fit(SPEC, 300), "narrow": fit(NARROW, 3_000)}


def judge(rows: pd.DataFrame, challenger: bytes | None, champion: bytes | str | None = "absent"):
    champ = None if champion == "absent" else RegisteredModel("m v1 (champion)", champion)  # type: ignore[arg-type]
    return judge_registered_models(
        rows.iloc[4_000:],
        label="delayed",
        slice_columns=["carrier", "origin"],
        challenger=RegisteredModel("m v2", challenger),
        champion=champ,
        policy=POLICY,
    )


def test_champion_is_rescored_from_its_artifact_on_the_challengers_rows(rows, models):
    report = judge(rows, models["strong"], models["weak"])
    test = rows.iloc[4_000:]
    champion_auc = roc_auc_score(test["delayed"], onnx_predict_proba(models["weak"], test))
    challenger_auc = roc_auc_score(test["delayed"], onnx_predict_proba(models["strong"], test))
    change = next(check for check in report.checks if check.name == "change/roc_auc")
    assert change.baseline == pytest.approx(champion_auc, abs=1e-9)  # the champion's AUC on these very rows
    assert change.value == pytest.approx(challenger_auc, abs=1e-9)
    assert not report.first_model and report.rows == len(test)
    latency = next(check for check in report.checks if check.name == "latency/p50_ms")
    assert latency.value > 0 and latency.baseline > 0  # both measured now, side by side


def test_the_same_artifact_as_champion_is_noise_and_not_promoted(rows, models):
    report = judge(rows, models["strong"], models["strong"])
    assert report.decision == "reject"
    assert "no supported improvement" in report.summary


def test_no_champion_is_a_first_model(rows, models):
    report = judge(rows, models["strong"])
    assert report.first_model and report.bootstrap is None


def test_missing_or_unreadable_artifacts_are_named_before_anything_is_scored(rows, models):
    with pytest.raises(ModelArtifactError, match=r"the champion m v1 \(champion\) has no ONNX model artifact"):
        judge(rows, models["strong"], None)
    with pytest.raises(ModelArtifactError, match="is not a usable ONNX model"):
        judge(rows, models["strong"], b"not a model")
    with pytest.raises(ModelArtifactError, match="the challenger m v2 has no ONNX model artifact"):
        judge(rows, None)
    assert issubclass(ModelArtifactError, GateInputError)


def test_a_champion_with_another_signature_is_refused(rows, models):
    with pytest.raises(SignatureMismatchError, match=r"inputs only in the challenger: \['distance'\]"):
        judge(rows, models["strong"], models["narrow"])


def test_rows_without_the_label_or_a_slice_column_are_refused(rows, models):
    with pytest.raises(GateInputError, match="no label column 'delayed'"):
        judge(rows.drop(columns="delayed"), models["strong"])
    with pytest.raises(GateInputError, match=r"lack slice columns \['origin'\]"):
        judge(rows.drop(columns="origin"), models["strong"])


# ----- outcome: tags, approval request, final state --------------------------------------------------------
def outcome(decision: str = "needs_approval", **extra: Any) -> GateOutcome:
    fields = {
        "model_name": "flights-hgb",
        "version": "7",
        "run_id": "r7",
        "decision": decision,
        "summary": "Needs approval: every rule passed, but agreement/decisions asks for a human.",
        "policy_name": "flights-delay-gate",
        "policy_version": "1.1.0",
        "first_model": False,
        "rows": 12_509,
        "review": ["agreement/decisions: The models agree on 89.2% of decisions, below 95.0%"],
        "champion_version": "4",
        "challenger_before": None,
        "report_uri": "runs:/r7/gate/gate_report.html",
        "report_url": "http://mlflow/get-artifact?path=gate%2Fgate_report.html&run_uuid=r7",
        "report_json_uri": "runs:/r7/gate/gate_report.json",
        "model_card_url": "http://mlflow/get-artifact?path=model_card%2Fmodel_card.html&run_uuid=r7",
        "run_url": "http://mlflow/#/experiments/1/runs/r7",
        "approval_timeout_s": 86_400.0,
    }
    return GateOutcome.model_validate(fields | extra)


def test_gate_tags_name_verdict_policy_champion_and_report(rows, models):
    report = judge(rows, models["strong"], models["strong"])
    tags = gate_tags(report, report_uri="runs:/r/gate/gate_report.html", champion_version="4")
    assert tags[DECISION_TAG] == "rejected"
    assert tags["gate.policy"] == "rescoring-test@1"
    assert tags["gate.champion_version"] == "4"
    assert tags["gate.report"] == "runs:/r/gate/gate_report.html"
    assert gate_tags(judge(rows, models["strong"]), report_uri="x", champion_version=None)[
        "gate.champion_version"
    ].startswith("none")


def test_approval_request_says_why_a_human_is_asked_and_what_silence_means():
    subject, body = approval_request(outcome())
    assert subject == "Promote flights-hgb v7 to challenger? (gate: needs_approval, policy 1.1.0)"
    assert "against champion v4, on 12,509 evaluation rows" in body
    assert "- agreement/decisions: The models agree on 89.2%" in body
    assert "http://mlflow/get-artifact?path=gate%2Fgate_report.html&run_uuid=r7" in body
    assert "Unanswered after 24 h, the request resolves to **Reject**" in body


APPROVED = {"chosen_options": ["Approve"], "responded_by_user": {"id": "admin", "name": "admin"}}
REJECTED = {"chosen_options": ["Reject"], "responded_by_user": {"id": "ops", "name": "ops"}}
TIMED_OUT = {"chosen_options": ["Reject"], "responded_by_user": None, "timedout": True}
PROMOTED = {"seq": 12}


@pytest.mark.parametrize(
    ("decision", "approval", "promotion", "tags", "promoted"),
    [
        ("needs_approval", APPROVED, PROMOTED, {DECISION_TAG: "approved", "gate.approval": "approved by admin"}, True),
        ("needs_approval", REJECTED, None, {DECISION_TAG: "rejected", "gate.approval": "rejected by ops"}, False),
        (
            "needs_approval",
            TIMED_OUT,
            None,
            {DECISION_TAG: "rejected", "gate.approval": "rejected: no answer before the timeout (default Reject)"},
            False,
        ),
        ("promote", None, PROMOTED, {}, True),
        ("reject", None, None, {}, False),
    ],
)
def test_final_outcome_follows_from_decision_answer_and_promotion(decision, approval, promotion, tags, promoted):
    final = final_outcome(outcome(decision), approval, promotion)
    expected = dict(tags)
    if promoted:
        expected["gate.promoted_to"] = "challenger (alias log record 12)"
    assert final.tags == expected
    assert final.promoted is promoted
    assert ("now the challenger" in final.summary) is promoted


def test_an_approve_answer_without_a_promotion_is_not_reported_as_approved():
    final = final_outcome(outcome(), APPROVED, None)
    assert final.tags[DECISION_TAG] == "rejected" and not final.promoted


# ----- model card ------------------------------------------------------------------------------------------
def test_gated_model_card_takes_windows_from_the_split_and_text_from_the_yaml(rows, models, tmp_path: Path):
    test = rows.iloc[4_000:]
    report = judge(rows, models["strong"], models["weak"])
    proba = onnx_predict_proba(models["strong"], test)
    evaluation = evaluate_model(
        test["delayed"],
        proba,
        slices={"origin": test["origin"]},
        onnx_model=models["strong"],
        onnx_feeds=onnx_inputs_from_frame(test.head(50), read_onnx_signature(models["strong"])),
    )
    day = datetime(2013, 1, 1, tzinfo=UTC)
    split = SplitRecord(
        method="time_fractions", time_column="time_hour", fractions={"train": 0.7, "validation": 0.15, "test": 0.15},
        data_start=day, data_end=day.replace(day=15), train_end=day.replace(day=10),
        validation_end=day.replace(day=12), rows={"train": 3_000, "validation": 1_000, "test": len(test)},
    )  # fmt: skip
    summary = TrainingSummary(
        snapshot_id="s" * 64,
        config=default_training_config("logreg"),
        target=TargetReport(
            label="delayed",
            rule="arr_delay > 15",
            rows_in=6000,
            rows_dropped_null_source=0,
            rows_out=6000,
            positive_rate=0.2,
        ),
        split=split,
        fit_summary={},
        trained_at=day,
    )
    record = RunRecord(
        code=CodeLineage(commit="abc1234", branch="main", dirty=False),
        data=DataLineage(dataset="flights", spec_version="1", snapshot_id="s" * 64, snapshot_uri="s3://d/s.parquet"),
        features=FeatureLineage.from_spec(SPEC),
        config=default_training_config("logreg"),
        environment=EnvironmentLineage(
            python="3.11", platform="x", packages={}, cpu_count=2, cuda_available=False, image_digest=None
        ),
        metrics={},
        artifacts={},
        governance=Governance(owner="tests"),
    )
    config = load_model_card_config("flights", "unused")
    inputs = gated_model_card(
        model_name="flights-logreg", version="2", config=config, training=summary, evaluation=evaluation,
        record=record, gate=report, run_url="http://mlflow/#/experiments/1/runs/r2",
    )  # fmt: skip
    assert (inputs.training_data.start, inputs.training_data.end, inputs.training_data.rows) == (
        day,
        day.replace(day=10),
        3_000,
    )
    assert (inputs.evaluation_data.start, inputs.evaluation_data.end) == (day.replace(day=12), day.replace(day=15))
    assert inputs.evaluation_data.positive_rate == pytest.approx(float(np.mean(test["delayed"])))
    card = render_model_card_markdown(inputs)
    assert "Operations planners" in card and "version 2" in card
    assert f"Decision: {report.decision} (policy rescoring-test version 1)." in card
    assert "| Code commit | abc1234 |" in card

    fallback = load_model_card_config("no-such-dataset", "Predicts things.", directory=tmp_path)
    assert fallback.task == "Predicts things."
    assert fallback.intended_users == [UNSTATED.format(dataset="no-such-dataset")]
