"""What the view is assembled from: records fetched from MLflow, S3, Redis and Airflow, parsed here (pure).

The fetching side hands over raw bytes and plain values; the parsing into the project's own record types
(`StepRecord`, `DriftReport`, `MonitorReport`, `Alert`, `RetrainingDecision`) happens here, so a file that is
missing, unreadable or of another schema becomes a named problem on its panel and the rest of the page stands.
A source that could not be read at all arrives as a `FetchError` in place of its record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.monitoring.alerts import Alert
from pipelines.monitoring.monitor import MonitorReport, parse_window_id
from pipelines.monitoring.report import DriftReport
from pipelines.monitoring.retraining import RetrainingDecision
from pipelines.rollout.records import ROLLOUTS_PREFIX, StepRecord
from serving.gateway.routing import RouteTable

T = TypeVar("T")
ModelT = TypeVar("ModelT", bound=BaseModel)

DRIFT_REPORT, MONITOR, ALERTS, DECISION, EVIDENTLY = (
    "drift_report.json",
    "monitor.json",
    "alerts.json",
    "retraining_decision.json",
    "evidently.html",
)
DRIFT_FILES = (DRIFT_REPORT, MONITOR, ALERTS, DECISION, EVIDENTLY)


@dataclass(frozen=True)
class FetchError:
    """A source the view could not read, in place of its record: which source, and why (shown on the panel)."""

    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


Fetched = T | FetchError


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VersionRecord(_Record):
    """One registered version as MLflow holds it, with the tags of the run it came from."""

    version: str
    run_id: str | None = None
    created_at: datetime | None = None
    status: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    run_tags: dict[str, str] = Field(default_factory=dict)
    experiment_id: str | None = None
    run_error: str | None = None  # the run could not be read (its tags and MLflow link are then missing)


class RegistryRecord(_Record):
    """The registered model in MLflow: the versions fetched (newest first), its aliases, the applied log seq."""

    versions: list[VersionRecord]
    total_versions: int
    mlflow_aliases: dict[str, str] = Field(default_factory=dict)
    applied_seq: int | None = None  # registered-model tag factory.alias_log.seq


class TrafficRecord(_Record):
    """The gateway's routes of the model in Redis (None: it has none) and what each live replica applies."""

    table: RouteTable | None
    replicas: dict[str, int] = Field(default_factory=dict)  # replica id -> state_version it applies (0: none)


class DagRunRecord(_Record):
    dag_id: str
    run_id: str
    state: str | None
    run_type: str | None = None
    run_after: datetime | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None


class StoredObject(_Record):
    """A listed S3 object: key and when it was last written."""

    key: str
    last_modified: datetime


class DriftWindow(_Record):
    """The files of one monitoring window, each parsed into its record type or named as missing/unreadable."""

    dataset: str
    window: str
    prefix: str  # S3 key prefix of the window's folder (no trailing slash)
    start: datetime | None
    end: datetime | None
    drift_report: DriftReport | None = None
    monitor: MonitorReport | None = None
    alerts: list[Alert] | None = None
    deliveries: list[dict[str, Any]] = Field(default_factory=list)
    decision: RetrainingDecision | None = None
    evidently_html: bool = False
    missing: list[str] = Field(default_factory=list)  # files not written (yet): a window in progress, or skipped
    problems: dict[str, str] = Field(default_factory=dict)  # file -> why it could not be used

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"


class RecordError(ValueError):
    """A stored record that does not parse as its type; the message names the object."""


# ----- rollouts ----------------------------------------------------------------------------------------------
def rollouts_prefix(model: str) -> str:
    return f"{ROLLOUTS_PREFIX}/{model}/"


def latest_rollout(objects: Sequence[StoredObject], model: str) -> str | None:
    """The rollout (or rollback) of `model` written to last, from a listing of `rollouts/<model>/`.

    Rollout ids come from Airflow run ids, which do not sort by time across run types, so the newest write
    decides; a rollout still in progress is therefore the latest one.
    """
    prefix = rollouts_prefix(model)
    newest: dict[str, datetime] = {}
    for item in objects:
        rollout_id, _, name = item.key.removeprefix(prefix).partition("/")
        if not item.key.startswith(prefix) or not rollout_id or not name.endswith(".json"):
            continue
        newest[rollout_id] = max(newest.get(rollout_id, item.last_modified), item.last_modified)
    return max(newest, key=lambda rollout_id: (newest[rollout_id], rollout_id)) if newest else None


def parse_step_records(blobs: Mapping[str, bytes]) -> list[StepRecord]:
    """The step records of one rollout, in step order; RecordError naming the first object that is not one."""
    records = [_parse(StepRecord, body, key) for key, body in blobs.items()]
    return sorted(records, key=lambda record: record.seq)


# ----- monitoring windows ------------------------------------------------------------------------------------
def newest_window(window_ids: Sequence[str]) -> str | None:
    """The latest window folder (`<start>--<end>` sorts by time); names that are not windows are ignored."""
    windows = [window for window in window_ids if parse_window_id(window) is not None]
    return max(windows) if windows else None


def parse_drift_window(
    dataset: str, window: str, prefix: str, blobs: Mapping[str, bytes | FetchError | None]
) -> DriftWindow:
    """A window's files (name -> bytes, None when absent, FetchError when unreadable), each parsed on its own."""
    bounds = parse_window_id(window)
    fields: dict[str, Any] = {"missing": [], "problems": {}}
    for name in DRIFT_FILES:
        body = blobs.get(name)
        if body is None:
            fields["missing"].append(name)
            continue
        if isinstance(body, FetchError):
            fields["problems"][name] = str(body)
            continue
        try:
            _parse_drift_file(name, body, f"{prefix}/{name}", fields)
        except RecordError as error:
            fields["problems"][name] = str(error)
    return DriftWindow(
        dataset=dataset,
        window=window,
        prefix=prefix,
        start=bounds[0] if bounds else None,
        end=bounds[1] if bounds else None,
        **fields,
    )


def _parse_drift_file(name: str, body: bytes, key: str, fields: dict[str, Any]) -> None:
    if name == DRIFT_REPORT:
        fields["drift_report"] = _parse(DriftReport, body, key)
    elif name == MONITOR:
        fields["monitor"] = _parse(MonitorReport, body, key)
    elif name == DECISION:
        fields["decision"] = _parse(RetrainingDecision, body, key)
    elif name == ALERTS:  # {"alerts": [Alert...], "deliveries": [{alert_key, channel, status, detail}...]}
        payload = _json(body, key)
        if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
            raise RecordError(f"{key} holds no 'alerts' list")
        fields["alerts"] = [_validate(Alert, item, f"{key} alert {i}") for i, item in enumerate(payload["alerts"])]
        deliveries = payload.get("deliveries") or []
        fields["deliveries"] = [item for item in deliveries if isinstance(item, dict)]
    elif name == EVIDENTLY:
        fields["evidently_html"] = bool(body)


def _parse(model: type[ModelT], body: bytes, key: str) -> ModelT:
    return _validate(model, _json(body, key), key)


def _json(body: bytes, key: str) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RecordError(f"{key} is not JSON ({error})") from None


def _validate(model: type[ModelT], payload: Any, where: str) -> ModelT:
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(record)"
        raise RecordError(
            f"{where} is not a {model.__name__} ({error.error_count()} problem(s); {field}: {first['msg']})"
        ) from None
