"""Training configuration: one YAML per trainer kind, validated on load, overridable from trigger Params.

A config names its trainer `kind`, the `seed` that makes the run reproducible, and the trainer's `params`.
Each kind has its own params model (extra keys forbidden), so a typo in a YAML file or an Airflow trigger form
fails before any training starts, with the file (or "overrides") and the field in the message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import ErrorDetails

from pipelines.config_loading import StrictModel, format_validation_error, load_yaml_model

TRAINER_KINDS = ("hgb", "logreg", "mlp")
TRAINING_CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "training"


class TrainingConfigError(ValueError):
    """A training config (file or overrides) is invalid; the message names the source and the field."""


class UnknownTrainerKindError(ValueError):
    """A trainer kind that the factory does not implement."""


# No defaults below: the YAML file is the single, reviewed record of every hyperparameter of a run.


class HGBParams(StrictModel):
    """sklearn HistGradientBoostingClassifier hyperparameters (early stopping uses the validation split)."""

    max_iter: PositiveInt
    learning_rate: PositiveFloat
    max_leaf_nodes: int = Field(ge=2)
    max_depth: PositiveInt | None
    min_samples_leaf: PositiveInt
    l2_regularization: NonNegativeFloat
    early_stopping: bool
    n_iter_no_change: PositiveInt
    class_weight: Literal["balanced"] | None


class LogRegParams(StrictModel):
    """sklearn LogisticRegression (L2, lbfgs) hyperparameters; numeric features are standardised first."""

    C: PositiveFloat
    max_iter: PositiveInt
    tol: PositiveFloat
    class_weight: Literal["balanced"] | None


class MLPParams(StrictModel):
    """PyTorch MLP hyperparameters; training keeps the epoch with the best validation log loss."""

    hidden_sizes: list[PositiveInt] = Field(min_length=1)
    dropout: float = Field(ge=0, lt=1)
    learning_rate: PositiveFloat
    weight_decay: NonNegativeFloat
    batch_size: PositiveInt
    max_epochs: PositiveInt
    patience: PositiveInt


class HGBConfig(StrictModel):
    kind: Literal["hgb"]
    seed: int
    params: HGBParams


class LogRegConfig(StrictModel):
    kind: Literal["logreg"]
    seed: int
    params: LogRegParams


class MLPConfig(StrictModel):
    kind: Literal["mlp"]
    seed: int
    # "auto" picks CUDA when the host has it: the same config trains on a laptop and on a GPU worker.
    device: Literal["auto", "cpu", "cuda"]
    params: MLPParams


TrainingConfig = Annotated[HGBConfig | LogRegConfig | MLPConfig, Field(discriminator="kind")]
_TRAINING_CONFIG = TypeAdapter(TrainingConfig)


def load_training_config(path: str | Path) -> TrainingConfig:
    """Read and validate one training config YAML file."""
    return load_yaml_model(path, _TRAINING_CONFIG, TrainingConfigError, "training config", locate=_field_as_written)


def default_training_config(kind: str) -> TrainingConfig:
    """The checked-in config for `kind` (pipelines/configs/training/<kind>.yaml)."""
    if kind not in TRAINER_KINDS:
        raise UnknownTrainerKindError(f"unknown trainer kind {kind!r}; known kinds: {', '.join(TRAINER_KINDS)}")
    return load_training_config(TRAINING_CONFIG_DIR / f"{kind}.yaml")


def merge_overrides(config: TrainingConfig, overrides: dict[str, Any]) -> TrainingConfig:
    """Apply flat trigger-form overrides (`seed`, `device`, or any params field) and re-validate.

    A None value means "not set in the form" and keeps the configured value. Unknown keys are rejected: a
    misspelt Param must not silently train the default model. `kind` cannot be overridden: load another
    config instead.
    """
    top_level = set(type(config).model_fields) - {"kind", "params"}
    param_fields = set(type(config.params).model_fields)
    given = {key: value for key, value in overrides.items() if value is not None}
    unknown = sorted(set(given) - top_level - param_fields)
    if unknown:
        raise TrainingConfigError(
            f"overrides: unknown key(s) {unknown} for trainer {config.kind!r}; "
            f"allowed: {sorted(top_level | param_fields)}"
        )
    data = config.model_dump()
    for key, value in given.items():
        (data if key in top_level else data["params"])[key] = value
    try:
        return _TRAINING_CONFIG.validate_python(data)
    except ValidationError as error:
        raise TrainingConfigError(f"overrides: {format_validation_error(error, locate=_field_as_written)}") from None


def _field_as_written(problem: ErrorDetails) -> list[str | int]:
    """'params.max_iter' rather than 'hgb.params.max_iter': a union member's tag is not a field the user wrote."""
    if problem["type"] in {"union_tag_invalid", "union_tag_not_found"}:
        return ["kind"]
    location = list(problem["loc"])
    if location and location[0] in TRAINER_KINDS:
        return location[1:]
    return location
