"""Decide what to upload so that version folders stay write-once and a repeated deploy is a no-op.

A served version must never change under the same number: the registry version, the manifest and what Triton
loads would disagree. So a version folder that already exists may only be completed (an earlier upload died
halfway) with byte-identical files; anything else is refused. Files outside version folders (config.pbtxt)
are mutable by design: the live-version list changes on every promotion and rollback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from serving.model_repository.builder import CONFIG_FILE
from serving.model_repository.manifest import MANIFEST_FILE


class VersionFolderConflict(ValueError):
    """Uploading would change an existing, immutable version folder; `path` is the conflicting file."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}; version folders are immutable, register and deploy a new version instead")
        self.path = path


@dataclass(frozen=True)
class UploadPlan:
    """`writes` in the order to upload them; `unchanged` are already stored with identical content."""

    writes: tuple[str, ...]
    unchanged: tuple[str, ...]


def plan_upload(existing_keys: Mapping[str, bytes], files: Mapping[str, bytes]) -> UploadPlan:
    """Compare built `files` with what the repository holds (`existing_keys`: relative path -> stored bytes).

    Contents are read only for keys in a version folder being uploaded or for paths both sides share, so a
    lazy mapping (keys from one listing, bytes fetched on access) costs one GET per key that needs comparing.
    Write order: version files, then each folder's manifest.json (its presence marks a complete folder), then
    config.pbtxt last, so Triton never sees a config naming a version whose files are not all there.
    """
    # Membership on a key set: Mapping.__contains__ would fetch the content through __getitem__.
    stored = set(existing_keys)
    touched_folders = {_version_folder(path) for path in files} - {None}
    for key in sorted(stored):
        if _version_folder(key) in touched_folders and key not in files:
            raise VersionFolderConflict(key, "exists in the repository but not in this build")
    writes, unchanged = [], []
    for path in sorted(files, key=_upload_rank):
        if path not in stored:
            writes.append(path)
        elif existing_keys[path] == files[path]:
            unchanged.append(path)
        elif _version_folder(path) is None:
            writes.append(path)
        else:
            raise VersionFolderConflict(path, "already exists with different content")
    return UploadPlan(writes=tuple(writes), unchanged=tuple(unchanged))


def _version_folder(path: str) -> str | None:
    """'<model>/<version>' for a file in a version folder; None for model-level files (config.pbtxt)."""
    parts = path.split("/")
    return "/".join(parts[:2]) if len(parts) >= 3 else None


def _upload_rank(path: str) -> tuple[int, str]:
    name = path.rsplit("/", 1)[-1]
    if name == CONFIG_FILE and _version_folder(path) is None:
        return (2, path)
    return (1 if name == MANIFEST_FILE else 0, path)
