"""The two delivery channels: a JSON POST to a webhook and a plain-text e-mail over SMTP.

Each is a small object built from its Airflow Connection (`from_connection`, at run time) or directly from
its settings (tests, CLI). `send` raises AlertDeliveryError naming the target and what went wrong; it never
retries by itself (the caller releases the dedupe claim and lets the task retry, so a retry is visible).
"""

from __future__ import annotations

import json
import smtplib
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pipelines.monitoring.alerts import Alert

WEBHOOK_CONN_ID = "factory_webhook"
SMTP_CONN_ID = "factory_smtp"


class AlertDeliveryError(RuntimeError):
    """A channel did not accept an alert; the message names the channel, the target and the reason."""


class ChannelNotConfiguredError(LookupError):
    """The channel's Connection does not exist or lacks a required field."""


class AlertChannel(Protocol):
    name: str

    def send(self, alert: Alert) -> None: ...

    def describe(self) -> str: ...


def _connection(conn_id: str) -> Any:
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as error:  # AirflowNotFoundException, or the secrets backend failing
        raise ChannelNotConfiguredError(
            f"connection {conn_id!r} is not configured (set AIRFLOW_CONN_{conn_id.upper()}): {error}"
        ) from None


@dataclass
class WebhookChannel:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 5.0
    auth: tuple[str, str] | None = None
    name: str = "webhook"

    @classmethod
    def from_connection(cls, conn_id: str = WEBHOOK_CONN_ID) -> WebhookChannel:
        conn = _connection(conn_id)
        if not conn.host:
            raise ChannelNotConfiguredError(f"connection {conn_id!r} has no host")
        extra = conn.extra_dejson
        host = conn.host if "://" in conn.host else f"{conn.schema or 'https'}://{conn.host}"
        port = f":{conn.port}" if conn.port else ""
        endpoint = str(extra.get("endpoint", ""))
        headers = {str(key): str(value) for key, value in dict(extra.get("headers", {})).items()}
        if extra.get("token"):
            headers["Authorization"] = f"Bearer {extra['token']}"
        return cls(
            url=f"{host.rstrip('/')}{port}/{endpoint.lstrip('/')}" if endpoint else f"{host.rstrip('/')}{port}",
            headers=headers,
            timeout_s=float(extra.get("timeout", 5.0)),
            auth=(conn.login, conn.password or "") if conn.login else None,
        )

    def send(self, alert: Alert) -> None:
        import httpx

        from pipelines.monitoring.alerts import webhook_payload

        body = json.dumps(webhook_payload(alert)).encode()
        headers = {"Content-Type": "application/json", **self.headers}
        try:
            response = httpx.post(self.url, content=body, headers=headers, timeout=self.timeout_s, auth=self.auth)
        except httpx.HTTPError as error:
            raise AlertDeliveryError(f"webhook {self.url}: {type(error).__name__}: {error}") from None
        if not 200 <= response.status_code < 300:
            raise AlertDeliveryError(f"webhook {self.url} answered {response.status_code}: {response.text[:200]}")

    def describe(self) -> str:
        return f"webhook {self.url}"


@dataclass
class SmtpChannel:
    host: str
    port: int
    from_email: str
    to: list[str]
    login: str | None = None
    password: str | None = None
    starttls: bool = False
    ssl: bool = False
    timeout_s: float = 10.0
    name: str = "email"

    @classmethod
    def from_connection(cls, conn_id: str = SMTP_CONN_ID) -> SmtpChannel:
        conn = _connection(conn_id)
        extra = conn.extra_dejson
        to = extra.get("to")
        recipients = [to] if isinstance(to, str) else list(to or [])
        if not conn.host or not recipients or not extra.get("from_email"):
            raise ChannelNotConfiguredError(
                f"connection {conn_id!r} needs host, extra.from_email and extra.to (got host={conn.host!r}, "
                f"from_email={extra.get('from_email')!r}, to={recipients})"
            )
        use_ssl = bool(extra.get("ssl", False))
        return cls(
            host=conn.host,
            port=int(conn.port or (465 if use_ssl else 25)),
            from_email=str(extra["from_email"]),
            to=[str(address) for address in recipients],
            login=conn.login or None,
            password=conn.password or None,
            starttls=bool(extra.get("starttls", False)),
            ssl=use_ssl,
            timeout_s=float(extra.get("timeout", 10.0)),
        )

    def send(self, alert: Alert) -> None:
        from pipelines.monitoring.alerts import email_message

        subject, body = email_message(alert)
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self.from_email
        message["To"] = ", ".join(self.to)
        message["X-Factory-Alert-Key"] = alert.key
        message.set_content(body)
        client_cls = smtplib.SMTP_SSL if self.ssl else smtplib.SMTP
        try:
            with client_cls(self.host, self.port, timeout=self.timeout_s) as client:
                if self.starttls:
                    client.starttls()
                if self.login:
                    client.login(self.login, self.password or "")
                refused = client.send_message(message)
        except (smtplib.SMTPException, OSError) as error:
            raise AlertDeliveryError(f"SMTP {self.host}:{self.port}: {type(error).__name__}: {error}") from None
        if refused:
            raise AlertDeliveryError(f"SMTP {self.host}:{self.port} refused recipients {sorted(refused)}")

    def describe(self) -> str:
        return f"SMTP {self.host}:{self.port} to {', '.join(self.to)}"


def channel_from_connection(name: str, conn_id: str | None = None) -> AlertChannel:
    if name == "webhook":
        return WebhookChannel.from_connection(conn_id or WEBHOOK_CONN_ID)
    if name == "email":
        return SmtpChannel.from_connection(conn_id or SMTP_CONN_ID)
    raise ValueError(f"unknown alert channel {name!r}: expected 'webhook' or 'email'")
