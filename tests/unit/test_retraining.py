"""Guarded retraining: `decide_retraining` retrains only on drift beyond policy with every guardrail passing,
fails closed on unknown facts, and always records every check with its reason."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipelines.monitoring.retraining import (
    RetrainingDecision,
    RetrainingFacts,
    RetrainingPolicy,
    RetrainingPolicyError,
    TriggerPolicy,
    decide_retraining,
    load_retraining_policy,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GUARDRAILS = ["cooldown", "new_labelled_data", "rollback_version", "no_training_running", "feature_lineage"]


@pytest.fixture(scope="module")
def policy() -> RetrainingPolicy:
    return load_retraining_policy()


def facts(**changes: Any) -> RetrainingFacts:
    """Facts under which the repository policy says retrain; `changes` break one thing at a time."""
    base: dict[str, Any] = {
        "dataset": "flights",
        "model_name": "flights-hgb",
        "reference_alias": "champion",
        "reference_version": "3",
        "drift_verdict": "alert",
        "finding_kinds": ["dataset_drift", "feature_drift", "psi"],
        "drifted_features": ["temp", "dewp"],
        "report_feature_spec_version": "abc123def456",
        "champion_feature_spec_version": "abc123def456",
        "rollback_version": "3",  # the champion: what a rollout of the retrained model returns to
        "running_trainings": 0,
        "last_retrain_requested_at": NOW - timedelta(days=3),
        "new_labelled_rows": 50_000,
        "labelled_since": datetime(2013, 4, 1, tzinfo=UTC),
        "now": NOW,
    }
    return RetrainingFacts.model_validate(base | changes)


def test_repository_policy_is_valid_and_strict(policy) -> None:
    assert policy.trigger.verdicts == ["alert"]
    assert set(policy.trigger.finding_kinds) == {"dataset_drift", "prediction_drift"}
    assert policy.cooldown_hours == 24
    assert policy.require_rollback_version and policy.require_feature_lineage
    assert policy.max_running_trainings == 0


def test_everything_in_order_retrains_and_records_every_check(policy) -> None:
    decision = decide_retraining(facts(), policy)
    assert (decision.outcome, decision.retrain, decision.blocked_by) == ("retrain", True, [])
    assert [check.name for check in decision.checks] == ["drift_beyond_policy", *GUARDRAILS]
    assert all(check.passed for check in decision.checks)
    assert "dataset_drift" in decision.check("drift_beyond_policy").detail
    assert "temp, dewp" in decision.check("drift_beyond_policy").detail
    assert decision.policy_version == policy.version


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"drift_verdict": "ok", "finding_kinds": []}, "verdict 'ok' is not one of ['alert']"),
        ({"drift_verdict": "insufficient_data", "finding_kinds": []}, "'insufficient_data'"),
        ({"drift_verdict": "warn", "finding_kinds": ["feature_drift", "psi"]}, "verdict 'warn'"),
        ({"finding_kinds": ["null_surge", "missing_column"]}, "found: missing_column, null_surge"),
    ],
    ids=["ok", "insufficient-data", "warn-only", "alert-without-trigger-kind"],
)
def test_no_drift_beyond_policy_means_no_retraining(policy, changes: dict[str, Any], detail: str) -> None:
    decision = decide_retraining(facts(**changes), policy)
    assert (decision.outcome, decision.retrain) == ("no_drift", False)
    assert decision.blocked_by == []  # nothing was blocked: there was nothing to do
    assert detail in decision.check("drift_beyond_policy").detail
    assert len(decision.checks) == 6  # the guardrails are still evaluated and recorded


def test_prediction_drift_alone_triggers(policy) -> None:
    decision = decide_retraining(facts(finding_kinds=["prediction_drift"], drifted_features=[]), policy)
    assert decision.retrain
    assert "prediction_drift" in decision.check("drift_beyond_policy").detail


def test_a_policy_can_trigger_on_single_feature_warnings() -> None:
    loose = RetrainingPolicy(
        version="t", trigger=TriggerPolicy(verdicts=["warn", "alert"], finding_kinds=["feature_drift"])
    )
    assert decide_retraining(facts(drift_verdict="warn", finding_kinds=["feature_drift"]), loose).retrain


@pytest.mark.parametrize(
    ("guardrail", "changes", "detail"),
    [
        ("cooldown", {"last_retrain_requested_at": NOW - timedelta(hours=2)}, "2.0 h ago"),
        ("cooldown", {"last_retrain_requested_at": NOW + timedelta(hours=1)}, "clock skew"),
        ("new_labelled_data", {"new_labelled_rows": 19_999}, "19999 new labelled rows since 2013-04-01"),
        (
            "new_labelled_data",
            {"new_labelled_rows": None, "notes": {"new_labelled_rows": "db down"}},
            "unknown: db down",
        ),
        ("rollback_version", {"rollback_version": None}, "no champion to roll back to"),
        ("no_training_running", {"running_trainings": 1}, "1 training run(s) queued or running"),
        ("no_training_running", {"running_trainings": None}, "unknown"),
        ("feature_lineage", {"champion_feature_spec_version": "000000000000"}, "trained with 000000000000"),
        ("feature_lineage", {"champion_feature_spec_version": None}, "records no feature spec version"),
    ],
)
def test_each_guardrail_alone_blocks_and_says_why(policy, guardrail: str, changes: dict[str, Any], detail: str) -> None:
    decision = decide_retraining(facts(**changes), policy)
    assert (decision.outcome, decision.retrain) == ("blocked", False)
    assert decision.blocked_by == [guardrail]
    assert detail in decision.check(guardrail).detail
    assert f"{guardrail}: " in decision.summary


def test_boundaries_pass(policy) -> None:
    at_the_limit = facts(
        last_retrain_requested_at=NOW - timedelta(hours=policy.cooldown_hours),
        new_labelled_rows=policy.min_new_labelled_rows,
    )
    assert decide_retraining(at_the_limit, policy).retrain
    assert decide_retraining(facts(last_retrain_requested_at=None), policy).check("cooldown").passed


def test_every_failed_guardrail_is_named_at_once(policy) -> None:
    decision = decide_retraining(
        facts(rollback_version=None, running_trainings=2, new_labelled_rows=10, reference_alias="candidate"), policy
    )
    assert decision.blocked_by == ["new_labelled_data", "rollback_version", "no_training_running"]
    assert "3 guardrail(s)" in decision.summary


def test_policy_switches_turn_guardrails_off() -> None:
    relaxed = RetrainingPolicy(
        version="t", require_rollback_version=False, require_feature_lineage=False, max_running_trainings=1
    )
    decision = decide_retraining(
        facts(rollback_version=None, champion_feature_spec_version=None, running_trainings=1), relaxed
    )
    assert decision.retrain
    assert decision.check("rollback_version").detail == "not required by the policy"


def test_decision_round_trips_as_json(policy) -> None:
    decision = decide_retraining(facts(running_trainings=None), policy)
    assert RetrainingDecision.model_validate_json(decision.model_dump_json()) == decision


def test_facts_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone"):
        facts(now=datetime(2026, 3, 1, 12, 0))


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("version: '1'\ncooldown_hours: 0\n", "cooldown_hours"),
        ("version: '1'\ntrigger: {verdicts: [critical]}\n", "trigger.verdicts[0]"),
        ("version: '1'\ntrigger: {finding_kinds: [weather]}\n", "trigger.finding_kinds[0]"),
        ("version: '1'\nmin_new_labeled_rows: 5\n", "min_new_labeled_rows"),
        ("cooldown_hours: 3\n", "version"),
    ],
)
def test_bad_policy_names_file_and_field(config_file: Callable[[str, str], Path], text: str, field: str) -> None:
    path = config_file("retraining.yaml", text)
    with pytest.raises(RetrainingPolicyError, match=rf"retraining.yaml: invalid retraining policy: {re.escape(field)}"):
        load_retraining_policy(path)


def test_an_unknown_rollback_version_says_so(policy) -> None:
    decision = decide_retraining(facts(rollback_version=None, notes={"rollback_version": "S3 timeout"}), policy)
    assert decision.blocked_by == ["rollback_version"]
    assert decision.check("rollback_version").detail == "rollback version unknown: S3 timeout"
