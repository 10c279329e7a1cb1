"""Trainers: configs, overrides, the factory, determinism and native artifacts, on real flights."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from pipelines.features import FeatureSpec, MissingFeatureColumnsError
from pipelines.training.base import TrainedModel, load_trained_model
from pipelines.training.config import (
    TRAINER_KINDS,
    MLPConfig,
    TrainingConfigError,
    UnknownTrainerKindError,
    default_training_config,
    load_training_config,
    merge_overrides,
)
from pipelines.training.factory import TRAINERS, train_model
from pipelines.training.sklearn_models import HGBTrainer
from pipelines.training.torch_mlp import resolve_device

SPEC = FeatureSpec(numeric=["dep_delay", "sched_dep_time", "distance", "hour"], categorical=["carrier", "origin"])
# Small but real: enough for every kind to learn the (strong) dep_delay signal in a second or two.
FAST_OVERRIDES = {
    "hgb": {"max_iter": 40},
    "logreg": {},
    "mlp": {"max_epochs": 8, "hidden_sizes": [16], "batch_size": 256, "learning_rate": 0.01},
}


pytestmark = pytest.mark.usefixtures("one_thread_per_library")


@pytest.fixture(scope="module")
def splits(labelled_flights: Callable[[int], pd.DataFrame]) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """Early-January flights to train on, later ones to validate: a time split, as in production."""
    flights = labelled_flights(12_000)
    labels = (flights["arr_delay"] > 15).to_numpy()
    return {
        "train": (flights.iloc[:4_000], labels[:4_000]),
        "val": (flights.iloc[-2_000:], labels[-2_000:]),
    }


def fast_config(kind: str):
    return merge_overrides(default_training_config(kind), FAST_OVERRIDES[kind])


def train(kind: str, splits: dict[str, tuple[pd.DataFrame, np.ndarray]]) -> TrainedModel:
    (X_train, y_train), (X_val, y_val) = splits["train"], splits["val"]
    return train_model(fast_config(kind), SPEC, X_train, y_train, X_val, y_val)


@pytest.fixture(scope="module")
def trained(splits: dict[str, tuple[pd.DataFrame, np.ndarray]]) -> dict[str, TrainedModel]:
    return {kind: train(kind, splits) for kind in TRAINER_KINDS}


# --- configs -------------------------------------------------------------------------------------------


def test_every_kind_has_a_checked_in_config_and_exactly_one_trainer() -> None:
    assert tuple(TRAINERS) == TRAINER_KINDS
    for kind in TRAINER_KINDS:
        assert default_training_config(kind).kind == kind


def test_unknown_trainer_kind_is_rejected_with_the_known_kinds() -> None:
    with pytest.raises(UnknownTrainerKindError, match=r"unknown trainer kind 'xgboost'; known kinds: hgb, logreg"):
        default_training_config("xgboost")


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("kind: hgb\nseed: 1\nparams: {}\n", r"params\.max_iter: Field required"),
        ("kind: xgboost\nseed: 1\n", r"kind: Input tag 'xgboost'"),
        (
            "kind: logreg\nseed: 1\nparams: {C: 1, max_iter: 5, tol: 0.1, class_weight: null, penalty: l1}\n",
            r"params\.penalty: Extra inputs are not permitted",
        ),
        ("kind: mlp\nseed: 1\ndevice: tpu\n", r"device: Input should be 'auto', 'cpu' or 'cuda'"),
        ("kind: [hgb\n", "not valid YAML"),
    ],
)
def test_bad_config_file_names_the_file_and_the_field(
    config_file: Callable[[str, str], Path], yaml_text: str, message: str
) -> None:
    path = config_file("broken.yaml", yaml_text)
    with pytest.raises(TrainingConfigError, match=rf"broken\.yaml: .*{message}"):
        load_training_config(path)


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingConfigError, match=r"absent\.yaml: cannot read training config"):
        load_training_config(tmp_path / "absent.yaml")


def test_overrides_apply_to_params_and_top_level_and_none_keeps_the_value() -> None:
    config = default_training_config("mlp")

    merged = merge_overrides(config, {"seed": 7, "learning_rate": 0.01, "dropout": None})

    assert isinstance(merged, MLPConfig)
    assert (merged.seed, merged.params.learning_rate) == (7, 0.01)
    assert merged.params.dropout == config.params.dropout
    assert config.seed == 42  # the loaded config is not mutated


def test_unknown_override_key_is_rejected_with_the_allowed_keys() -> None:
    with pytest.raises(TrainingConfigError, match=r"unknown key\(s\) \['max_iters'\] for trainer 'hgb'.*'max_iter'"):
        merge_overrides(default_training_config("hgb"), {"max_iters": 10})


def test_kind_cannot_be_overridden() -> None:
    with pytest.raises(TrainingConfigError, match=r"unknown key\(s\) \['kind'\]"):
        merge_overrides(default_training_config("hgb"), {"kind": "mlp"})


def test_invalid_override_value_names_the_field() -> None:
    with pytest.raises(TrainingConfigError, match=r"overrides: params\.learning_rate: Input should be greater than 0"):
        merge_overrides(default_training_config("hgb"), {"learning_rate": 0})


# --- training ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TRAINER_KINDS)
def test_every_kind_learns_the_delay_signal_on_real_flights(
    kind: str, trained: dict[str, TrainedModel], splits: dict[str, tuple[pd.DataFrame, np.ndarray]]
) -> None:
    X_val, y_val = splits["val"]
    model = trained[kind]

    proba = model.predict_proba(X_val)

    assert proba.shape == (len(X_val),) and proba.dtype == np.float64
    assert ((proba >= 0) & (proba <= 1)).all()
    # Departure delay nearly determines arrival delay: anything below this means the features never arrived.
    assert roc_auc_score(y_val, proba) > 0.85
    assert model.fit_summary and all(isinstance(value, float) for value in model.fit_summary.values())


def test_flavors_name_the_mlflow_flavor(trained: dict[str, TrainedModel]) -> None:
    assert {kind: model.flavor for kind, model in trained.items()} == {
        "hgb": "sklearn",
        "logreg": "sklearn",
        "mlp": "pytorch",
    }


@pytest.mark.parametrize("kind", ["hgb", "mlp"])
def test_training_twice_gives_identical_predictions(
    kind: str, trained: dict[str, TrainedModel], splits: dict[str, tuple[pd.DataFrame, np.ndarray]]
) -> None:
    X_val, _ = splits["val"]
    np.testing.assert_array_equal(train(kind, splits).predict_proba(X_val), trained[kind].predict_proba(X_val))


def test_a_different_seed_gives_a_different_mlp(
    trained: dict[str, TrainedModel], splits: dict[str, tuple[pd.DataFrame, np.ndarray]]
) -> None:
    (X_train, y_train), (X_val, y_val) = splits["train"], splits["val"]
    reseeded = train_model(merge_overrides(fast_config("mlp"), {"seed": 1}), SPEC, X_train, y_train, X_val, y_val)
    assert not np.array_equal(reseeded.predict_proba(X_val), trained["mlp"].predict_proba(X_val))


def test_mlp_training_leaves_the_callers_torch_rng_alone(
    splits: dict[str, tuple[pd.DataFrame, np.ndarray]],
) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train("mlp", splits)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("kind", TRAINER_KINDS)
def test_native_artifact_reloads_to_identical_predictions(
    kind: str,
    trained: dict[str, TrainedModel],
    splits: dict[str, tuple[pd.DataFrame, np.ndarray]],
    tmp_path: Path,
) -> None:
    X_val, _ = splits["val"]
    path = trained[kind].native_artifact(tmp_path)

    reloaded = load_trained_model(path)

    assert path == tmp_path / "model.joblib"
    np.testing.assert_array_equal(reloaded.predict_proba(X_val), trained[kind].predict_proba(X_val))


def test_loading_something_else_than_a_trained_model_fails(tmp_path: Path) -> None:
    joblib.dump({"not": "a model"}, tmp_path / "model.joblib")
    with pytest.raises(TypeError, match="holds a dict, not a TrainedModel"):
        load_trained_model(tmp_path / "model.joblib")


# --- failure cases -------------------------------------------------------------------------------------


def test_feature_column_missing_from_training_frame_is_named(
    splits: dict[str, tuple[pd.DataFrame, np.ndarray]],
) -> None:
    (X_train, y_train), (X_val, y_val) = splits["train"], splits["val"]
    with pytest.raises(MissingFeatureColumnsError, match="missing from frame: carrier"):
        train_model(fast_config("hgb"), SPEC, X_train.drop(columns="carrier"), y_train, X_val, y_val)


def test_single_class_training_labels_are_rejected(
    splits: dict[str, tuple[pd.DataFrame, np.ndarray]],
) -> None:
    (X_train, y_train), (X_val, y_val) = splits["train"], splits["val"]
    with pytest.raises(ValueError, match=r"y_train: training needs both classes, found \[0\]"):
        train_model(fast_config("logreg"), SPEC, X_train, np.zeros_like(y_train), X_val, y_val)


def test_labels_must_match_rows_and_be_binary(splits: dict[str, tuple[pd.DataFrame, np.ndarray]]) -> None:
    (X_train, y_train), (X_val, y_val) = splits["train"], splits["val"]
    with pytest.raises(ValueError, match=r"y_val: 1999 labels for 2000 rows"):
        train_model(fast_config("logreg"), SPEC, X_train, y_train, X_val, y_val[:-1])
    with pytest.raises(ValueError, match=r"y_train: labels must be 0/1 \(or bool\), found \[2\]"):
        train_model(fast_config("logreg"), SPEC, X_train, np.where(y_train, 2, 0), X_val, y_val)


def test_a_trainer_refuses_another_kinds_config() -> None:
    with pytest.raises(ValueError, match="HGBTrainer trains 'hgb' models, got a 'mlp' config"):
        HGBTrainer(default_training_config("mlp"), SPEC)


def test_device_auto_falls_back_to_cpu_and_explicit_cuda_needs_a_gpu() -> None:
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
        return
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="asks for device 'cuda' but torch sees no CUDA device"):
        resolve_device("cuda")


def test_hgb_thresholds_between_adjacent_float32_values_split_alike_in_float32():
    """Two float32 values one ulp apart with different labels: the learnt threshold lies between them in float64,
    and rounding it to float32 naively would send the upper value left (as the ONNX graph does)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from pipelines.training.sklearn_models import round_thresholds_to_float32

    low = np.float32(44.33)
    high = np.nextafter(low, np.float32(np.inf))
    X = np.array([[low]] * 50 + [[high]] * 50, dtype=np.float32).astype(np.float64)
    y = np.array([0] * 50 + [1] * 50)
    model = HistGradientBoostingClassifier(max_iter=5, min_samples_leaf=5, early_stopping=False).fit(X, y)
    before = model.predict_proba(X)
    round_thresholds_to_float32(model)

    nodes = model._predictors[0][0].nodes
    thresholds = nodes["num_threshold"][nodes["is_leaf"] == 0]
    assert thresholds.size and np.all(thresholds.astype(np.float32).astype(np.float64) == thresholds)
    assert np.all(thresholds.astype(np.float32) == low)  # the upper value now goes right in float32 too
    np.testing.assert_array_equal(model.predict_proba(X), before)  # and scikit-learn decides as before
