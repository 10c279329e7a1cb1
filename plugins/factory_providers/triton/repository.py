"""The S3 model repository Triton loads from: write-once version folders, a mutable config, verified reads.

Keys are `<prefix>/<model>/<relative path>`, where the relative path is what `build_model_repository` returns
(`<model>/config.pbtxt` is the file that names the live versions; `<model>/<version>/...` never change).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from factory_providers.s3.hooks import FactoryS3Hook
from serving.model_repository import UploadPlan, plan_upload, verify_manifest
from serving.model_repository.builder import CONFIG_FILE
from serving.model_repository.manifest import MANIFEST_FILE

T = TypeVar("T")


class RepositoryStoreError(RuntimeError):
    """S3 could not be read or written; the message names the endpoint or key. Nothing was half-written."""


class StoredFiles(Mapping[str, bytes]):
    """The model's files in S3 as {relative path: bytes}: keys from one listing, bytes fetched on access.

    `plan_upload` only reads what it must compare, so a deploy that changes one config costs one listing and
    a handful of GETs, not a download of every version folder.
    """

    def __init__(self, s3: FactoryS3Hook, bucket: str, prefix: str, model: str) -> None:
        self.s3, self.bucket, self.prefix = s3, bucket, prefix
        listed = _call(f"listing s3://{bucket}/{prefix}/{model}/", lambda: s3.list_keys(bucket, f"{prefix}/{model}/"))
        self._keys = sorted(key.removeprefix(f"{prefix}/") for key in listed)

    def __getitem__(self, relative: str) -> bytes:
        if relative not in self._keys:
            raise KeyError(relative)
        key = f"{self.prefix}/{relative}"
        body = _call(f"reading s3://{self.bucket}/{key}", lambda: self.s3.get_key(key, self.bucket).get()["Body"])
        return body.read()

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def versions(self, model: str) -> set[int]:
        """Versions whose folder is complete (its manifest is written last, so it marks completeness)."""
        found = set()
        for relative in self._keys:
            parts = relative.split("/")
            if len(parts) == 3 and parts[0] == model and parts[2] == MANIFEST_FILE and parts[1].isdigit():
                found.add(int(parts[1]))
        return found

    def config(self, model: str) -> bytes | None:
        path = f"{model}/{CONFIG_FILE}"
        return self[path] if path in self._keys else None


def upload(s3: FactoryS3Hook, bucket: str, prefix: str, stored: StoredFiles, files: Mapping[str, bytes]) -> UploadPlan:
    """Write what `plan_upload` says, in its order (version files, manifests, config last): write-once and
    idempotent, so a retried deploy writes only what an interrupted one left out."""
    plan = plan_upload(stored, files)
    for relative in plan.writes:
        key = f"{prefix}/{relative}"
        data = files[relative]
        _call(f"writing s3://{bucket}/{key}", lambda: s3.load_bytes(data, key=key, bucket_name=bucket, replace=True))  # noqa: B023
    return plan


def write_config(s3: FactoryS3Hook, bucket: str, prefix: str, model: str, config: bytes) -> None:
    key = f"{prefix}/{model}/{CONFIG_FILE}"
    _call(f"writing s3://{bucket}/{key}", lambda: s3.load_bytes(config, key=key, bucket_name=bucket, replace=True))


def verify_versions(stored: StoredFiles, model: str, versions: Sequence[int]) -> None:
    """Every file of these version folders, as stored, against its sha256 manifest (ManifestMismatch if not)."""
    wanted = tuple(f"{model}/{version}/" for version in versions)
    verify_manifest({relative: stored[relative] for relative in stored if relative.startswith(wanted)})


def _call(what: str, operation: Callable[[], T]) -> T:
    try:
        return operation()
    except (BotoCoreError, ClientError) as error:
        raise RepositoryStoreError(f"S3 failed {what}: {error}") from None


def publish_model_files(
    s3: FactoryS3Hook, bucket: str, prefix: str, model: str, files: Mapping[str, bytes]
) -> list[str]:
    """Write `files` under <prefix>/<model>/ and return the keys (the smoke model: rebuilt, not versioned).
    config.pbtxt goes last, so Triton never sees a model directory whose config points at missing files."""
    ordered = sorted(files, key=lambda path: path == "config.pbtxt")
    keys = []
    for relative in ordered:
        key = f"{prefix}/{model}/{relative}"
        s3.load_bytes(files[relative], key=key, bucket_name=bucket, replace=True)
        keys.append(key)
    return keys
