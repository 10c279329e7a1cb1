"""The alert dedupe ledger in S3: one create-only object per (alert key, channel, time slot).

Why S3 and not Airflow Variables: a Variable has no compare-and-set, so two tasks (or a task and a failure
callback on another worker) that both read "not sent yet" would both send. A PUT with `If-None-Match: *`
succeeds for exactly one writer (SeaweedFS honours it; the registry's alias log relies on the same), works
from any process with the S3 Connection (callbacks, CLI, tests: no Airflow DB needed), and the claims double
as the record of what was delivered when. The slot arithmetic is in `pipelines.monitoring.alerts`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pipelines.monitoring.alerts import dedupe_slot, ledger_key, suppressed

if TYPE_CHECKING:
    from pipelines.monitoring.alerts import Alert

DEFAULT_BUCKET = "factory-data"
_LOST_RACE = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_MISSING = {"NoSuchKey", "404", "NotFound"}


@dataclass(frozen=True)
class Claim:
    key: str
    slot: int


class S3AlertLedger:
    """Claims delivery slots; `s3` is a boto3 S3 client (in tasks: `S3AlertLedger.connect()`)."""

    def __init__(self, s3: Any, *, bucket: str = DEFAULT_BUCKET, prefix: str | None = None) -> None:
        from pipelines.monitoring.monitor import ALERT_LEDGER_PREFIX

        self._s3 = s3
        self.bucket = bucket
        self.prefix = prefix or ALERT_LEDGER_PREFIX

    @classmethod
    def connect(cls, s3_conn_id: str = "factory_s3", bucket: str = DEFAULT_BUCKET) -> S3AlertLedger:
        from factory_providers.s3.hooks import FactoryS3Hook

        return cls(FactoryS3Hook(s3_conn_id).get_conn(), bucket=bucket)

    def claim(self, alert: Alert, channel: str, now: datetime) -> Claim | None:
        """The claim to deliver `alert` on `channel` now, or None if that would be a duplicate."""
        from botocore.exceptions import ClientError

        window: timedelta = alert.dedupe_window
        slot = dedupe_slot(now, window)
        previous = self._claimed_at(ledger_key(self.prefix, alert.key, channel, slot - 1))
        if suppressed(now, window, slot_claimed=False, previous_claim_at=previous):
            return None
        key = ledger_key(self.prefix, alert.key, channel, slot)
        body = {
            "alert_key": alert.key,
            "channel": channel,
            "claimed_at": now.isoformat(),
            "title": alert.title,
            "report_uri": alert.report_uri,
        }
        try:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=json.dumps(body).encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as error:
            if _codes(error) & _LOST_RACE:
                return None  # the slot is claimed: delivered (or being delivered) by someone else
            raise
        return Claim(key=key, slot=slot)

    def release(self, claim: Claim) -> None:
        """Give a slot back after a failed delivery, so the retry (or the next run) sends the alert."""
        self._s3.delete_object(Bucket=self.bucket, Key=claim.key)

    def _claimed_at(self, key: str) -> datetime | None:
        from botocore.exceptions import ClientError

        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as error:
            if _codes(error) & _MISSING:
                return None
            raise
        return datetime.fromisoformat(json.loads(body)["claimed_at"])


def _codes(error: Any) -> set[str]:
    """The S3 error code and HTTP status of a ClientError (servers differ in which one they fill in)."""
    response = getattr(error, "response", {}) or {}
    return {
        str(response.get("Error", {}).get("Code", "")),
        str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")),
    }
