"""The hourly monitor's records and S3 layout (pure): what one drift run stores, and the signal families it names.

One run of `factory_drift` compares one window of logged traffic with the reference model's training data and
stores, under `monitoring/<dataset>/<model>/drift/<window>/` in `factory-data`:

    drift_report.json       the fast path's DriftReport (every statistic, every finding)
    monitor.json            MonitorReport: the verdict per signal family (data, prediction, concept), links
    evidently.html/.json    Evidently's DataDriftPreset on a bounded sample, for humans
    alerts.json             what was raised and what each channel did with it
    retraining_decision.json  the guarded retraining decision with every check
    system.json             the system family: gateway / Triton latency, errors, queue time, throughput

Per reference version, the profile is built once: `monitoring/<dataset>/<model>/profiles/v<version>/...npz`.
Retraining requests and decisions are logged under `monitoring/<dataset>/<model>/retraining/`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from pipelines.datasets.spec import PREDICTION_COLUMN
from pipelines.monitoring.business import BusinessSignal
from pipelines.monitoring.policy import Severity
from pipelines.monitoring.report import DriftReport, FindingKind, Verdict

# The reference model's score on each row: computed by the monitor on both sides (see MonitorReport.prediction).
SCORE_COLUMN = PREDICTION_COLUMN  # what a dataset spec's business proxy may refer to
ALERT_LEDGER_PREFIX = "monitoring/alert-ledger"
SignalFamily = Literal["data", "prediction", "concept"]
SignalStatus = Literal["ok", "warn", "alert", "insufficient_data", "not_evaluated"]
_STAMP = "%Y%m%dT%H%M%SZ"
_LOG_NAME = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)-(?P<run>[A-Za-z0-9._-]+)\.json$")

DATA_FINDINGS: frozenset[FindingKind] = frozenset(
    {"dataset_drift", "feature_drift", "psi", "null_surge", "missing_column", "new_column", "dtype_change"}
)
PREDICTION_FINDINGS: frozenset[FindingKind] = frozenset({"prediction_drift"})


# ----- S3 layout ----------------------------------------------------------------------------------------------
def model_prefix(dataset: str, model_name: str) -> str:
    return f"monitoring/{dataset}/{model_name}"


def window_id(start: datetime, end: datetime) -> str:
    """`20260301T090000Z--20260301T100000Z`: sorts by time, one S3 path segment."""
    return f"{_stamp(start)}--{_stamp(end)}"


def parse_window_id(text: str) -> tuple[datetime, datetime] | None:
    """The bounds of a `window_id`; None for anything else."""
    start, separator, end = text.partition("--")
    try:
        return (
            (
                datetime.strptime(start, _STAMP).replace(tzinfo=UTC),
                datetime.strptime(end, _STAMP).replace(tzinfo=UTC),
            )
            if separator
            else None
        )
    except ValueError:
        return None


@dataclass(frozen=True)
class MonitorKeys:
    prefix: str

    @property
    def drift_report(self) -> str:
        return f"{self.prefix}/drift_report.json"

    @property
    def monitor(self) -> str:
        return f"{self.prefix}/monitor.json"

    @property
    def evidently_html(self) -> str:
        return f"{self.prefix}/evidently.html"

    @property
    def evidently_json(self) -> str:
        return f"{self.prefix}/evidently.json"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}/alerts.json"

    @property
    def decision(self) -> str:
        return f"{self.prefix}/retraining_decision.json"

    @property
    def system(self) -> str:
        return f"{self.prefix}/system.json"


def monitor_keys(dataset: str, model_name: str, start: datetime, end: datetime) -> MonitorKeys:
    """One folder per (model, window): a re-run of the same window overwrites its own evidence, nothing else."""
    return MonitorKeys(f"{model_prefix(dataset, model_name)}/drift/{window_id(start, end)}")


def profile_key(dataset: str, model_name: str, version: str, feature_spec_version: str, psi_bins: int) -> str:
    """The reference profile of one version, for one feature spec and PSI binning (what changes its bytes)."""
    return f"{model_prefix(dataset, model_name)}/profiles/v{version}/{feature_spec_version}-psi{psi_bins}.npz"


def decision_log_key(dataset: str, model_name: str, decided_at: datetime, run_key: str) -> str:
    return f"{model_prefix(dataset, model_name)}/retraining/decisions/{_stamp(decided_at)}-{run_key}.json"


def request_log_prefix(dataset: str, model_name: str) -> str:
    return f"{model_prefix(dataset, model_name)}/retraining/requests/"


def request_log_key(dataset: str, model_name: str, requested_at: datetime, run_key: str) -> str:
    return f"{request_log_prefix(dataset, model_name)}{_stamp(requested_at)}-{run_key}.json"


def last_request_time(keys: list[str], *, excluding_run: str | None = None) -> datetime | None:
    """The newest retraining request in a listing of the request log; `excluding_run` ignores a run's own
    request (a retried decision task must not be blocked by the cooldown its first attempt started)."""
    times = []
    for key in keys:
        match = _LOG_NAME.match(key.rsplit("/", 1)[-1])
        if match is None or match["run"] == excluding_run:
            continue
        times.append(datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=UTC))
    return max(times, default=None)


def resolve_window(
    window_start: str | datetime | None,
    window_end: str | datetime | None,
    interval_start: datetime | None,
    interval_end: datetime | None,
    now: datetime,
) -> tuple[datetime, datetime]:
    """The window a run checks: both Params if given (replays, backfills), else the run's data interval, else
    (a manual run without one) the last whole hour before `now`."""
    if (window_start is None) != (window_end is None):
        raise ValueError("window_start/window_end: give both bounds or neither")
    if window_start is not None and window_end is not None:
        start, end = _aware(window_start, "window_start"), _aware(window_end, "window_end")
    elif interval_start is not None and interval_end is not None and interval_start < interval_end:
        start, end = _aware(interval_start, "data_interval_start"), _aware(interval_end, "data_interval_end")
    else:
        end = _aware(now, "now").astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        start = end - timedelta(hours=1)
    if start >= end:
        raise ValueError(f"window start {start.isoformat()} is not before its end {end.isoformat()}")
    # Plain stdlib datetimes: Airflow's pendulum bounds do not compare with stdlib aware datetimes.
    return datetime.fromtimestamp(start.timestamp(), tz=UTC), datetime.fromtimestamp(end.timestamp(), tz=UTC)


def _aware(value: str | datetime, name: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{name}: {value!r} is not an ISO 8601 date-time") from None
    if value.tzinfo is None:
        raise ValueError(f"{name}: {value.isoformat()} has no timezone")
    return value


def _stamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"{moment} has no timezone")
    return moment.astimezone(UTC).strftime(_STAMP)


# ----- records ------------------------------------------------------------------------------------------------
class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReferenceModel(_Record):
    """The registered version the window is compared with, and the training data it learned from."""

    model_name: str
    alias: Literal["champion", "candidate"]
    version: str
    run_id: str | None
    snapshot_id: str
    feature_spec_version: str | None  # as recorded on the version (None: not recorded)
    interval_start: AwareDatetime
    interval_end: AwareDatetime
    rows: int
    profile_uri: str


class Signal(_Record):
    """One signal family's verdict, named separately so that "the inputs moved" and "the model's outputs
    moved" (and later "the world changed under the model") are never folded into one word."""

    family: SignalFamily
    status: SignalStatus
    summary: str
    columns: list[str] = Field(default_factory=list)
    finding_kinds: list[FindingKind] = Field(default_factory=list)


class ServingSkew(_Record):
    """Logged (served) probabilities vs the reference model's re-score, on rows the reference version served."""

    rows_compared: int
    max_abs_diff: float | None


class MonitorReport(_Record):
    dataset: str
    reference: ReferenceModel
    interval_start: AwareDatetime
    interval_end: AwareDatetime
    window_rows: int
    served_versions: dict[str, int]
    verdict: Verdict
    summary: str
    drifted_features: list[str]
    signals: dict[SignalFamily, Signal]
    serving_skew: ServingSkew
    evidently_drifted_features: list[str] | None  # None: no Evidently report (insufficient data, or it failed)
    uris: dict[str, str]
    notes: list[str] = Field(default_factory=list)
    business: BusinessSignal | None = None  # the spec's business proxy (None: the spec declares none)


def signals_of(report: DriftReport) -> dict[SignalFamily, Signal]:
    """Data, prediction and concept drift, each with its own status, from one drift report."""
    if report.verdict == "insufficient_data":
        idle = Signal(family="data", status="insufficient_data", summary=report.summary)
        return {
            "data": idle,
            "prediction": idle.model_copy(update={"family": "prediction"}),
            "concept": _concept_not_evaluated(),
        }
    return {
        "data": _signal("data", report, DATA_FINDINGS),
        "prediction": _signal("prediction", report, PREDICTION_FINDINGS),
        "concept": _concept_not_evaluated(),
    }


def _signal(family: SignalFamily, report: DriftReport, kinds: frozenset[FindingKind]) -> Signal:
    findings = [f for f in report.findings if f.kind in kinds and f.severity != Severity.OK]
    loudest = max((finding.severity for finding in findings), key=lambda s: s.rank, default=Severity.OK)
    columns = sorted({finding.column for finding in findings if finding.column})
    if family == "prediction" and report.prediction is None:
        return Signal(family=family, status="not_evaluated", summary="no score column in the reference profile")
    if findings:
        summary = "; ".join(finding.message for finding in findings)
    elif family == "prediction" and report.prediction is not None:
        summary = f"score PSI {report.prediction.statistic or 0.0:.3f} (threshold {report.prediction.threshold:g})"
    else:
        summary = f"no drift in {len(report.features)} features"
    return Signal(
        family=family,
        status=loudest.value,  # type: ignore[arg-type]
        summary=summary,
        columns=columns,
        finding_kinds=sorted({finding.kind for finding in findings}),
    )


def _concept_not_evaluated() -> Signal:
    return Signal(
        family="concept",
        status="not_evaluated",
        summary="needs labels joined to logged predictions: see the factory_feedback report",
    )


def serving_skew(served: pd.DataFrame, rescored: np.ndarray, reference_version: str) -> ServingSkew:
    """How far the served probabilities are from the reference model's own, where that version served.

    Beyond float noise (~1e-6) this is a serving bug, e.g. a Triton backend returning wrong outputs.
    """
    if "version" not in served or "probability" not in served or len(served) != len(rescored):
        return ServingSkew(rows_compared=0, max_abs_diff=None)
    mine = served["version"].astype(str).to_numpy() == str(reference_version)
    logged = pd.to_numeric(served["probability"], errors="coerce").to_numpy(dtype=float)
    both = mine & np.isfinite(logged)
    if not both.any():
        return ServingSkew(rows_compared=0, max_abs_diff=None)
    return ServingSkew(rows_compared=int(both.sum()), max_abs_diff=float(np.max(np.abs(logged[both] - rescored[both]))))
