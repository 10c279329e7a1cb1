"""Lineage: code (git), environment and the RunRecord the lead logs to MLflow."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from pipelines import lineage
from pipelines.features import FeatureSpec
from pipelines.lineage import (
    DataLineage,
    FeatureLineage,
    Governance,
    RunRecord,
    code_lineage,
    environment_lineage,
)
from pipelines.training.config import MLPConfig, default_training_config


def git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-C", str(repo), *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "train.py").write_text("print('v1')\n")
    git(tmp_path, "add", "train.py")
    git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_clean_checkout_gives_commit_branch_and_not_dirty(repo: Path) -> None:
    code = code_lineage(repo)
    assert code.commit == git(repo, "rev-parse", "HEAD") and len(code.commit) == 40
    assert (code.branch, code.dirty, code.problem) == ("main", False, None)


def test_a_subdirectory_reports_its_repository(repo: Path) -> None:
    (repo / "pipelines").mkdir()
    assert code_lineage(repo / "pipelines").commit == git(repo, "rev-parse", "HEAD")


@pytest.mark.parametrize("change", ["modified", "untracked"])
def test_uncommitted_changes_make_the_checkout_dirty(repo: Path, change: str) -> None:
    target = repo / ("train.py" if change == "modified" else "new_feature.py")
    target.write_text("print('v2')\n")
    assert code_lineage(repo).dirty is True


def test_detached_head_has_no_branch(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    code = code_lineage(repo)
    assert code.branch is None and code.commit == git(repo, "rev-parse", "HEAD")


def test_repository_without_commits_says_so(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    code = code_lineage(tmp_path)
    assert (code.commit, code.branch) == (None, "main")
    assert code.problem == "the repository has no commit yet"


def test_not_a_repository_is_a_clear_result_not_an_error(tmp_path: Path) -> None:
    code = code_lineage(tmp_path)
    assert (code.commit, code.branch, code.dirty) == (None, None, None)
    assert code.problem == f"{tmp_path} is not inside a git work tree"


def test_environment_lineage_reports_versions_hardware_and_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lineage, "KEY_PACKAGES", ("numpy", "surely-not-installed-pkg"))
    monkeypatch.setenv("FACTORY_IMAGE_DIGEST", "sha256:" + "ab" * 32)

    environment = environment_lineage()

    assert environment.python == platform.python_version()
    assert environment.packages == {"numpy": np.__version__, "surely-not-installed-pkg": None}
    assert environment.cpu_count >= 1
    assert environment.image_digest == "sha256:" + "ab" * 32


def test_no_image_digest_outside_a_container(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACTORY_IMAGE_DIGEST", raising=False)
    assert environment_lineage().image_digest is None


def make_record(repo: Path) -> RunRecord:
    spec = FeatureSpec(numeric=["dep_delay"], categorical=["carrier"])
    return RunRecord(
        code=code_lineage(repo),
        data=DataLineage(dataset="flights", spec_version="1", snapshot_id="f" * 64, split_rows={"train": 10}),
        features=FeatureLineage.from_spec(spec),
        config=default_training_config("mlp"),
        environment=environment_lineage(),
        metrics={"roc_auc": 0.81, "f1": None},
        artifacts={"onnx": "s3://models/flights/1/model.onnx"},
        governance=Governance(owner="data-science", risk_notes=["trained on Q1 only"]),
    )


def test_run_record_round_trips_through_json_keeping_the_config_kind(repo: Path) -> None:
    record = make_record(repo)

    restored = RunRecord.model_validate_json(record.model_dump_json())

    assert restored == record
    assert isinstance(restored.config, MLPConfig)
    assert restored.governance.review_status == "pending"


def test_run_record_tags_identify_the_run(repo: Path) -> None:
    record = make_record(repo)
    tags = record.tags()
    assert tags["code.commit"] == git(repo, "rev-parse", "HEAD")
    assert tags["code.dirty"] == "false"
    assert tags["features.version"] == FeatureSpec(numeric=["dep_delay"], categorical=["carrier"]).version
    assert tags["config.kind"] == "mlp" and tags["data.snapshot_id"] == "f" * 64
    assert all(isinstance(value, str) for value in tags.values())


def test_run_record_rejects_unknown_sections_and_review_states(repo: Path) -> None:
    data = make_record(repo).model_dump()
    with pytest.raises(ValidationError, match="notes\n  Extra inputs are not permitted"):
        RunRecord.model_validate({**data, "notes": "x"})
    with pytest.raises(ValidationError, match="review_status\n  Input should be 'pending', 'approved' or 'rejected'"):
        Governance(owner="me", review_status="maybe")
