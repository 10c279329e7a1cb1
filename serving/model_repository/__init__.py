"""Triton model-repository builder: ONNX + signature -> config.pbtxt, version folder and sha256 manifest.

Modules: `config` (RepositoryConfig, config.pbtxt for the `gpu` and `cpu-local` profiles), `builder`
(`build_model_repository`, pure: returns {relative path: bytes}), `manifest` (sha256 manifest and
`verify_manifest`), `upload` (`plan_upload`: write-once version folders), `python_backend/` (the files a
cpu-local version folder ships), `local_server` (a private tritonserver for tests and benchmarks).
"""

from serving.model_repository.builder import build_model_repository
from serving.model_repository.config import (
    Profile,
    RepositoryConfig,
    RepositoryConfigError,
    model_config_pbtxt,
    repository_config_from,
)
from serving.model_repository.manifest import ManifestMismatch, RepositoryManifest, verify_manifest
from serving.model_repository.upload import UploadPlan, VersionFolderConflict, plan_upload

__all__ = [
    "ManifestMismatch",
    "Profile",
    "RepositoryConfig",
    "RepositoryConfigError",
    "RepositoryManifest",
    "UploadPlan",
    "VersionFolderConflict",
    "build_model_repository",
    "model_config_pbtxt",
    "plan_upload",
    "repository_config_from",
    "verify_manifest",
]
