"""The trainer interface every model kind implements, and the helpers all trainers share.

A `Trainer` holds a validated config and a feature spec; `fit` returns a `TrainedModel`, a separate object, so
there is never a half-initialised "not fitted yet" model to guard against. A `TrainedModel` predicts on raw
frames (it applies `prepare_frame` and its own fitted preprocessing), exports itself to ONNX with the shared
signature, and writes its native artifact.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import joblib
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.compose import ColumnTransformer

from pipelines.export.signature import ModelSignature, signature_for
from pipelines.features import FeatureSpec, build_preprocessor, prepare_frame
from pipelines.training.config import TrainingConfig

NATIVE_ARTIFACT_NAME = "model.joblib"


class TrainedModel(ABC):
    """A fitted model of any kind, ready to predict, export and persist."""

    # The MLflow flavor the lead logs the native object with ("sklearn" or "pytorch").
    flavor: ClassVar[str]

    def __init__(self, spec: FeatureSpec, config: TrainingConfig, fit_summary: dict[str, float]) -> None:
        self.spec = spec
        self.config = config
        # Numbers worth logging next to the metrics: iterations run, best epoch, validation loss...
        self.fit_summary = fit_summary

    @property
    def signature(self) -> ModelSignature:
        return signature_for(self.spec)

    @abstractmethod
    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Positive-class probabilities (1-D float64) for the rows of a raw frame."""

    @abstractmethod
    def to_onnx(self) -> bytes:
        """The serving graph: raw feature columns in, `probability` out (see pipelines.export.signature)."""

    def native_artifact(self, directory: Path) -> Path:
        """Write this fitted model to `directory/model.joblib`; `load_trained_model` reads it back.

        The file holds the exact object that produced the evaluated predictions (preprocessing included), so
        re-scoring from it reproduces them bit for bit. Unpickling needs the same code and library versions:
        the environment lineage of the run records them. ONNX is the artifact that serves.
        """
        path = Path(directory) / NATIVE_ARTIFACT_NAME
        joblib.dump(self, path)
        return path


class Trainer(ABC):
    """Trains one model kind from a validated config."""

    kind: ClassVar[str]

    def __init__(self, config: TrainingConfig, spec: FeatureSpec) -> None:
        if config.kind != self.kind:
            raise ValueError(f"{type(self).__name__} trains {self.kind!r} models, got a {config.kind!r} config")
        self.config = config
        self.spec = spec

    @abstractmethod
    def fit(self, X_train: pd.DataFrame, y_train: ArrayLike, X_val: pd.DataFrame, y_val: ArrayLike) -> TrainedModel:
        """Fit on raw frames (any extra columns are ignored); the validation split drives early stopping."""


def load_trained_model(path: Path) -> TrainedModel:
    """Read a model written by `TrainedModel.native_artifact`."""
    model = joblib.load(path)
    if not isinstance(model, TrainedModel):
        raise TypeError(f"{path} holds a {type(model).__name__}, not a TrainedModel")
    return model


def checked_labels(
    X_train: pd.DataFrame, y_train: ArrayLike, X_val: pd.DataFrame, y_val: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Both label arrays as 0/1 int8, checked against their frames; training needs both classes."""
    train = _binary_labels(y_train, X_train, "y_train")
    val = _binary_labels(y_val, X_val, "y_val")
    classes = np.unique(train).tolist()
    if len(classes) < 2:
        raise ValueError(f"y_train: training needs both classes, found {classes}")
    if val.size == 0:
        raise ValueError("y_val: the validation split is empty")
    return train, val


def fit_preprocessor(
    spec: FeatureSpec,
    X_train: pd.DataFrame,
    X_val: pd.DataFrame,
    *,
    scale_numeric: bool,
) -> tuple[ColumnTransformer, np.ndarray, np.ndarray]:
    """Fit the shared preprocessing on the training split; return it with both splits transformed.

    Trainers fit preprocessing and estimator separately (then assemble the pipeline) because early stopping
    needs the validation split in the estimator's input space, which a Pipeline.fit cannot provide.
    """
    preprocessor = build_preprocessor(spec, scale_numeric=scale_numeric)
    train_matrix = preprocessor.fit_transform(prepare_frame(X_train, spec))
    val_matrix = preprocessor.transform(prepare_frame(X_val, spec))
    return preprocessor, train_matrix, val_matrix


def _binary_labels(y: ArrayLike, frame: pd.DataFrame, name: str) -> np.ndarray:
    labels = np.asarray(y).ravel()
    if labels.size != len(frame):
        raise ValueError(f"{name}: {labels.size} labels for {len(frame)} rows")
    if labels.dtype != bool:
        bad = labels[(labels != 0) & (labels != 1)]
        if bad.size:
            raise ValueError(f"{name}: labels must be 0/1 (or bool), found {np.unique(bad)[:5].tolist()}")
    return labels.astype(np.int8)
