"""Guarded retraining: whether drift may schedule a new training, decided from facts by a pure function.

"Retraining without evaluation is automation of risk": a drift alarm alone must not start a training. The
decision needs drift beyond policy AND every guardrail of the seed's "bad triggers" list:
- cooldown: no retraining was requested by the monitor within the last `cooldown_hours` (a flapping signal
  must not queue a training every hour);
- new labelled data: at least `min_new_labelled_rows` labelled rows newer than the reference's training data
  (retraining on the same rows reproduces the same model);
- a rollback version exists: the version holding `champion`, proven in production, which a rollout of the
  retrained model routes back to on a breach and which becomes `previous` (the rollback DAG's default target)
  once the new model is promoted. Without a champion (only a candidate ever served) there is nothing proven to
  go back to. Requiring `previous` here instead would block the first model from ever being retrained: the very
  model whose silent decay the monitor exists to catch;
- no training already running (two trainings racing for `candidate` waste the workers and confuse review);
- feature lineage intact: the drift report was computed with the champion's feature spec version (a spec
  changed under the champion means the monitor and the model disagree about what the features are; a human
  must look before anything is retrained).
A fact the adapter could not establish is None, and an unknown fact fails its guardrail: the decision fails
closed. Every check is recorded with its reason, whatever the outcome.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from pipelines.config_loading import StrictModel, load_yaml_model
from pipelines.monitoring.report import FindingKind, Verdict

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RETRAINING_POLICY = "pipelines/configs/policies/retraining.yaml"
CheckName = Literal[
    "drift_beyond_policy", "cooldown", "new_labelled_data", "rollback_version", "no_training_running", "feature_lineage"
]
Outcome = Literal["retrain", "no_drift", "blocked"]


class RetrainingPolicyError(ValueError):
    """A retraining policy file that cannot be used; the message names the file and the field."""


class TriggerPolicy(StrictModel):
    """What counts as drift beyond policy: a verdict in `verdicts` with at least one finding of these kinds."""

    verdicts: list[Literal["warn", "alert"]] = Field(default_factory=lambda: ["alert"], min_length=1)
    finding_kinds: list[FindingKind] = Field(
        default_factory=lambda: ["dataset_drift", "prediction_drift"], min_length=1
    )


class RetrainingPolicy(StrictModel):
    version: str = Field(min_length=1)
    trigger: TriggerPolicy = TriggerPolicy()
    cooldown_hours: float = Field(24.0, gt=0)
    min_new_labelled_rows: int = Field(20_000, ge=0)
    require_rollback_version: bool = True
    require_feature_lineage: bool = True
    max_running_trainings: int = Field(0, ge=0)


def load_retraining_policy(path: str | Path = REPOSITORY_ROOT / DEFAULT_RETRAINING_POLICY) -> RetrainingPolicy:
    path = Path(path)
    path = path if path.is_absolute() else REPOSITORY_ROOT / path
    return load_yaml_model(path, RetrainingPolicy, RetrainingPolicyError, "retraining policy")


class RetrainingFacts(BaseModel):
    """Everything the decision reads, gathered by the drift DAG. None: the fact could not be established
    (`notes` says why)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str
    model_name: str
    reference_alias: str
    reference_version: str
    drift_verdict: Verdict
    finding_kinds: list[FindingKind]  # kinds of the drift report's findings louder than ok
    drifted_features: list[str]
    report_feature_spec_version: str
    champion_feature_spec_version: str | None
    rollback_version: str | None
    running_trainings: int | None
    last_retrain_requested_at: AwareDatetime | None
    new_labelled_rows: int | None
    labelled_since: AwareDatetime | None
    now: AwareDatetime
    notes: dict[str, str] = Field(default_factory=dict)


class GuardrailCheck(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: CheckName
    passed: bool
    detail: str


class RetrainingDecision(BaseModel):
    """The decision with every check and its reason: stored as JSON next to the drift report."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome: Outcome
    retrain: bool
    summary: str
    checks: list[GuardrailCheck]
    blocked_by: list[CheckName]
    facts: RetrainingFacts
    policy_version: str

    def check(self, name: CheckName) -> GuardrailCheck:
        return next(check for check in self.checks if check.name == name)


def decide_retraining(facts: RetrainingFacts, policy: RetrainingPolicy) -> RetrainingDecision:
    """Retrain only when drift is beyond policy and every guardrail passes; every check is evaluated and kept,
    so a "no" names all its reasons at once (not just the first)."""
    trigger = _drift_beyond_policy(facts, policy)
    guardrails = [
        _cooldown(facts, policy),
        _new_labelled_data(facts, policy),
        _rollback_version(facts, policy),
        _no_training_running(facts, policy),
        _feature_lineage(facts, policy),
    ]
    failed = [check.name for check in guardrails if not check.passed]
    if not trigger.passed:
        outcome: Outcome = "no_drift"
        summary = f"no retraining: {trigger.detail}"
    elif failed:
        outcome = "blocked"
        reasons = "; ".join(f"{check.name}: {check.detail}" for check in guardrails if not check.passed)
        summary = f"retraining blocked ({trigger.detail}) by {len(failed)} guardrail(s): {reasons}"
    else:
        outcome = "retrain"
        summary = f"retrain {facts.model_name} on new data: {trigger.detail}; all guardrails passed"
    return RetrainingDecision(
        outcome=outcome,
        retrain=outcome == "retrain",
        summary=summary,
        checks=[trigger, *guardrails],
        blocked_by=failed if trigger.passed else [],
        facts=facts,
        policy_version=policy.version,
    )


def _drift_beyond_policy(facts: RetrainingFacts, policy: RetrainingPolicy) -> GuardrailCheck:
    wanted = policy.trigger
    kinds = sorted(set(facts.finding_kinds) & set(wanted.finding_kinds))
    if facts.drift_verdict not in wanted.verdicts:
        detail = f"drift verdict {facts.drift_verdict!r} is not one of {wanted.verdicts}"
        return GuardrailCheck(name="drift_beyond_policy", passed=False, detail=detail)
    if not kinds:
        detail = (
            f"verdict {facts.drift_verdict!r} but no finding of {', '.join(sorted(wanted.finding_kinds))} "
            f"(found: {', '.join(sorted(set(facts.finding_kinds))) or 'none'})"
        )
        return GuardrailCheck(name="drift_beyond_policy", passed=False, detail=detail)
    features = f", drifted features: {', '.join(facts.drifted_features)}" if facts.drifted_features else ""
    detail = f"verdict {facts.drift_verdict!r} with {', '.join(kinds)}{features}"
    return GuardrailCheck(name="drift_beyond_policy", passed=True, detail=detail)


def _cooldown(facts: RetrainingFacts, policy: RetrainingPolicy) -> GuardrailCheck:
    last = facts.last_retrain_requested_at
    hours = policy.cooldown_hours
    if last is None:
        return GuardrailCheck(name="cooldown", passed=True, detail="the monitor never requested a retraining")
    elapsed = (facts.now - last).total_seconds() / 3600
    if elapsed < hours:  # a request "in the future" (clock skew) is inside the cooldown too
        return GuardrailCheck(
            name="cooldown",
            passed=False,
            detail=f"last retraining requested {_ago(elapsed)} ago ({last.isoformat()}), cooldown is {hours:g} h",
        )
    return GuardrailCheck(
        name="cooldown", passed=True, detail=f"last retraining requested {_ago(elapsed)} ago (cooldown {hours:g} h)"
    )


def _new_labelled_data(facts: RetrainingFacts, policy: RetrainingPolicy) -> GuardrailCheck:
    rows, needed = facts.new_labelled_rows, policy.min_new_labelled_rows
    since = f" since {facts.labelled_since.isoformat()}" if facts.labelled_since else ""
    if rows is None:
        why = facts.notes.get("new_labelled_rows", "not established")
        return GuardrailCheck(name="new_labelled_data", passed=False, detail=f"new labelled rows unknown: {why}")
    return GuardrailCheck(
        name="new_labelled_data",
        passed=rows >= needed,
        detail=f"{rows} new labelled rows{since}, policy needs at least {needed}",
    )


def _rollback_version(facts: RetrainingFacts, policy: RetrainingPolicy) -> GuardrailCheck:
    rollback = facts.rollback_version
    if not policy.require_rollback_version:
        return GuardrailCheck(name="rollback_version", passed=True, detail="not required by the policy")
    if rollback is None and "rollback_version" in facts.notes:
        detail = f"rollback version unknown: {facts.notes['rollback_version']}"
        return GuardrailCheck(name="rollback_version", passed=False, detail=detail)
    if rollback is None:
        return GuardrailCheck(
            name="rollback_version",
            passed=False,
            detail=f"{facts.model_name} has no champion to roll back to (nothing proven in production yet)",
        )
    return GuardrailCheck(
        name="rollback_version", passed=True, detail=f"a rollout of the retrained model can roll back to v{rollback}"
    )


def _no_training_running(facts: RetrainingFacts, policy: RetrainingPolicy) -> GuardrailCheck:
    running, allowed = facts.running_trainings, policy.max_running_trainings
    if running is None:
        why = facts.notes.get("running_trainings", "not established")
        return GuardrailCheck(name="no_training_running", passed=False, detail=f"running trainings unknown: {why}")
    return GuardrailCheck(
        name="no_training_running",
        passed=running <= allowed,
        detail=f"{running} training run(s) queued or running, policy allows {allowed}",
    )


def _feature_lineage(facts: RetrainingFacts, policy: RetrainingPolicy) -> GuardrailCheck:
    report, champion = facts.report_feature_spec_version, facts.champion_feature_spec_version
    if not policy.require_feature_lineage:
        return GuardrailCheck(name="feature_lineage", passed=True, detail="not required by the policy")
    if champion is None:
        return GuardrailCheck(
            name="feature_lineage",
            passed=False,
            detail=f"{facts.model_name} v{facts.reference_version} records no feature spec version",
        )
    if report != champion:
        return GuardrailCheck(
            name="feature_lineage",
            passed=False,
            detail=f"drift report used feature spec {report}, {facts.reference_alias} "
            f"v{facts.reference_version} was trained with {champion}",
        )
    return GuardrailCheck(name="feature_lineage", passed=True, detail=f"feature spec {report} on both sides")


def _ago(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 0 else f"{hours:.1f} h (recorded in the future: clock skew?)"
