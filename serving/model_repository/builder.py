"""Build a model's Triton repository files from its ONNX graph: pure, returns {relative path: bytes}.

Layout (the version folder equals the registry version, so a served version is traceable to MLflow):

    <model>/config.pbtxt                     regenerated each deploy: serves the live versions
    <model>/<version>/model.onnx             the exported graph
    <model>/<version>/model.py               cpu-local only: python-backend entry point
    <model>/<version>/factory_onnx_batching.py   cpu-local only: the batching logic model.py delegates to
    <model>/<version>/manifest.json          sha256 of every other file of the folder

No I/O to S3 here: the deploy task uploads these bytes (see `plan_upload` for write-once version folders).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

from pipelines.export.signature import ModelSignature, SignatureError, read_onnx_signature
from serving.model_repository.config import (
    Profile,
    RepositoryConfig,
    check_live_versions,
    model_config_pbtxt,
)
from serving.model_repository.manifest import MANIFEST_FILE, build_manifest

CONFIG_FILE = "config.pbtxt"
ONNX_FILE = "model.onnx"
# Shipped verbatim from serving/model_repository/python_backend/: identical bytes for every build.
PYTHON_BACKEND_FILES = ("model.py", "factory_onnx_batching.py")


def build_model_repository(
    onnx_model: bytes,
    signature: ModelSignature,
    model_name: str,
    version: int,
    *,
    live_versions: Sequence[int] | None = None,
    profile: Profile = "cpu-local",
    config: RepositoryConfig | None = None,
) -> dict[str, bytes]:
    """All files of `model_name` v`version`, plus the config serving `live_versions` (default: only it).

    The graph must declare `signature` (the config is generated from it, so a mismatch would only surface as a
    failed load on the server). `version` must be among `live_versions`: a build exists to be served.
    """
    live = check_live_versions([version] if live_versions is None else live_versions)
    if version not in live:
        raise ValueError(f"version {version} is not among the live versions {live}")
    declared = read_onnx_signature(onnx_model)
    if declared != signature:
        raise SignatureError(f"{model_name} v{version}: ONNX graph declares {declared}, expected {signature}")
    config_text = model_config_pbtxt(model_name, signature, live, profile, config or RepositoryConfig())
    version_files = {ONNX_FILE: onnx_model}
    if profile == "cpu-local":
        version_files |= python_backend_files()
    manifest = build_manifest(model_name, version, profile, signature, version_files)
    version_files[MANIFEST_FILE] = manifest.to_bytes()
    files = {f"{model_name}/{version}/{name}": content for name, content in version_files.items()}
    files[f"{model_name}/{CONFIG_FILE}"] = config_text.encode()
    return files


def python_backend_files() -> dict[str, bytes]:
    """The python-backend sources copied into every cpu-local version folder."""
    package = resources.files("serving.model_repository.python_backend")
    return {name: package.joinpath(name).read_bytes() for name in PYTHON_BACKEND_FILES}
