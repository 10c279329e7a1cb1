"""I/O of the feedback ingestion: labels from the feedback landing area, logged predictions, the served
versions' training-time metrics (MLflow), and the factory_drift verdicts of the serving period (S3).

Layouts: labels `pipelines.monitoring.replay`, predictions `pipelines.monitoring.inference_log`, drift
reports `pipelines.monitoring.monitor`. The decisions are in `pipelines.monitoring.feedback`.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from factory_providers.s3.hooks import FactoryS3Hook

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.monitoring.feedback import DriftWindow

log = logging.getLogger(__name__)
DATA_BUCKET = "factory-data"


def read_labels(
    model: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    bucket: str = DATA_BUCKET,
    hook: FactoryS3Hook | None = None,
) -> pd.DataFrame:
    """Label records of `model` that landed in [start, end) (every label when no window is given)."""
    import pandas as pd

    from pipelines.monitoring.inference_log import decode_parquet
    from pipelines.monitoring.replay import LABEL_COLUMNS, check_label_frame, label_partitions, labels_prefix

    s3 = hook or FactoryS3Hook()
    if start is not None and end is not None:
        partitions = label_partitions(model, start, end)
    else:
        partitions = [labels_prefix(model)]
    keys = sorted(key for prefix in partitions for key in s3.list_keys(bucket_name=bucket, prefix=prefix) or [])
    frames = [
        check_label_frame(decode_parquet(s3.get_key(key, bucket_name=bucket).get()["Body"].read()), key)
        for key in keys
        if key.endswith(".parquet")
    ]
    if not frames:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in LABEL_COLUMNS})
    labels = pd.concat(frames, ignore_index=True)
    if start is not None and end is not None:
        landed = labels["label_time"]
        labels = labels[(landed >= pd.Timestamp(start)) & (landed < pd.Timestamp(end))].reset_index(drop=True)
    return labels


def read_predictions(
    model: str, *, start: datetime, end: datetime, bucket: str, prefix: str, hook: FactoryS3Hook | None = None
) -> pd.DataFrame:
    """Every logged prediction row of `model` with `start <= timestamp < end`, all columns."""
    from factory_providers.monitoring.window import read_logged_objects
    from pipelines.monitoring.inference_log import logged_frame

    pieces = read_logged_objects(bucket=bucket, prefix=prefix, model=model, start=start, end=end, hook=hook)
    return logged_frame(pieces, start, end)


def training_metrics(client: Any, model_name: str, versions: list[str]) -> tuple[dict[str, dict | None], list[str]]:
    """Each version's training-run metrics (MLflow), and a note per version whose run cannot be read."""
    metrics: dict[str, dict | None] = {}
    notes = []
    for version in versions:
        try:
            run_id = client.get_model_version(model_name, version).run_id
            metrics[version] = dict(client.get_run(run_id).data.metrics)
        except Exception as error:  # an unknown version or a deleted run: that version is not judged
            metrics[version] = None
            notes.append(f"v{version}: training metrics unavailable ({type(error).__name__}: {error})"[:300])
    return metrics, notes


def drift_windows(
    dataset: str, model_name: str, start: datetime, end: datetime, *, bucket: str = DATA_BUCKET,
    hook: FactoryS3Hook | None = None,
) -> list[DriftWindow]:  # fmt: skip
    """factory_drift's verdicts (monitor.json) for the windows overlapping [start, end)."""
    from pipelines.monitoring.feedback import DriftWindow
    from pipelines.monitoring.monitor import model_prefix, parse_window_id

    s3 = hook or FactoryS3Hook()
    folder = f"{model_prefix(dataset, model_name)}/drift/"
    windows = []
    for key in s3.list_keys(bucket_name=bucket, prefix=folder) or []:
        if not key.endswith("/monitor.json"):
            continue
        bounds = parse_window_id(key.removeprefix(folder).split("/", 1)[0])
        if bounds is None or bounds[1] <= start or bounds[0] >= end:
            continue
        monitor = json.loads(s3.read_key(key, bucket_name=bucket))
        windows.append(
            DriftWindow(
                interval_start=monitor["interval_start"],
                interval_end=monitor["interval_end"],
                verdict=monitor["verdict"],
                drifted_features=monitor.get("drifted_features", []),
            )
        )
    return windows
