"""ONNX export: one serving signature for every model kind, and parity with the native model."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import helper

from pipelines.export.parity import PARITY_TOLERANCE, ParityError, check_parity, export_checked
from pipelines.export.runtime import onnx_predict_proba
from pipelines.export.signature import (
    ModelSignature,
    SignatureError,
    TensorSpec,
    onnx_inputs_from_frame,
    read_onnx_signature,
    signature_for,
)
from pipelines.features import FeatureSpec, MissingFeatureColumnsError
from pipelines.training.base import TrainedModel
from pipelines.training.config import TRAINER_KINDS, default_training_config, merge_overrides
from pipelines.training.factory import train_model

SPEC = FeatureSpec(numeric=["dep_delay", "sched_dep_time", "distance"], categorical=["carrier", "origin", "dest"])
FAST_OVERRIDES = {"hgb": {"max_iter": 30}, "logreg": {}, "mlp": {"max_epochs": 3, "hidden_sizes": [16]}}


pytestmark = pytest.mark.usefixtures("one_thread_per_library")


@pytest.fixture(scope="module")
def flights(labelled_flights: Callable[[int], pd.DataFrame]) -> pd.DataFrame:
    return labelled_flights(8_000)


@pytest.fixture(scope="module")
def exported(flights: pd.DataFrame) -> dict[str, tuple[TrainedModel, bytes]]:
    """Each kind trained on real flights and exported once (the torch export takes a few seconds)."""
    labels = (flights["arr_delay"] > 15).to_numpy()
    train, val = flights.iloc[:4_000], flights.iloc[4_000:]
    result = {}
    for kind in TRAINER_KINDS:
        config = merge_overrides(default_training_config(kind), FAST_OVERRIDES[kind])
        model = train_model(config, SPEC, train, labels[:4_000], val, labels[4_000:])
        result[kind] = (model, model.to_onnx())
    return result


def awkward_rows(flights: pd.DataFrame) -> pd.DataFrame:
    """Real rows plus what serving will meet: NaN numerics, missing and never-seen categories."""
    rows = flights.iloc[4_000:4_600].copy()
    rows.loc[rows.index[:20], "dep_delay"] = np.nan
    rows.loc[rows.index[20:40], "carrier"] = None
    rows.loc[rows.index[40:60], "dest"] = "ZZZ"
    return rows


def test_signature_is_one_input_per_feature_column_and_one_probability_output() -> None:
    signature = signature_for(SPEC)

    assert [(t.name, t.dtype, t.dims) for t in signature.inputs] == [
        ("dep_delay", "FP32", [1]),
        ("sched_dep_time", "FP32", [1]),
        ("distance", "FP32", [1]),
        ("carrier", "BYTES", [1]),
        ("origin", "BYTES", [1]),
        ("dest", "BYTES", [1]),
    ]
    assert signature.outputs == [TensorSpec(name="probability", dtype="FP32", dims=[1])]
    assert signature.feature_spec() == SPEC
    assert ModelSignature.model_validate_json(signature.model_dump_json()) == signature


@pytest.mark.parametrize("kind", TRAINER_KINDS)
def test_every_kind_exports_the_same_signature(kind: str, exported: dict[str, tuple[TrainedModel, bytes]]) -> None:
    model, onnx_model = exported[kind]

    assert read_onnx_signature(onnx_model) == signature_for(SPEC) == model.signature
    metadata = {prop.key: prop.value for prop in onnx.load_from_string(onnx_model).metadata_props}
    assert metadata["feature_spec_version"] == SPEC.version


@pytest.mark.parametrize("kind", TRAINER_KINDS)
def test_onnx_matches_native_on_real_and_awkward_rows(
    kind: str, exported: dict[str, tuple[TrainedModel, bytes]], flights: pd.DataFrame
) -> None:
    model, onnx_model = exported[kind]
    rows = awkward_rows(flights)

    report = check_parity(model.predict_proba(rows), onnx_predict_proba(onnx_model, rows))

    assert report.passed and report.rows == len(rows)
    assert report.max_abs_diff <= PARITY_TOLERANCE == report.tolerance


@pytest.mark.parametrize("kind", TRAINER_KINDS)
def test_single_row_requests_work(
    kind: str, exported: dict[str, tuple[TrainedModel, bytes]], flights: pd.DataFrame
) -> None:
    model, onnx_model = exported[kind]
    row = flights.iloc[[4_321]]
    np.testing.assert_allclose(onnx_predict_proba(onnx_model, row), model.predict_proba(row), atol=PARITY_TOLERANCE)


def test_export_checked_returns_the_graph_and_a_passing_report(
    exported: dict[str, tuple[TrainedModel, bytes]], flights: pd.DataFrame
) -> None:
    model, _ = exported["logreg"]
    onnx_model, report = export_checked(model, flights.iloc[4_000:])
    assert read_onnx_signature(onnx_model) == model.signature
    assert report.passed and report.rows == len(flights) - 4_000


def test_onnx_feeds_are_float32_and_string_columns_of_shape_rows_by_one(flights: pd.DataFrame) -> None:
    feeds = onnx_inputs_from_frame(flights.head(5), signature_for(SPEC))

    assert list(feeds) == SPEC.columns
    assert feeds["distance"].dtype == np.float32 and feeds["distance"].shape == (5, 1)
    assert feeds["carrier"].dtype == object and feeds["carrier"][0, 0] == flights["carrier"].iloc[0]


def test_onnx_feeds_name_a_missing_column(flights: pd.DataFrame) -> None:
    with pytest.raises(MissingFeatureColumnsError, match="missing from frame: dest"):
        onnx_inputs_from_frame(flights.drop(columns="dest"), signature_for(SPEC))


def test_parity_violation_raises_with_the_size_and_place_of_the_gap() -> None:
    native = np.linspace(0.05, 0.95, 50)
    skewed = native.copy()
    skewed[17] += 3e-5

    with pytest.raises(
        ParityError, match=r"max abs diff 3e-05 at row 17 exceeds tolerance 1e-05 over 50 rows"
    ) as caught:
        check_parity(native, skewed)
    assert caught.value.report.passed is False


def test_parity_within_tolerance_passes_and_nan_never_does() -> None:
    native = np.array([0.1, 0.5, 0.9])
    assert check_parity(native, native.astype(np.float32)).max_abs_diff < 1e-7
    with pytest.raises(ParityError, match="max abs diff inf at row 1"):
        check_parity(native, np.array([0.1, np.nan, 0.9]))


def test_parity_needs_equal_non_empty_inputs() -> None:
    with pytest.raises(ValueError, match="native 3 rows, onnx 2 rows"):
        check_parity(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="at least one row"):
        check_parity(np.zeros(0), np.zeros(0))


def test_graph_outside_the_contract_is_rejected() -> None:
    int_input = helper.make_tensor_value_info("count", onnx.TensorProto.INT64, [None, 1])
    fixed_batch = helper.make_tensor_value_info("probability", onnx.TensorProto.FLOAT, [4, 1])
    for value, message in ((int_input, "ONNX type INT64"), (fixed_batch, "no dynamic batch dimension")):
        graph = helper.make_graph([helper.make_node("Identity", [value.name], ["out"])], "g", [value], [])
        with pytest.raises(SignatureError, match=message):
            read_onnx_signature(helper.make_model(graph))
