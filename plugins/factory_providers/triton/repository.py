"""Publish a model's files into the S3 model repository Triton loads from."""

from __future__ import annotations

from collections.abc import Mapping

from factory_providers.s3.hooks import FactoryS3Hook


def publish_model_files(
    s3: FactoryS3Hook, bucket: str, prefix: str, model: str, files: Mapping[str, bytes]
) -> list[str]:
    """Write `files` under <prefix>/<model>/ and return the keys. config.pbtxt goes last, so Triton never sees a
    model directory whose config points at missing version files."""
    ordered = sorted(files, key=lambda path: path == "config.pbtxt")
    keys = []
    for relative in ordered:
        key = f"{prefix}/{model}/{relative}"
        s3.load_bytes(files[relative], key=key, bucket_name=bucket, replace=True)
        keys.append(key)
    return keys
