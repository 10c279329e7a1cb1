"""Alert rubric, what each drift finding raises, dedupe slots (simulated against a create-only store), messages."""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipelines.monitoring.alerts import (
    AlertPolicy,
    AlertPolicyError,
    AlertSeverity,
    AlertType,
    alert_key,
    dedupe_slot,
    drift_alerts,
    email_message,
    failure_alert,
    ledger_key,
    load_alert_policy,
    make_alert,
    suppressed,
    webhook_payload,
)
from pipelines.monitoring.policy import Severity
from pipelines.monitoring.report import DriftReport, Finding

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
REPORT_URI = "s3://factory-data/monitoring/flights/flights-hgb/drift/w/evidently.html"


@pytest.fixture(scope="module")
def policy() -> AlertPolicy:
    return load_alert_policy()


def report(*findings: tuple[str, str, str | None], verdict: str | None = None) -> DriftReport:
    """A drift report holding these (kind, severity, column) findings."""
    made = [
        Finding(kind=kind, severity=Severity(severity), column=column, message=f"{column or 'dataset'}: {kind}")
        for kind, severity, column in findings
    ]
    loudest = max((f.severity for f in made), key=lambda s: s.rank, default=Severity.OK)
    return DriftReport(
        verdict=verdict or loudest.value,
        summary="test",
        window_rows=5000,
        reference_rows=80_000,
        feature_spec_version="abc",
        dataset_drift=any(f.kind == "dataset_drift" for f in made),
        drifted_share=0.0,
        drifted_features=sorted({f.column for f in made if f.kind == "feature_drift" and f.column}),
        features=[],
        schema_findings=[],
        prediction=None,
        findings=made,
    )


def alerts_of(drift: DriftReport, policy: AlertPolicy) -> dict[AlertType, object]:
    raised = drift_alerts(drift, policy, scope="flights-hgb", report_uri=REPORT_URI, raised_at=NOW)
    assert len({alert.alert_type for alert in raised}) == len(raised), "one alert per type"
    return {alert.alert_type: alert for alert in raised}


# ----------------------------------------------------------------------------------------------- the rubric
def test_repository_rubric_covers_every_alert_type_and_routes_by_severity(policy) -> None:
    assert set(policy.alerts) == set(AlertType)
    assert policy.channels[AlertSeverity.CRITICAL] == ["webhook", "email"]
    assert policy.channels[AlertSeverity.INFO] == []
    assert policy.rule(AlertType.TASK_FAILURE).severity == {"default": AlertSeverity.CRITICAL}


def test_every_runbook_anchor_is_a_section_of_the_runbook(policy) -> None:
    headings = re.findall(r"^#{2,4} (.+)$", (REPO / "docs" / "runbook.md").read_text(), flags=re.MULTILINE)
    slugs = {re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}
    for alert_type in AlertType:
        anchor = policy.rule(alert_type).runbook_anchor
        assert anchor in slugs, f"docs/runbook.md has no section for #{anchor} ({alert_type.value})"
        assert policy.runbook_link(alert_type) == f"docs/runbook.md#{anchor}"


BASE_RULES = """
version: "1"
runbook_url: docs/runbook.md
channels: {critical: [webhook, email], warning: [webhook], info: []}
alerts:
"""


def _rules(skip: str = "", **override: str) -> str:
    lines = []
    for kind in AlertType:
        if kind.value == skip:
            continue
        levels = "{default: info}" if kind.value.startswith(("retraining", "task")) else "{warn: info, alert: warning}"
        levels = override.get(kind.value, levels)
        lines.append(f"  {kind.value}: {{owner: me, runbook_anchor: x, severity: {levels}, dedupe_window_minutes: 60}}")
    return BASE_RULES + "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_rules(skip="schema_change"), r"alerts: .*no rule for \['schema_change'\]"),
        (_rules(data_drift="{default: warning}"), r"alerts.data_drift.severity: levels \['default'\]"),
        (_rules(task_failure="{warn: info, alert: critical}"), r"alerts.task_failure.severity: levels"),
        (_rules(data_drift="{warn: info, alert: loud}"), r"alerts.data_drift.severity.alert"),
        (_rules().replace("[webhook, email]", "[webhook, pager]"), r"channels.critical\[1\]"),
        (_rules().replace("info: []", ""), r"no routing for severities \['info'\]"),
        (_rules().replace("data_drift:", "weather:"), r"alerts.weather \(key\)"),
    ],
    ids=[
        "type-missing",
        "event-levels-on-drift",
        "drift-levels-on-event",
        "bad-severity",
        "bad-channel",
        "severity-unrouted",
        "unknown-type",
    ],
)
def test_bad_rubric_names_file_and_field(config_file: Callable[[str, str], Path], text: str, message: str) -> None:
    with pytest.raises(AlertPolicyError, match=rf"alerts.yaml: invalid alert policy: .*{message}"):
        load_alert_policy(config_file("alerts.yaml", text))


def test_make_alert_refuses_a_level_the_rubric_does_not_know(policy) -> None:
    with pytest.raises(ValueError, match="has no level 'default'"):
        make_alert(
            policy, AlertType.DATA_DRIFT, level="default", scope="m", title="t", summary="s", report_uri=None,
            raised_at=NOW,
        )  # fmt: skip


# ----------------------------------------------------------------------------------------------- drift -> alerts
def test_a_clean_report_raises_nothing(policy) -> None:
    assert alerts_of(report(), policy) == {}
    assert alerts_of(report(verdict="insufficient_data"), policy) == {}


def test_single_feature_drift_is_a_warning_on_the_webhook_only(policy) -> None:
    raised = alerts_of(report(("feature_drift", "warn", "temp"), ("psi", "warn", "temp")), policy)
    alert = raised[AlertType.DATA_DRIFT]
    assert (alert.severity, alert.level, alert.channels) == (AlertSeverity.WARNING, "warn", ["webhook"])
    assert alert.title == "data drift on flights-hgb: temp"
    assert alert.report_uri == REPORT_URI
    assert alert.runbook_url == "docs/runbook.md#data-drift"
    assert alert.owner == "ml-platform"
    assert alert.key == "data_drift|flights-hgb|warning"


def test_dataset_drift_escalates_to_critical_with_another_dedupe_key(policy) -> None:
    drift = report(
        ("dataset_drift", "alert", None), ("feature_drift", "warn", "temp"), ("feature_drift", "warn", "dewp")
    )
    alert = alerts_of(drift, policy)[AlertType.DATA_DRIFT]
    assert (alert.severity, alert.channels) == (AlertSeverity.CRITICAL, ["webhook", "email"])
    assert alert.details["columns"] == ["dewp", "temp"]
    assert alert.key != alert_key(AlertType.DATA_DRIFT, "flights-hgb", AlertSeverity.WARNING)


def test_each_signal_family_raises_its_own_alert(policy) -> None:
    drift = report(
        ("feature_drift", "warn", "temp"),
        ("null_surge", "alert", "pressure"),
        ("missing_column", "alert", "visib"),
        ("new_column", "warn", "gate"),
        ("prediction_drift", "alert", "score"),
    )
    raised = alerts_of(drift, policy)
    assert set(raised) == {
        AlertType.DATA_DRIFT, AlertType.MISSING_VALUES, AlertType.SCHEMA_CHANGE, AlertType.PREDICTION_DRIFT
    }  # fmt: skip
    assert raised[AlertType.SCHEMA_CHANGE].details["columns"] == ["gate", "visib"]
    assert raised[AlertType.SCHEMA_CHANGE].level == "alert"  # the loudest of its findings
    assert raised[AlertType.MISSING_VALUES].owner == "data-engineering"
    assert raised[AlertType.PREDICTION_DRIFT].runbook_url.endswith("#prediction-drift")


def test_findings_silenced_in_the_drift_policy_raise_nothing(policy) -> None:
    assert alerts_of(report(("new_column", "ok", "gate"), verdict="ok"), policy) == {}


def test_task_failure_alert_names_the_task_and_links_its_log(policy) -> None:
    alert = failure_alert(
        policy, dag_id="factory_drift", task_id="check_drift", run_id="scheduled__x", try_number=2,
        error="ValueError: " + "x" * 5000, log_url="http://airflow/dags/factory_drift/runs/x/tasks/check_drift",
        raised_at=NOW,
    )  # fmt: skip
    assert alert.alert_type == AlertType.TASK_FAILURE
    assert alert.severity == AlertSeverity.CRITICAL
    assert alert.scope == "factory_drift.check_drift"
    assert alert.report_uri.endswith("/tasks/check_drift")
    assert len(alert.summary) < 1100
    assert alert.runbook_url.endswith("#task-failure")


# ----------------------------------------------------------------------------------------------- dedupe
def test_slots_are_whole_windows_since_the_epoch() -> None:
    hour = timedelta(hours=1)
    assert dedupe_slot(datetime(1970, 1, 1, 0, 59, tzinfo=UTC), hour) == 0
    assert dedupe_slot(datetime(1970, 1, 1, 1, 0, tzinfo=UTC), hour) == 1
    assert dedupe_slot(NOW, hour) == dedupe_slot(NOW.astimezone(), hour)  # same instant, other offset
    with pytest.raises(ValueError, match="no timezone"):
        dedupe_slot(datetime(2026, 1, 1), hour)
    with pytest.raises(ValueError, match="positive"):
        dedupe_slot(NOW, timedelta(0))


def test_ledger_keys_differ_per_channel_slot_and_key() -> None:
    keys = {
        ledger_key("p", "a|m|warning", "webhook", 7),
        ledger_key("p", "a|m|warning", "email", 7),
        ledger_key("p", "a|m|warning", "webhook", 8),
        ledger_key("p", "a|m|critical", "webhook", 7),
    }
    assert len(keys) == 4
    assert ledger_key("p/", "a|m|warning", "webhook", 7).startswith("p/")
    assert ledger_key("p", "a|m|warning", "webhook", 7).endswith("/000000000007.json")


class CreateOnlyStore:
    """What the S3 ledger relies on: a put that succeeds for exactly one writer per key."""

    def __init__(self) -> None:
        self.objects: dict[int, datetime] = {}

    def deliver(self, now: datetime, window: timedelta) -> bool:
        slot = dedupe_slot(now, window)
        if suppressed(now, window, slot_claimed=False, previous_claim_at=self.objects.get(slot - 1)):
            return False
        if slot in self.objects:  # create-only: the first writer wins, later ones are refused
            return False
        self.objects[slot] = now
        return True


def test_dedupe_sends_at_most_once_per_window_and_never_suppresses_longer() -> None:
    window = timedelta(minutes=60)
    rng = random.Random(13)
    store, sent = CreateOnlyStore(), []
    moment = NOW
    for _ in range(2000):  # irregular repeats: retries within seconds, hourly runs, long quiet spells
        moment += timedelta(seconds=rng.choice([5, 40, 600, 1800, 3600, 3700, 9000]))
        if store.deliver(moment, window):
            sent.append(moment)
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert min(gaps) >= window  # never twice within a window
    assert len(sent) > 100
    # ...and an alert repeating after a quiet window always goes out again.
    assert store.deliver(sent[-1] + window, window)


def test_racing_senders_deliver_once() -> None:
    store = CreateOnlyStore()
    window = timedelta(minutes=30)
    assert [store.deliver(NOW, window) for _ in range(5)] == [True, False, False, False, False]


def test_suppression_rule() -> None:
    window = timedelta(hours=1)
    assert suppressed(NOW, window, slot_claimed=True, previous_claim_at=None)
    assert suppressed(NOW, window, slot_claimed=False, previous_claim_at=NOW - timedelta(minutes=59))
    assert not suppressed(NOW, window, slot_claimed=False, previous_claim_at=NOW - window)
    assert not suppressed(NOW, window, slot_claimed=False, previous_claim_at=None)


# ----------------------------------------------------------------------------------------------- messages
def test_messages_carry_the_report_and_the_runbook(policy) -> None:
    alert = alerts_of(report(("dataset_drift", "alert", None)), policy)[AlertType.DATA_DRIFT]
    payload = json.loads(json.dumps(webhook_payload(alert)))
    assert payload["text"] == "[CRITICAL] data drift on flights-hgb"
    assert payload["report_uri"] == REPORT_URI and payload["runbook_url"] == "docs/runbook.md#data-drift"
    subject, body = email_message(alert)
    assert subject == "[factory CRITICAL] data drift on flights-hgb"
    assert f"Report:  {REPORT_URI}" in body.splitlines()[:4]
    assert "Runbook: docs/runbook.md#data-drift" in body.splitlines()[:4]
