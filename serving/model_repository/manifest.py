"""The sha256 manifest of a version folder: what was built, and proof that what is about to load is it.

`<model>/<version>/manifest.json` lists every other file of the version folder with its sha256, plus the model
name, version, serving signature and profile. `verify_manifest` runs before a deploy loads a version: a file
changed, missing or added after the build (a tampered artifact, a half-finished upload) stops the deploy
with the file named. `config.pbtxt` is outside the version folder and not listed: it is regenerated on every
deploy (its live versions change with each promotion or rollback).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, ValidationError

from pipelines.export.signature import ModelSignature
from serving.model_repository.config import Profile

MANIFEST_FILE = "manifest.json"


class ManifestMismatch(ValueError):
    """A version folder does not match its manifest; `path` is the offending file (repository-relative)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


class RepositoryManifest(BaseModel):
    """Contents of manifest.json. `files` maps paths relative to the version folder to sha256 hex digests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    version: int
    profile: Profile
    signature: ModelSignature
    files: dict[str, str]

    def to_bytes(self) -> bytes:
        """Deterministic JSON: the same build gives a byte-identical manifest (idempotent uploads)."""
        return (json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode()


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def build_manifest(
    model: str, version: int, profile: Profile, signature: ModelSignature, version_files: Mapping[str, bytes]
) -> RepositoryManifest:
    """The manifest of a version folder whose files (relative to the folder) are `version_files`."""
    return RepositoryManifest(
        model=model,
        version=version,
        profile=profile,
        signature=signature,
        files={path: sha256_hex(content) for path, content in sorted(version_files.items())},
    )


def verify_manifest(files: Mapping[str, bytes]) -> None:
    """Check every version folder in `files` ({'<model>/<version>/<file>': bytes}) against its manifest.

    Returns None when each folder holds exactly the files its manifest lists, with matching sha256, and the
    manifest names that model and version. Otherwise raises ManifestMismatch naming the first bad file.
    """
    folders: dict[tuple[str, str], dict[str, bytes]] = defaultdict(dict)
    for path, content in files.items():
        parts = path.split("/", 2)
        if len(parts) == 3:
            model, version, relative = parts
            folders[(model, version)][relative] = content
    if not folders:
        raise ManifestMismatch("<files>", "no version folder to verify")
    for (model, version), folder in sorted(folders.items()):
        _verify_folder(f"{model}/{version}", model, version, folder)


def _verify_folder(prefix: str, model: str, version: str, folder: Mapping[str, bytes]) -> None:
    manifest_path = f"{prefix}/{MANIFEST_FILE}"
    if MANIFEST_FILE not in folder:
        raise ManifestMismatch(manifest_path, "missing: the version folder cannot be verified")
    try:
        manifest = RepositoryManifest.model_validate_json(folder[MANIFEST_FILE])
    except ValidationError as error:
        raise ManifestMismatch(manifest_path, f"not a valid manifest ({error.error_count()} errors)") from None
    if (manifest.model, str(manifest.version)) != (model, version):
        raise ManifestMismatch(manifest_path, f"describes {manifest.model}/{manifest.version}, but sits in {prefix}")
    for relative, expected in sorted(manifest.files.items()):
        if relative not in folder:
            raise ManifestMismatch(f"{prefix}/{relative}", "listed in the manifest but missing")
        if sha256_hex(folder[relative]) != expected:
            raise ManifestMismatch(f"{prefix}/{relative}", "sha256 differs from the manifest (tampered artifact)")
    unlisted = sorted(set(folder) - set(manifest.files) - {MANIFEST_FILE})
    if unlisted:
        raise ManifestMismatch(f"{prefix}/{unlisted[0]}", "not listed in the manifest")
