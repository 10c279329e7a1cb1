"""Airflow notifiers for the factory's alerts, and `deliver_alerts`, the one delivery path behind them.

Delivery of one alert on one channel: route (the rubric lists the alert's channels), claim the dedupe slot
(S3 ledger), send, and on a failed send give the slot back so the retry sends it. If the ledger itself is
unreachable the alert is sent anyway (a duplicate page beats a silent one: S3 being down may be the very
incident). Nothing heavy is imported at module level: DAG files instantiate these notifiers at parse time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from airflow.sdk import BaseNotifier

if TYPE_CHECKING:
    from factory_providers.notifier.channels import AlertChannel
    from factory_providers.notifier.ledger import S3AlertLedger
    from pipelines.monitoring.alerts import Alert, AlertPolicy

log = logging.getLogger(__name__)
DEFAULT_ALERT_POLICY = "pipelines/configs/policies/alerts.yaml"  # = pipelines.monitoring.alerts (kept unimported)
DeliveryStatus = Literal["sent", "suppressed", "not_routed", "not_configured", "failed"]


@dataclass(frozen=True)
class Delivery:
    """What one channel did with one alert (stored in alerts.json next to the report)."""

    alert_key: str
    channel: str
    status: DeliveryStatus
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def deliver_alert(
    alert: Alert,
    channels: Mapping[str, AlertChannel | Exception],
    ledger: S3AlertLedger | None,
    *,
    now: datetime | None = None,
    only: Sequence[str] | None = None,
) -> list[Delivery]:
    """Deliver `alert` on each channel the rubric routes it to (`only`: restrict to these channels).

    `channels` maps a channel name to its built channel, or to the exception that says why it could not be
    built (not configured). Never raises: the caller decides what a failed delivery means.
    """
    now = now or datetime.now(UTC)
    results: list[Delivery] = []
    for name in only or alert.channels:
        if name not in alert.channels:
            results.append(
                Delivery(alert.key, name, "not_routed", f"severity {alert.severity.value} is not routed here")
            )
            continue
        channel = channels.get(name)
        if channel is None or isinstance(channel, Exception):
            detail = str(channel) if channel is not None else f"no {name} channel configured"
            log.error("alert %s NOT delivered on %s: %s", alert.key, name, detail)
            results.append(Delivery(alert.key, name, "not_configured", detail))
            continue
        claim = None
        if ledger is not None:
            try:
                claim = ledger.claim(alert, name, now)
            except Exception as error:  # the ledger is down: send anyway, say so
                log.warning("alert dedupe ledger unavailable (%s): sending %s without dedupe", error, alert.key)
            else:
                if claim is None:
                    window = alert.dedupe_window_minutes
                    results.append(Delivery(alert.key, name, "suppressed", f"already sent within {window} min"))
                    continue
        try:
            channel.send(alert)
        except Exception as error:
            if claim is not None:
                try:
                    ledger.release(claim)  # type: ignore[union-attr]
                except Exception:
                    log.exception("could not release dedupe claim %s: the alert stays suppressed", claim.key)
            log.error("alert %s delivery on %s failed: %s", alert.key, channel.describe(), error)
            results.append(Delivery(alert.key, name, "failed", str(error)))
            continue
        log.info("alert %s sent on %s", alert.key, channel.describe())
        results.append(Delivery(alert.key, name, "sent", channel.describe()))
    return results


def build_channels(names: Sequence[str], conn_ids: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Channels from their Connections; a channel that cannot be built maps to its error (reported, not raised)."""
    from factory_providers.notifier.channels import ChannelNotConfiguredError, channel_from_connection

    built: dict[str, Any] = {}
    for name in names:
        try:
            built[name] = channel_from_connection(name, (conn_ids or {}).get(name))
        except ChannelNotConfiguredError as error:
            built[name] = error
    return built


def deliver_alerts(
    alerts: Sequence[Alert],
    *,
    ledger: S3AlertLedger | None,
    channel_factory: Callable[[Sequence[str]], Mapping[str, Any]] = build_channels,
    now: datetime | None = None,
) -> list[Delivery]:
    """Every alert on every channel its severity is routed to; info alerts go nowhere (recorded only)."""
    names = sorted({name for alert in alerts for name in alert.channels})
    channels = channel_factory(names) if names else {}
    return [delivery for alert in alerts for delivery in deliver_alert(alert, channels, ledger, now=now)]


def alert_from_context(context: Mapping[str, Any], policy: AlertPolicy) -> Alert:
    """A `task_failure` alert from an Airflow callback context (task-level or DAG-level)."""
    from pipelines.monitoring.alerts import failure_alert

    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    dag = context.get("dag")
    dag_id = getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None) or getattr(dag, "dag_id", "unknown")
    exception = context.get("exception") or context.get("reason") or ""
    log_url = None
    if ti is not None:
        try:
            log_url = ti.log_url
        except Exception:  # a context without configuration (e.g. tests): the alert still goes out
            log_url = None
    return failure_alert(
        policy,
        dag_id=str(dag_id),
        task_id=str(getattr(ti, "task_id", "dag")),
        run_id=str(context.get("run_id") or getattr(dag_run, "run_id", "") or ""),
        try_number=getattr(ti, "try_number", None),
        error=f"{type(exception).__name__}: {exception}" if isinstance(exception, BaseException) else str(exception),
        log_url=log_url,
        raised_at=datetime.now(UTC),
    )


class _FactoryNotifier(BaseNotifier):
    """Sends one alert on one channel: the given `alert`, or a `task_failure` alert built from the context.

    Deduplicated through the S3 ledger (`dedupe=False` to skip it) and routed by the rubric: a channel the
    alert's severity is not routed to sends nothing.
    """

    channel: ClassVar[str]
    template_fields = ()

    def __init__(
        self,
        *,
        alert: Mapping[str, Any] | None = None,
        conn_id: str | None = None,
        policy_path: str = DEFAULT_ALERT_POLICY,
        dedupe: bool = True,
        s3_conn_id: str = "factory_s3",
    ) -> None:
        super().__init__()
        self.alert = dict(alert) if alert is not None else None
        self.conn_id = conn_id
        self.policy_path = policy_path
        self.dedupe = dedupe
        self.s3_conn_id = s3_conn_id
        self.deliveries: list[Delivery] = []

    def notify(self, context: Any) -> None:
        from factory_providers.notifier.channels import AlertDeliveryError
        from factory_providers.notifier.ledger import S3AlertLedger
        from pipelines.monitoring.alerts import Alert, load_alert_policy

        policy = load_alert_policy(self.policy_path)
        alert = Alert.model_validate(self.alert) if self.alert is not None else alert_from_context(context, policy)
        ledger = None
        if self.dedupe:
            try:
                ledger = S3AlertLedger.connect(self.s3_conn_id)
            except Exception as error:
                log.warning("alert dedupe ledger unavailable (%s): sending without dedupe", error)
        channels = build_channels([self.channel], {self.channel: self.conn_id} if self.conn_id else None)
        self.deliveries = deliver_alert(alert, channels, ledger, only=[self.channel])
        failed = [delivery for delivery in self.deliveries if delivery.status in ("failed", "not_configured")]
        if failed:
            raise AlertDeliveryError("; ".join(f"{d.channel}: {d.detail}" for d in failed))


class WebhookNotifier(_FactoryNotifier):
    """JSON POST of the alert to Connection `factory_webhook`."""

    channel = "webhook"


class EmailNotifier(_FactoryNotifier):
    """Plain-text e-mail of the alert through Connection `factory_smtp`."""

    channel = "email"
