"""Read a content-addressed snapshot back from S3, hash-verified, for any task that trains or scores on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from factory_providers.s3.hooks import FactoryS3Hook

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.snapshots import SnapshotManifest


class SnapshotMissingError(FileNotFoundError):
    """The snapshot a run needs is not in S3 (deleted, or never completed): nothing can be re-trained from it."""


def read_snapshot(
    dataset: str, snapshot_id: str, hook: FactoryS3Hook | None = None
) -> tuple[SnapshotManifest, pd.DataFrame]:
    """The snapshot's manifest and rows; a changed object fails here (hash check), not later in training."""
    from pipelines.assembly import DATA_BUCKET, snapshot_keys
    from pipelines.snapshots import SnapshotManifest, load_snapshot

    s3 = hook or FactoryS3Hook()
    keys = snapshot_keys(dataset, snapshot_id)
    for key in (keys.manifest, keys.data):
        if not s3.check_for_key(key, bucket_name=DATA_BUCKET):
            raise SnapshotMissingError(
                f"snapshot {snapshot_id[:12]} of {dataset!r} is incomplete: s3://{DATA_BUCKET}/{key} is missing"
            )
    manifest = SnapshotManifest.model_validate_json(s3.read_key(keys.manifest, bucket_name=DATA_BUCKET))
    data = s3.get_key(keys.data, bucket_name=DATA_BUCKET).get()["Body"].read()
    return manifest, load_snapshot(data, manifest)
