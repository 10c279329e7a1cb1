"""The model card of a gated version, assembled from the records its run already holds.

The words that numbers cannot give (task, intended users, out-of-scope uses, known failure modes) live in a
small YAML per dataset (pipelines/configs/model_cards/<dataset>.yaml); everything else comes from the run's
training summary, evaluation report and run record, and from the gate report just made. A dataset without a
card file still gets a card, which says that its intended use was never written down.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PositiveFloat

from pipelines.assembly import TrainingSummary
from pipelines.config_loading import StrictModel, load_yaml_model
from pipelines.evaluation.report import EvaluationReport
from pipelines.gate.report import GateReport
from pipelines.lineage import RunRecord
from pipelines.model_card import DataWindow, Lineage, ModelCardInputs

MODEL_CARDS_DIR = Path(__file__).resolve().parents[1] / "configs" / "model_cards"
UNSTATED = "Not stated: add pipelines/configs/model_cards/{dataset}.yaml to say who this model is for."


class ModelCardConfigError(ValueError):
    """A model card YAML that cannot be used; the message names the file and the field."""


class ModelCardConfig(StrictModel):
    task: str = Field(min_length=1)
    intended_users: list[str] = Field(min_length=1)
    out_of_scope_uses: list[str] = Field(default_factory=list)
    known_failure_modes: list[str] = Field(default_factory=list)
    core_hour_usd: PositiveFloat | None = None


def load_model_card_config(dataset: str, description: str, directory: Path = MODEL_CARDS_DIR) -> ModelCardConfig:
    """The dataset's card text; without a file, the spec's description as the task and an explicit gap."""
    path = directory / f"{dataset}.yaml"
    if not path.is_file():
        return ModelCardConfig(task=description or dataset, intended_users=[UNSTATED.format(dataset=dataset)])
    return load_yaml_model(path, ModelCardConfig, ModelCardConfigError, "model card config")


def gated_model_card(
    *,
    model_name: str,
    version: str,
    config: ModelCardConfig,
    training: TrainingSummary,
    evaluation: EvaluationReport,
    record: RunRecord,
    gate: GateReport,
    run_url: str,
) -> ModelCardInputs:
    """Card inputs of one registered version: training and evaluation windows from the split record."""
    split = training.split
    headline = evaluation.headline
    return ModelCardInputs(
        model_name=model_name,
        model_version=version,
        task=config.task,
        intended_users=config.intended_users,
        out_of_scope_uses=config.out_of_scope_uses,
        training_data=DataWindow(
            snapshot_id=training.snapshot_id,
            rows=split.rows.get("train", 0),
            start=split.data_start,
            end=split.train_end,
            description=f"train part of the snapshot (validation: {split.rows.get('validation', 0):,} rows after it)",
        ),
        evaluation_data=DataWindow(
            snapshot_id=training.snapshot_id,
            rows=split.rows.get("test", 0),
            start=split.validation_end,
            end=split.data_end,
            positive_rate=headline.positives / headline.n if headline.n else None,
            description="test part of the snapshot: the rows the gate scored challenger and champion on",
        ),
        evaluation=evaluation,
        known_failure_modes=config.known_failure_modes,
        core_hour_usd=config.core_hour_usd,
        gate=gate,
        lineage=Lineage(
            mlflow_run_url=run_url,
            snapshot_uri=record.data.snapshot_uri,
            commit=record.code.commit,
            feature_spec_version=record.features.version,
        ),
    )
