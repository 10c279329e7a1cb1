"""Read one window of the gateway's inference log from S3 (layout: `pipelines.monitoring.inference_log`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from factory_providers.s3.hooks import FactoryS3Hook

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.features import FeatureSpec
    from pipelines.monitoring.inference_log import InferenceWindow


def read_logged_objects(
    *,
    bucket: str,
    prefix: str,
    model: str,
    start: datetime,
    end: datetime,
    slack: timedelta | None = None,
    hook: FactoryS3Hook | None = None,
) -> list[tuple[str, pd.DataFrame]]:
    """(key, frame) of every prediction object flushed in [start, end + slack), in flush order."""
    from pipelines.monitoring.inference_log import FLUSH_SLACK, date_prefixes, decode_parquet, objects_in_window

    s3 = hook or FactoryS3Hook()
    slack = FLUSH_SLACK if slack is None else slack
    keys: list[str] = []
    for partition in date_prefixes(prefix, model, start, end, slack=slack):
        keys += s3.list_keys(bucket_name=bucket, prefix=partition) or []
    objects = objects_in_window(keys, start, end, slack=slack)
    return [(obj.key, decode_parquet(s3.get_key(obj.key, bucket_name=bucket).get()["Body"].read())) for obj in objects]


def read_window(
    *,
    bucket: str,
    prefix: str,
    model: str,
    spec: FeatureSpec,
    start: datetime,
    end: datetime,
    slack: timedelta | None = None,
    hook: FactoryS3Hook | None = None,
) -> InferenceWindow:
    """Logged rows with `start <= timestamp < end`; no object in the window gives an empty window, not an error."""
    from pipelines.monitoring.inference_log import window_frame

    pieces = read_logged_objects(
        bucket=bucket, prefix=prefix, model=model, start=start, end=end, slack=slack, hook=hook
    )
    return window_frame(pieces, spec, start, end)
