"""Lineage of a training run: which code, data, features, config and environment produced a model.

`RunRecord` gathers it all in one pydantic record that the lead's MLflow adapter logs (tags for the
identifying fields, the full record as JSON), so any registered model can be traced back and re-built.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import subprocess
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.features import FeatureSpec
from pipelines.training.config import TrainingConfig

# The distributions whose versions change what a model computes or how it is served.
KEY_PACKAGES = (
    "numpy",
    "pandas",
    "scikit-learn",
    "torch",
    "onnx",
    "onnxruntime",
    "skl2onnx",
    "onnxscript",
    "pydantic",
    "mlflow",
    "apache-airflow",
    "great-expectations",
    "evidently",
)
IMAGE_DIGEST_ENV = "FACTORY_IMAGE_DIGEST"
_GIT_TIMEOUT_S = 10


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CodeLineage(_Record):
    """The commit a run was trained from; fields are None (with `problem` saying why) when unknown."""

    commit: str | None
    branch: str | None  # None on a detached HEAD
    dirty: bool | None  # uncommitted or untracked changes: the commit alone does not reproduce the run
    problem: str | None = None


class EnvironmentLineage(_Record):
    python: str
    platform: str
    packages: dict[str, str | None]  # None: not installed
    cpu_count: int | None
    cuda_available: bool
    image_digest: str | None


class DataLineage(_Record):
    """The snapshot the run read (content-addressed id, see pipelines.snapshots) and the split sizes."""

    dataset: str
    spec_version: str
    snapshot_id: str
    snapshot_uri: str | None = None
    split_rows: dict[str, int] = Field(default_factory=dict)


class FeatureLineage(_Record):
    version: str
    numeric: list[str]
    categorical: list[str]

    @classmethod
    def from_spec(cls, spec: FeatureSpec) -> FeatureLineage:
        return cls(version=spec.version, numeric=spec.numeric, categorical=spec.categorical)


class Governance(_Record):
    owner: str
    review_status: Literal["pending", "approved", "rejected"] = "pending"
    risk_notes: list[str] = Field(default_factory=list)


class RunRecord(_Record):
    code: CodeLineage
    data: DataLineage
    features: FeatureLineage
    config: TrainingConfig
    environment: EnvironmentLineage
    metrics: dict[str, float | None]
    artifacts: dict[str, str]  # name -> URI
    governance: Governance

    def tags(self) -> dict[str, str]:
        """The identifying fields as flat string tags (searchable in MLflow); the rest goes in the JSON."""
        return {
            "code.commit": self.code.commit or "unknown",
            "code.dirty": str(self.code.dirty).lower(),
            "data.dataset": self.data.dataset,
            "data.snapshot_id": self.data.snapshot_id,
            "features.version": self.features.version,
            "config.kind": self.config.kind,
            "environment.image_digest": self.environment.image_digest or "none",
            "governance.owner": self.governance.owner,
            "governance.review_status": self.governance.review_status,
        }


def code_lineage(repo_dir: Path) -> CodeLineage:
    """Commit SHA, branch and dirty flag of the git checkout containing `repo_dir`."""
    try:
        inside = _git(repo_dir, "rev-parse", "--is-inside-work-tree")
    except FileNotFoundError:
        return CodeLineage(commit=None, branch=None, dirty=None, problem="git is not installed")
    except subprocess.TimeoutExpired:
        return CodeLineage(commit=None, branch=None, dirty=None, problem="git did not answer in time")
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return CodeLineage(commit=None, branch=None, dirty=None, problem=f"{repo_dir} is not inside a git work tree")
    head = _git(repo_dir, "rev-parse", "--verify", "-q", "HEAD")
    branch = _git(repo_dir, "symbolic-ref", "--short", "-q", "HEAD")
    status = _git(repo_dir, "status", "--porcelain")
    return CodeLineage(
        commit=head.stdout.strip() if head.returncode == 0 else None,
        branch=branch.stdout.strip() if branch.returncode == 0 else None,
        dirty=bool(status.stdout.strip()) if status.returncode == 0 else None,
        problem=None if head.returncode == 0 else "the repository has no commit yet",
    )


def environment_lineage() -> EnvironmentLineage:
    """Python, platform, key package versions, hardware and (in a container) the image digest."""
    return EnvironmentLineage(
        python=platform.python_version(),
        platform=platform.platform(),
        packages={name: _installed_version(name) for name in KEY_PACKAGES},
        cpu_count=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        cuda_available=_cuda_available(),
        image_digest=os.environ.get(IMAGE_DIGEST_ENV) or None,
    )


def _git(repo_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(repo_dir), *args],
        capture_output=True,
        text=True,
        timeout=_GIT_TIMEOUT_S,
        check=False,
    )


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cuda_available() -> bool:
    """Ask torch when it is installed (the training task has imported it already); no torch, no CUDA use."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())
