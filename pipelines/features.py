"""Feature definitions shared by training and serving.

The feature spec is part of the dataset spec; its version (a content hash) is recorded with every run and
every registered model so a served model can always be traced to the exact feature definition it was trained
with. `prepare_frame` and `build_preprocessor` are the single definition of how those columns become model
inputs, shared by every trainer and by the ONNX export.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sklearn.base import TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


class FeatureSpec(BaseModel):
    """Which columns feed the model, and how they are typed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_columns(self) -> FeatureSpec:
        if not self.numeric and not self.categorical:
            raise ValueError("a feature spec needs at least one numeric or categorical column")
        overlap = sorted(set(self.numeric) & set(self.categorical))
        if overlap:
            raise ValueError(f"columns listed as both numeric and categorical: {overlap}")
        for group in (self.numeric, self.categorical):
            duplicates = sorted({c for c in group if group.count(c) > 1})
            if duplicates:
                raise ValueError(f"feature columns listed twice: {duplicates}")
        return self

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @property
    def version(self) -> str:
        """A short content hash: two specs with the same columns and types share a version."""
        canonical = json.dumps({"numeric": self.numeric, "categorical": self.categorical}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


# A missing categorical value travels as the empty string: ONNX and Triton string (BYTES) tensors cannot hold
# a null, so training, batch scoring and serving all agree on "" and the fitted imputer maps it to its own
# category.
MISSING_CATEGORY = ""
MISSING_CATEGORY_FILL = "__missing__"


class MissingFeatureColumnsError(KeyError):
    """A frame lacks columns the feature spec needs (a KeyError, so callers catching KeyError still work)."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(missing)
        self.missing = missing

    def __str__(self) -> str:
        return f"feature columns missing from frame: {', '.join(self.missing)}"


class FeatureTypeError(ValueError):
    """A numeric feature column holds values that are not numbers."""


def prepare_frame(df: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Select the spec's columns in spec order, numeric as float32 and categorical as str.

    float32 BEFORE fitting is what gives ONNX parity: trees learn split thresholds on exactly the values the
    float32 ONNX graph will compare, so exported probabilities match to ~1e-7 instead of ~0.02. Every consumer
    (training, evaluation, ONNX feeds) goes through this one function so the dtypes cannot drift apart.
    """
    missing = [column for column in spec.columns if column not in df.columns]
    if missing:
        raise MissingFeatureColumnsError(missing)
    prepared = {column: _as_float32(df[column], column) for column in spec.numeric}
    prepared |= {column: _as_category_strings(df[column]) for column in spec.categorical}
    return pd.DataFrame(prepared, index=df.index)


def build_preprocessor(spec: FeatureSpec, *, scale_numeric: bool = False) -> ColumnTransformer:
    """The one preprocessing definition, fitted inside every model so serving cannot skew from training.

    Numeric: median imputation (and, for linear models and the MLP, standardisation; never in front of trees,
    which gain nothing from it and would lose float32 parity). Categorical: the missing token becomes its own
    category, then one-hot with unknown categories ignored (all zeros) so a new carrier cannot crash serving.
    Output is dense float32, the dtype the ONNX graph and the torch MLP both compute in.
    """
    numeric_steps: list[tuple[str, TransformerMixin]] = [("impute", SimpleImputer(strategy="median"))]
    if scale_numeric:
        numeric_steps.append(("scale", StandardScaler()))
    categorical_imputer = SimpleImputer(
        strategy="constant", missing_values=MISSING_CATEGORY, fill_value=MISSING_CATEGORY_FILL
    )
    categorical_steps: list[tuple[str, TransformerMixin]] = [
        ("impute", categorical_imputer),
        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32)),
    ]
    transformers = []
    if spec.numeric:
        transformers.append(("numeric", Pipeline(numeric_steps), list(spec.numeric)))
    if spec.categorical:
        transformers.append(("categorical", Pipeline(categorical_steps), list(spec.categorical)))
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)


def _as_float32(values: pd.Series, column: str) -> pd.Series:
    if not (is_numeric_dtype(values) or is_bool_dtype(values)):
        try:
            values = pd.to_numeric(values, errors="raise")
        except (ValueError, TypeError) as error:
            raise FeatureTypeError(f"numeric feature {column!r} holds non-numeric values ({error})") from None
    return values.astype(np.float32)


def _as_category_strings(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), MISSING_CATEGORY).astype(str)
