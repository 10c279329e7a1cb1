"""Gate policy YAML: the checked-in file loads, and every malformed policy fails naming the file and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.evaluation.metrics import MetricSet
from pipelines.gate.policy import (
    GATE_POLICY_PATH,
    METRIC_DIRECTIONS,
    METRIC_NAMES,
    ChangeRule,
    GatePolicyError,
    load_gate_policy,
)

MINIMAL: dict[str, Any] = {
    "name": "tiny",
    "version": "0.1.0",
    "changes": [{"metric": "roc_auc", "min_improvement": 0.001}],
}


def write(tmp_path: Path, policy: object) -> Path:
    path = tmp_path / "gate.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def test_checked_in_policy_loads_with_its_rules() -> None:
    policy = load_gate_policy()

    assert (policy.name, policy.version) == ("flights-delay-gate", "1.1.0")
    assert (policy.bootstrap.n_resamples, policy.bootstrap.confidence) == (1000, 0.95)
    assert policy.value_bounds["roc_auc"].min == 0.65  # the demo's Q1 model scores 0.710 (see the YAML)
    assert policy.approval.response_timeout_hours == 24
    assert [rule.metric for rule in policy.changes if rule.min_improvement] == ["roc_auc"]
    assert ("origin", "JFK") in policy.slices.critical_pairs()
    assert policy.serving.max_p99_ms == 10.0
    assert GATE_POLICY_PATH.name == "gate.yaml"


def test_metric_names_are_exactly_the_evaluation_headline_metrics() -> None:
    headline = set(MetricSet.model_fields) - {"n", "positives", "threshold", "undefined"}
    assert set(METRIC_NAMES) == headline == set(METRIC_DIRECTIONS)


def test_minimal_policy_gets_documented_defaults(tmp_path: Path) -> None:
    policy = load_gate_policy(write(tmp_path, MINIMAL))

    assert policy.decision_threshold == 0.5 and policy.calibration_bins == 10
    assert policy.slices.min_size == 500 and policy.slices.critical == []
    assert policy.serving.max_p50_ms is None and policy.approval.min_agreement is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"surprise": 1}, r"surprise: Extra inputs are not permitted"),
        ({"serving": {"max_p50": 3}}, r"serving\.max_p50: Extra inputs are not permitted"),
        (
            {"value_bounds": {"roc_auc": {"min": 0.9, "max": 0.8}}},
            r"value_bounds\.roc_auc: Value error, min \(0\.9\) is above max \(0\.8\)",
        ),
        ({"value_bounds": {"roc_auc": {}}}, r"value_bounds\.roc_auc: Value error, set min, max or both"),
        ({"value_bounds": {"auroc": {"min": 0.7}}}, r"value_bounds\.auroc \(key\): Input should be 'roc_auc'"),
        (
            {"changes": [{"metric": "rocauc", "min_improvement": 0.01}]},
            r"changes\[0\]\.metric: Input should be 'roc_auc'",
        ),
        (
            {"changes": [{"metric": "roc_auc", "min_improvement": 0.01, "direction": "lower_is_better"}]},
            r"changes\[0\]: Value error, direction: roc_auc is higher_is_better, the policy says lower_is_better",
        ),
        (
            {"changes": [{"metric": "log_loss", "max_regression": 0.01}]},
            r"changes: no rule sets min_improvement, so no challenger could ever be promoted",
        ),
        (
            {"changes": [{"metric": "roc_auc", "min_improvement": 0.01}, {"metric": "ece"}]},
            r"changes\[1\]: Value error, ece: set max_regression or max_relative_regression or min_improvement",
        ),
        (
            {"changes": [{"metric": "roc_auc", "min_improvement": 0.01}, {"metric": "roc_auc", "max_regression": 1}]},
            r"changes: listed more than once: roc_auc",
        ),
        ({"changes": []}, r"changes: List should have at least 1 item"),
        ({"bootstrap": {"confidence": 1.2}}, r"bootstrap\.confidence: Input should be less than 1"),
        ({"bootstrap": {"n_resamples": 10}}, r"bootstrap\.n_resamples: Input should be greater than or equal to 100"),
        (
            {"slices": {"regressions": [{"metric": "roc_auc", "max_regression": 0.02}]}},
            r"slices: Value error, regressions: apply to critical slices, but none are listed",
        ),
        (
            {"slices": {"regressions": [{"metric": "roc_auc", "min_improvement": 0.02}]}},
            r"slices\.regressions\[0\]\.min_improvement: Extra inputs are not permitted",
        ),
        (
            {"slices": {"critical": [{"column": "origin", "values": ["JFK", "JFK"]}]}},
            r"slices: Value error, critical: listed more than once: \('origin', 'JFK'\)",
        ),
        (
            {"agreement": {"min_share": 0.9}, "approval": {"min_agreement": 0.8}},
            r"approval\.min_agreement \(0\.8\) is below agreement\.min_share \(0\.9\): it could never fire",
        ),
        ({"decision_threshold": 1.5}, r"decision_threshold: Input should be less than 1"),
    ],
)
def test_malformed_policy_names_the_file_and_the_field(tmp_path: Path, change: dict, message: str) -> None:
    path = write(tmp_path, MINIMAL | change)

    with pytest.raises(GatePolicyError, match=message) as raised:
        load_gate_policy(path)

    assert str(raised.value).startswith(f"{path}: invalid gate policy: ")
    assert "Traceback" not in str(raised.value) and "pydantic" not in str(raised.value)


def test_unreadable_or_non_mapping_files_are_clear_errors(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    listed = write(tmp_path, ["name", "version"])

    with pytest.raises(GatePolicyError, match=r"absent\.yaml: cannot read gate policy"):
        load_gate_policy(missing)
    with pytest.raises(GatePolicyError, match=r"broken\.yaml: not valid YAML"):
        load_gate_policy(broken)
    with pytest.raises(GatePolicyError, match=r"gate\.yaml: a gate policy must be a mapping, got list"):
        load_gate_policy(listed)


def test_regression_tolerance_is_the_stricter_of_absolute_and_relative() -> None:
    both = ChangeRule(metric="log_loss", max_regression=0.01, max_relative_regression=0.02)
    relative = ChangeRule(metric="log_loss", max_relative_regression=0.02)
    target_only = ChangeRule(metric="roc_auc", min_improvement=0.001)

    assert both.tolerance(baseline=0.4) == pytest.approx(0.008)  # 2% of 0.4 is stricter than 0.01
    assert both.tolerance(baseline=0.6) == pytest.approx(0.01)
    assert relative.tolerance(baseline=0.5) == pytest.approx(0.01)
    assert target_only.tolerance(baseline=0.8) is None
    assert (both.sign, target_only.sign) == (-1, 1)
