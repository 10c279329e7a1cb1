"""Alert delivery: webhook and e-mail channels, the S3 dedupe ledger, and Airflow notifiers built on them.

`WebhookNotifier` / `EmailNotifier` are Airflow 3 notifiers (`airflow.sdk.BaseNotifier`): put them in
`on_failure_callback` (they turn the failure context into a `task_failure` alert) or give them an alert to
send. The drift DAG sends its alerts with `deliver_alerts`, the same path without a callback context.
Connections: `factory_webhook` (http: host, port, schema, extra.endpoint, extra.headers, optional
login/password or extra.token) and `factory_smtp` (host, port, login/password, extra.from_email, extra.to,
extra.starttls, extra.ssl). Only cheap imports at module level: DAG files import this at parse time.
"""

from factory_providers.notifier.notifiers import EmailNotifier, WebhookNotifier

__all__ = ["EmailNotifier", "WebhookNotifier"]
