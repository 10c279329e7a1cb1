"""Evidently 0.7 DataDriftPreset for humans: an HTML report on a bounded sample, plus per-feature verdicts.

Evidently takes ~15 s on 100k x 20 and seconds to import, so it never runs on the hourly hot path: the fast
path decides, and this report is rendered for people (and used in tests to prove the two agree). Evidently is
imported inside the functions so importing this module stays cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from pipelines.features import FeatureSpec
from pipelines.monitoring.profile import ColumnTypes, as_feature_spec
from pipelines.monitoring.report import StatTestName

# Evidently reports a test by its display name; these are the ones DataDriftPreset picks by default.
EVIDENTLY_TEST_NAMES: dict[str, StatTestName] = {
    "Wasserstein distance (normed)": "wasserstein_normed",
    "Jensen-Shannon distance": "jensenshannon",
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
}


class EvidentlyVerdict(BaseModel):
    """Evidently's decision for one column, in the fast path's vocabulary."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    test: StatTestName
    statistic: float
    threshold: float
    drifted: bool


def evidently_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    column_types: ColumnTypes,
    *,
    html_path: str | Path,
    sample_size: int = 20_000,
    seed: int = 0,
) -> tuple[Path, dict[str, Any]]:
    """Render DataDriftPreset on at most `sample_size` rows of each frame; return the HTML path and JSON."""
    html_path = Path(html_path)
    snapshot = _run_data_drift(
        _bounded_sample(reference, sample_size, seed),
        _bounded_sample(current, sample_size, seed),
        column_types,
    )
    html_path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(html_path))
    return html_path, json.loads(snapshot.json())


def run_evidently_drift(reference: pd.DataFrame, current: pd.DataFrame, column_types: ColumnTypes) -> dict[str, Any]:
    """DataDriftPreset's JSON on the frames as given (no sampling): the yardstick for the fast path."""
    return json.loads(_run_data_drift(reference, current, column_types).json())


def evidently_feature_verdicts(report: dict[str, Any]) -> dict[str, EvidentlyVerdict]:
    """Per-column verdicts from a DataDriftPreset JSON (its ValueDrift metrics and their tests)."""
    scores = {
        metric["id"]: metric["value"]
        for metric in report.get("metrics", [])
        if metric.get("config", {}).get("type") == "evidently:metric_v2:ValueDrift"
    }
    verdicts: dict[str, EvidentlyVerdict] = {}
    for test in report.get("tests", []):
        config = test["metric_config"]
        params = config["params"]
        if params.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        method = params["method"]
        if method not in EVIDENTLY_TEST_NAMES:
            raise ValueError(f"Evidently used test {method!r} for column {params['column']!r}: no fast-path twin")
        verdicts[params["column"]] = EvidentlyVerdict(
            column=params["column"],
            test=EVIDENTLY_TEST_NAMES[method],
            statistic=scores[config["metric_id"]],
            threshold=params["threshold"],
            drifted=test["status"] == "FAIL",
        )
    if not verdicts:
        raise ValueError("no ValueDrift tests in the report: was it run with include_tests=True?")
    return verdicts


def comparable_columns(reference: pd.DataFrame, current: pd.DataFrame, spec: FeatureSpec) -> FeatureSpec:
    """Spec columns Evidently can test: present in both frames, numeric where declared numeric, and not empty.

    Evidently raises on any other column and aborts the whole report; the fast path reports those as schema
    findings or null surges instead, so leaving them out of the human report loses nothing.
    """

    def usable(name: str, numeric: bool) -> bool:
        if name not in reference.columns or name not in current.columns:
            return False
        columns = (reference[name], current[name])
        if numeric:
            return all(
                pd.api.types.is_numeric_dtype(column) and np.isfinite(column.to_numpy(float, na_value=np.nan)).any()
                for column in columns
            )
        return all(column.notna().any() for column in columns)

    return FeatureSpec(
        numeric=[name for name in spec.numeric if usable(name, numeric=True)],
        categorical=[name for name in spec.categorical if usable(name, numeric=False)],
    )


def _run_data_drift(reference: pd.DataFrame, current: pd.DataFrame, column_types: ColumnTypes) -> Any:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    spec = comparable_columns(reference, current, as_feature_spec(column_types))
    definition = DataDefinition(numerical_columns=spec.numeric, categorical_columns=spec.categorical)
    columns = spec.columns
    report = Report([DataDriftPreset(columns=columns)], include_tests=True)
    return report.run(
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
    )


def _bounded_sample(frame: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= size else frame.sample(n=size, random_state=seed)
