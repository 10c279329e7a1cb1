"""Alerts as pure logic: the severity rubric (policy YAML), what each signal raises, dedupe keys, message bodies.

Every alert names what happened, how loud it is, who owns it, the report that shows the evidence and the
runbook section that says what to do. The rubric decides the loudness and the channels, so moving an alert
from "webhook" to "webhook + e-mail" is a policy change, not a code change. Delivery and the dedupe ledger
are adapters (plugins/factory_providers/notifier); nothing here does I/O.

Dedupe: an alert key (type | scope | severity) is delivered at most once per window and channel. Time is cut
into slots of one window; a delivery claims the slot of its moment with a create-only write, and is suppressed
when its slot is already claimed or the previous slot was claimed less than one window ago. Two racing
senders can both pass the check but only one can create the slot, so exactly one delivers, and any two
deliveries of one key are at least a window apart.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from pipelines.config_loading import StrictModel, load_yaml_model
from pipelines.monitoring.policy import Severity
from pipelines.monitoring.report import DriftReport, FindingKind
from pipelines.monitoring.system_signals import SystemPolicy

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ALERT_POLICY = "pipelines/configs/policies/alerts.yaml"
Channel = Literal["webhook", "email"]
CHANNELS: tuple[Channel, ...] = ("webhook", "email")


class AlertSeverity(StrEnum):
    """How urgently a human must look. Ordered: info < warning < critical."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertType(StrEnum):
    DATA_DRIFT = "data_drift"
    MISSING_VALUES = "missing_values"
    SCHEMA_CHANGE = "schema_change"
    PREDICTION_DRIFT = "prediction_drift"
    CONCEPT_DRIFT = "concept_drift"
    MODEL_DRIFT = "model_drift"
    SYSTEM_HEALTH = "system_health"
    BUSINESS_METRIC = "business_metric"
    RETRAINING_REQUESTED = "retraining_requested"
    RETRAINING_BLOCKED = "retraining_blocked"
    TASK_FAILURE = "task_failure"


# Which drift findings raise which alert. The levels of these alerts are the drift check's own finding
# severities (warn / alert); the rubric maps each level to an alert severity.
DRIFT_ALERT_KINDS: dict[AlertType, frozenset[FindingKind]] = {
    AlertType.DATA_DRIFT: frozenset({"dataset_drift", "feature_drift", "psi"}),
    AlertType.MISSING_VALUES: frozenset({"null_surge"}),
    AlertType.SCHEMA_CHANGE: frozenset({"missing_column", "new_column", "dtype_change"}),
    AlertType.PREDICTION_DRIFT: frozenset({"prediction_drift"}),
}
# Levels an alert type is raised at: drift alerts at the drift check's finding severities; concept and model
# drift (the feedback DAG), system health and the business proxy (the drift DAG) at the same two levels;
# events at one level.
DRIFT_LEVELS = ("warn", "alert")
EVENT_LEVEL = "default"
LEVELED_TYPES = frozenset(
    {*DRIFT_ALERT_KINDS, AlertType.CONCEPT_DRIFT, AlertType.MODEL_DRIFT, AlertType.SYSTEM_HEALTH,
     AlertType.BUSINESS_METRIC}
)  # fmt: skip


class AlertPolicyError(ValueError):
    """An alert policy file that cannot be used; the message names the file and the field."""


class AlertRule(StrictModel):
    """One alert type's row of the rubric."""

    owner: str = Field(min_length=1)
    runbook_anchor: str = Field(pattern=r"^[a-z0-9-]+$")
    severity: dict[str, AlertSeverity] = Field(min_length=1)
    dedupe_window_minutes: int = Field(ge=1, le=7 * 24 * 60)


class AlertPolicy(StrictModel):
    """The severity rubric: per alert type its owner, runbook section, severity per level, dedupe window."""

    version: str = Field(min_length=1)
    runbook_url: str = Field(min_length=1)
    channels: dict[AlertSeverity, list[Channel]]
    alerts: dict[AlertType, AlertRule]
    system: SystemPolicy = SystemPolicy()  # thresholds of the system signal family (factory_drift)

    @model_validator(mode="after")
    def _complete(self) -> AlertPolicy:
        missing_types = [kind.value for kind in AlertType if kind not in self.alerts]
        if missing_types:
            raise ValueError(f"alerts: no rule for {missing_types} (every alert type needs one)")
        missing_severities = [severity.value for severity in AlertSeverity if severity not in self.channels]
        if missing_severities:
            raise ValueError(f"channels: no routing for severities {missing_severities} (use [] for none)")
        for kind, rule in self.alerts.items():
            expected = set(DRIFT_LEVELS) if kind in LEVELED_TYPES else {EVENT_LEVEL}
            if set(rule.severity) != expected:
                raise ValueError(
                    f"alerts.{kind.value}.severity: levels {sorted(rule.severity)}, expected exactly {sorted(expected)}"
                )
        return self

    def rule(self, alert_type: AlertType) -> AlertRule:
        return self.alerts[alert_type]

    def runbook_link(self, alert_type: AlertType) -> str:
        return f"{self.runbook_url}#{self.rule(alert_type).runbook_anchor}"


def load_alert_policy(path: str | Path = REPOSITORY_ROOT / DEFAULT_ALERT_POLICY) -> AlertPolicy:
    path = Path(path)
    path = path if path.is_absolute() else REPOSITORY_ROOT / path
    return load_yaml_model(path, AlertPolicy, AlertPolicyError, "alert policy")


class Alert(BaseModel):
    """One alert as every channel delivers it (the webhook body is this record as JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alert_type: AlertType
    severity: AlertSeverity
    level: str
    title: str
    summary: str
    scope: str  # what the alert is about: a model ("flights-hgb") or a task ("factory_drift.check_drift")
    key: str  # the dedupe key
    owner: str
    report_uri: str | None
    runbook_url: str
    channels: list[Channel]
    dedupe_window_minutes: int
    raised_at: AwareDatetime
    details: dict[str, Any] = Field(default_factory=dict)
    policy_version: str

    @property
    def dedupe_window(self) -> timedelta:
        return timedelta(minutes=self.dedupe_window_minutes)


def make_alert(
    policy: AlertPolicy,
    alert_type: AlertType,
    *,
    level: str,
    scope: str,
    title: str,
    summary: str,
    report_uri: str | None,
    raised_at: datetime,
    details: dict[str, Any] | None = None,
) -> Alert:
    """An alert with its severity, channels, owner and runbook link from the rubric."""
    rule = policy.rule(alert_type)
    if level not in rule.severity:
        raise ValueError(f"alert {alert_type.value} has no level {level!r}; the rubric knows {sorted(rule.severity)}")
    severity = rule.severity[level]
    return Alert(
        alert_type=alert_type,
        severity=severity,
        level=level,
        title=title,
        summary=summary,
        scope=scope,
        key=alert_key(alert_type, scope, severity),
        owner=rule.owner,
        report_uri=report_uri,
        runbook_url=policy.runbook_link(alert_type),
        channels=list(policy.channels[severity]),
        dedupe_window_minutes=rule.dedupe_window_minutes,
        raised_at=raised_at,
        details=details or {},
        policy_version=policy.version,
    )


def alert_key(alert_type: AlertType, scope: str, severity: AlertSeverity) -> str:
    """What makes two alerts "the same": type, subject and loudness. Columns are left out on purpose (the
    drifted set wobbles from hour to hour; re-alerting on each wobble is the noise dedupe is for), severity is
    kept so that an escalation from warning to critical is delivered at once."""
    return f"{alert_type.value}|{scope}|{severity.value}"


def drift_alerts(
    report: DriftReport, policy: AlertPolicy, *, scope: str, report_uri: str, raised_at: datetime
) -> list[Alert]:
    """The alerts one drift report raises: one per alert type with findings, at its loudest finding's level.

    Findings at severity `ok` (silenced in the drift policy) raise nothing; an insufficient-data window
    raises nothing either (an idle hour is not an incident; the report still records it).
    """
    alerts = []
    for alert_type, kinds in DRIFT_ALERT_KINDS.items():
        findings = [f for f in report.findings if f.kind in kinds and f.severity != Severity.OK]
        if not findings:
            continue
        level = max((finding.severity for finding in findings), key=lambda s: s.rank)
        columns = sorted({finding.column for finding in findings if finding.column})
        alerts.append(
            make_alert(
                policy,
                alert_type,
                level=level.value,
                scope=scope,
                title=f"{alert_type.value.replace('_', ' ')} on {scope}"
                + (f": {', '.join(columns)}" if columns else ""),
                summary="; ".join(finding.message for finding in findings),
                report_uri=report_uri,
                raised_at=raised_at,
                details={"columns": columns, "findings": [finding.model_dump(mode="json") for finding in findings]},
            )
        )
    return alerts


def failure_alert(
    policy: AlertPolicy,
    *,
    dag_id: str,
    task_id: str,
    run_id: str,
    try_number: int | None,
    error: str,
    log_url: str | None,
    raised_at: datetime,
) -> Alert:
    """A task that failed for good (on_failure_callback). The "report" of a failure is its log."""
    return make_alert(
        policy,
        AlertType.TASK_FAILURE,
        level=EVENT_LEVEL,
        scope=f"{dag_id}.{task_id}",
        title=f"task {dag_id}.{task_id} failed",
        summary=f"run {run_id} (try {try_number}): {error[:1000] or 'no error message'}",
        report_uri=log_url,
        raised_at=raised_at,
        details={"dag_id": dag_id, "task_id": task_id, "run_id": run_id, "try_number": try_number},
    )


# ----- dedupe -------------------------------------------------------------------------------------------------
def dedupe_slot(moment: datetime, window: timedelta) -> int:
    """The slot of `moment`: whole windows since the epoch (UTC), so every process computes the same slot."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment} has no timezone: dedupe slots are computed on aware datetimes")
    seconds = window.total_seconds()
    if seconds <= 0:
        raise ValueError(f"dedupe window must be positive, got {window}")
    return math.floor(moment.timestamp() / seconds)


def ledger_key(prefix: str, alert_key_: str, channel: str, slot: int) -> str:
    """Where the claim of one (alert key, channel, slot) lives: hashed, since keys hold '|' and scope names."""
    digest = hashlib.sha256(f"{alert_key_}\n{channel}".encode()).hexdigest()[:32]
    return f"{prefix.strip('/')}/{digest}/{slot:012d}.json"


def suppressed(now: datetime, window: timedelta, *, slot_claimed: bool, previous_claim_at: datetime | None) -> bool:
    """Whether a delivery at `now` is a duplicate: its slot is taken, or the previous slot's claim is recent."""
    if slot_claimed:
        return True
    return previous_claim_at is not None and now - previous_claim_at < window


# ----- rendering ----------------------------------------------------------------------------------------------
def webhook_payload(alert: Alert) -> dict[str, Any]:
    """The JSON a webhook receives: the alert record plus a one-line `text` for chat tools that show only that."""
    return alert.model_dump(mode="json") | {"text": f"[{alert.severity.value.upper()}] {alert.title}"}


def email_message(alert: Alert) -> tuple[str, str]:
    """Subject and plain-text body; the links come first so a phone screen shows them."""
    subject = f"[factory {alert.severity.value.upper()}] {alert.title}"
    lines = [
        alert.title,
        "",
        f"Report:  {alert.report_uri or '(none)'}",
        f"Runbook: {alert.runbook_url}",
        "",
        f"Severity: {alert.severity.value} (level {alert.level}), owner: {alert.owner}",
        f"Raised at: {alert.raised_at.isoformat()}",
        "",
        alert.summary,
        "",
        f"Alert key {alert.key}; repeats are suppressed for {alert.dedupe_window_minutes} min "
        f"(rubric {alert.policy_version}).",
    ]
    return subject, "\n".join(lines)
