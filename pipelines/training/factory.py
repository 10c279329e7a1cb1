"""Pick the trainer for a config and train it: the one entry point the training task calls."""

from __future__ import annotations

import pandas as pd
from numpy.typing import ArrayLike

from pipelines.features import FeatureSpec
from pipelines.training.base import TrainedModel, Trainer
from pipelines.training.config import TrainingConfig
from pipelines.training.sklearn_models import HGBTrainer, LogRegTrainer
from pipelines.training.torch_mlp import MLPTrainer

TRAINERS: dict[str, type[Trainer]] = {trainer.kind: trainer for trainer in (HGBTrainer, LogRegTrainer, MLPTrainer)}


def make_trainer(config: TrainingConfig, spec: FeatureSpec) -> Trainer:
    """The trainer for `config.kind` (a validated config can only name a kind listed in TRAINER_KINDS)."""
    return TRAINERS[config.kind](config, spec)


def train_model(
    config: TrainingConfig,
    spec: FeatureSpec,
    X_train: pd.DataFrame,
    y_train: ArrayLike,
    X_val: pd.DataFrame,
    y_val: ArrayLike,
) -> TrainedModel:
    """Train the model kind `config.kind` names on raw frames (extra columns are ignored)."""
    return make_trainer(config, spec).fit(X_train, y_train, X_val, y_val)
