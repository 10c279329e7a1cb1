"""scikit-learn trainers: HistGradientBoosting and LogisticRegression behind the shared preprocessing."""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.base import ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from pipelines.export.onnx_export import sklearn_pipeline_to_onnx
from pipelines.features import FeatureSpec, prepare_frame
from pipelines.training.base import TrainedModel, Trainer, checked_labels, fit_preprocessor
from pipelines.training.config import HGBConfig, LogRegConfig


class SklearnModel(TrainedModel):
    """A fitted Pipeline(preprocess, model); `pipeline` is what MLflow's sklearn flavor logs."""

    flavor = "sklearn"

    def __init__(
        self,
        pipeline: Pipeline,
        spec: FeatureSpec,
        config: HGBConfig | LogRegConfig,
        fit_summary: dict[str, float],
    ) -> None:
        super().__init__(spec, config, fit_summary)
        self.pipeline = pipeline

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.pipeline.predict_proba(prepare_frame(frame, self.spec))[:, 1].astype(np.float64)

    def to_onnx(self) -> bytes:
        return sklearn_pipeline_to_onnx(self.pipeline, self.spec)


class SklearnTrainer(Trainer):
    """Fit the shared preprocessor, then the estimator on its float32 output; assemble one Pipeline."""

    # Trees split on raw float32 values (parity with ONNX); linear models need standardised inputs.
    scale_numeric: ClassVar[bool]

    def fit(self, X_train: pd.DataFrame, y_train: ArrayLike, X_val: pd.DataFrame, y_val: ArrayLike) -> SklearnModel:
        train_labels, val_labels = checked_labels(X_train, y_train, X_val, y_val)
        preprocessor, train_matrix, val_matrix = fit_preprocessor(
            self.spec, X_train, X_val, scale_numeric=self.scale_numeric
        )
        estimator, fit_summary = self._fit_estimator(train_matrix, train_labels, val_matrix, val_labels)
        pipeline = Pipeline([("preprocess", preprocessor), ("model", estimator)])
        return SklearnModel(pipeline, self.spec, self.config, fit_summary)

    @abstractmethod
    def _fit_estimator(
        self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray
    ) -> tuple[ClassifierMixin, dict[str, float]]: ...


def round_thresholds_to_float32(estimator: HistGradientBoostingClassifier) -> None:
    """Make every split threshold a float32 number, rounded down, so scikit-learn and ONNX split alike.

    The ONNX tree ensemble compares `x <= threshold` in float32. A threshold midway between two float32 data
    values that are one ulp apart (humidity 44.33 read from two slightly different doubles) rounds *up* to the
    upper value in float32, which then goes left in ONNX and right in scikit-learn (measured: a 0.22
    probability gap on February 2013). For float32 inputs, `x <= t` and `x <= floor32(t)` are the same test,
    so rounding down changes no scikit-learn decision and removes the disagreement. Inputs are always float32
    (`prepare_frame`). Uses the fitted predictors' node arrays, a private but stable scikit-learn structure.
    """
    for iteration in estimator._predictors:
        for predictor in iteration:
            nodes = predictor.nodes
            split = nodes["is_leaf"] == 0
            thresholds = nodes["num_threshold"][split]
            rounded = thresholds.astype(np.float32)
            above = rounded.astype(np.float64) > thresholds
            rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
            nodes["num_threshold"][split] = rounded.astype(np.float64)


class HGBTrainer(SklearnTrainer):
    kind = "hgb"
    scale_numeric = False
    config: HGBConfig

    def _fit_estimator(
        self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray
    ) -> tuple[ClassifierMixin, dict[str, float]]:
        params = self.config.params
        estimator = HistGradientBoostingClassifier(
            max_iter=params.max_iter,
            learning_rate=params.learning_rate,
            max_leaf_nodes=params.max_leaf_nodes,
            max_depth=params.max_depth,
            min_samples_leaf=params.min_samples_leaf,
            l2_regularization=params.l2_regularization,
            early_stopping=params.early_stopping,
            n_iter_no_change=params.n_iter_no_change,
            class_weight=params.class_weight,
            random_state=self.config.seed,
        )
        validation = {"X_val": X_val, "y_val": y_val} if params.early_stopping else {}
        estimator.fit(X, y, **validation)
        round_thresholds_to_float32(estimator)
        return estimator, {"n_iter": float(estimator.n_iter_)}


class LogRegTrainer(SklearnTrainer):
    kind = "logreg"
    scale_numeric = True
    config: LogRegConfig

    def _fit_estimator(
        self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray
    ) -> tuple[ClassifierMixin, dict[str, float]]:
        """The validation split is not used: lbfgs runs to convergence, there is nothing to stop early."""
        params = self.config.params
        estimator = LogisticRegression(
            C=params.C,
            max_iter=params.max_iter,
            tol=params.tol,
            class_weight=params.class_weight,
            random_state=self.config.seed,
        )
        estimator.fit(X, y)
        return estimator, {"n_iter": float(estimator.n_iter_.max())}
