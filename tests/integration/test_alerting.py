"""Alert delivery end to end: the notifiers and `deliver_alerts` against real local receivers (HTTP webhook, SMTP),
deduplicated through the real S3 ledger of the live stack (including from another process).

Nothing is mocked: the webhook is an http.server, the mail server a small SMTP server on a socket
(tests/integration/receivers.py), the ledger SeaweedFS with create-only PUTs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from factory.settings import PROJECT_ROOT
from factory.stack import Stack
from pipelines.monitoring.alerts import AlertPolicy, AlertType, load_alert_policy, make_alert
from tests.integration.conftest import stack_subprocess_env
from tests.integration.receivers import SmtpReceiver, WebhookReceiver

pytestmark = pytest.mark.services


@pytest.fixture
def receivers(
    stack_connections: Stack, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[WebhookReceiver, SmtpReceiver]]:
    webhook, smtp = WebhookReceiver(), SmtpReceiver()
    monkeypatch.setenv("AIRFLOW_CONN_FACTORY_WEBHOOK", webhook.connection())
    monkeypatch.setenv("AIRFLOW_CONN_FACTORY_SMTP", smtp.connection())
    yield webhook, smtp
    webhook.close()
    smtp.close()


@pytest.fixture(scope="module")
def policy() -> AlertPolicy:
    return load_alert_policy()


def drift_alert(policy: AlertPolicy, level: str = "alert", scope: str | None = None):
    scope = scope or f"model-{uuid.uuid4().hex[:8]}"  # a fresh scope per test: the ledger outlives tests
    return make_alert(
        policy, AlertType.DATA_DRIFT, level=level, scope=scope, title=f"data drift on {scope}: temp",
        summary="temp: wasserstein_normed 0.5 (threshold 0.1)", report_uri=f"s3://factory-data/monitoring/{scope}/r.html",
        raised_at=datetime.now(UTC),
    )  # fmt: skip


def deliver(alerts):
    from factory_providers.notifier.ledger import S3AlertLedger
    from factory_providers.notifier.notifiers import deliver_alerts

    return deliver_alerts(alerts, ledger=S3AlertLedger.connect())


def test_critical_alert_reaches_webhook_and_mail_with_report_and_runbook(receivers, policy) -> None:
    webhook, smtp = receivers
    alert = drift_alert(policy)
    deliveries = deliver([alert])
    assert [(d.channel, d.status) for d in deliveries] == [("webhook", "sent"), ("email", "sent")]
    (payload,) = webhook.payloads
    assert webhook.paths == ["/alerts"]
    assert payload["key"] == alert.key and payload["severity"] == "critical"
    assert payload["report_uri"] == alert.report_uri
    assert payload["runbook_url"] == "docs/runbook.md#data-drift"
    assert payload["text"].startswith("[CRITICAL] data drift on ")
    (message,) = smtp.messages
    assert smtp.recipients == [["oncall@factory.test"]]
    assert message["Subject"] == f"[factory CRITICAL] {alert.title}"
    assert message["X-Factory-Alert-Key"] == alert.key
    body = message.get_content()
    assert f"Report:  {alert.report_uri}" in body and "Runbook: docs/runbook.md#data-drift" in body


def test_repeat_is_suppressed_in_this_and_in_another_process_but_escalation_goes_out(
    receivers, policy, live_stack
) -> None:
    webhook, smtp = receivers
    alert = drift_alert(policy, level="warn")  # warning: webhook only
    assert [(d.channel, d.status) for d in deliver([alert])] == [("webhook", "sent")]
    assert [d.status for d in deliver([alert])] == ["suppressed"]
    # Another process (a retry on another worker, a callback) sees the same ledger.
    child = f"""
import json, sys
sys.path[:0] = [{str(PROJECT_ROOT)!r}, {str(PROJECT_ROOT / "plugins")!r}]
from factory_providers.notifier.ledger import S3AlertLedger
from factory_providers.notifier.notifiers import deliver_alerts
from pipelines.monitoring.alerts import Alert
alert = Alert.model_validate_json(sys.argv[1])
print(json.dumps([d.as_dict() for d in deliver_alerts([alert], ledger=S3AlertLedger.connect())]))
"""
    env = stack_subprocess_env(live_stack) | {
        "AIRFLOW_CONN_FACTORY_WEBHOOK": webhook.connection(), "AIRFLOW_CONN_FACTORY_SMTP": smtp.connection()
    }  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", child, alert.model_dump_json()], env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert [d["status"] for d in json.loads(result.stdout.strip().splitlines()[-1])] == ["suppressed"]
    assert len(webhook.payloads) == 1 and smtp.messages == []
    escalated = drift_alert(policy, level="alert", scope=alert.scope)
    assert [d.status for d in deliver([escalated])] == ["sent", "sent"]
    assert [payload["severity"] for payload in webhook.payloads] == ["warning", "critical"]


def test_failed_delivery_gives_the_slot_back_so_the_retry_sends(receivers, policy) -> None:
    webhook, _ = receivers
    alert = drift_alert(policy, level="warn")
    webhook.fail_next(1)
    (failed,) = deliver([alert])
    assert failed.status == "failed" and "answered 500" in failed.detail
    (retried,) = deliver([alert])
    assert retried.status == "sent"
    assert len(webhook.payloads) == 1


def test_unconfigured_channel_is_reported_and_does_not_stop_the_others(receivers, policy, monkeypatch) -> None:
    webhook, _ = receivers
    monkeypatch.delenv("AIRFLOW_CONN_FACTORY_SMTP")
    deliveries = deliver([drift_alert(policy)])
    assert [(d.channel, d.status) for d in deliveries] == [("webhook", "sent"), ("email", "not_configured")]
    assert "factory_smtp" in deliveries[1].detail
    assert len(webhook.payloads) == 1


def test_info_alerts_are_recorded_not_pushed(receivers, policy) -> None:
    webhook, smtp = receivers
    info = make_alert(
        policy, AlertType.RETRAINING_REQUESTED, level="default", scope=f"m-{uuid.uuid4().hex[:8]}", title="t",
        summary="s", report_uri=None, raised_at=datetime.now(UTC),
    )  # fmt: skip
    assert deliver([info]) == []
    assert webhook.payloads == [] and smtp.messages == []


def test_notifiers_send_a_given_alert_and_respect_the_rubric(receivers, policy) -> None:
    from factory_providers.notifier import EmailNotifier, WebhookNotifier
    from factory_providers.notifier.channels import AlertDeliveryError

    webhook, smtp = receivers
    warning = drift_alert(policy, level="warn").model_dump(mode="json")
    email = EmailNotifier(alert=warning)
    email({})  # BaseNotifier.__call__ with a callback context
    assert [d.status for d in email.deliveries] == ["not_routed"]  # warnings are not e-mailed
    hook = WebhookNotifier(alert=warning)
    hook({})
    assert [d.status for d in hook.deliveries] == ["sent"]
    assert len(webhook.payloads) == 1 and smtp.messages == []
    webhook.fail_next(1)
    with pytest.raises(AlertDeliveryError, match="answered 500"):
        WebhookNotifier(alert=drift_alert(policy).model_dump(mode="json"))({})
