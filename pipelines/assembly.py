"""Pure glue for the `factory_train` DAG: request resolution, S3 layout, the records tasks hand each other.

The DAG's tasks run in separate processes (and possibly on separate workers), so everything they share goes
through S3 and small XComs. Keeping the request parsing, the key layout and the MLflow flattening here, free of
Airflow and I/O, means every task derives the same values from the same Params and the rules are unit-testable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipelines.config_loading import format_validation_error
from pipelines.datasets.spec import DatasetSpec, TimeInterval, load_dataset_spec
from pipelines.datasets.split import SplitRecord, TimeSplit, time_split
from pipelines.datasets.target import TargetReport, apply_target
from pipelines.evaluation.report import EvaluationReport
from pipelines.export.parity import ParityReport
from pipelines.lineage import CodeLineage, DataLineage, EnvironmentLineage, FeatureLineage, Governance, RunRecord
from pipelines.training.config import TrainingConfig, default_training_config, merge_overrides

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET_SPEC = "pipelines/configs/datasets/flights.yaml"
DEFAULT_GATE_POLICY = "pipelines/configs/policies/gate.yaml"
DATA_BUCKET = "factory-data"
CANDIDATE_ALIAS = "candidate"
# How the embedded (SQLite) source stores timestamps: ISO 8601 UTC text, which sorts like the instants it names,
# so the extraction's range predicate on text is a range predicate on time.
SOURCE_TIME_TEXT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_NUMERIC_LOGICAL_TYPES = {"integer", "float", "number"}


class TrainRequestError(ValueError):
    """The trigger Params of a training run are unusable; the message names the Param and the problem."""


class TrainRequest(BaseModel):
    """The Params of one `factory_train` run, as the trigger form sends them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset_spec: str = Field(default=DEFAULT_DATASET_SPEC, min_length=1)
    trainer: Literal["hgb", "logreg", "mlp"] = "hgb"
    source: Literal["table", "files"] = "table"
    overrides: dict[str, Any] = Field(default_factory=dict)
    gate_policy: str = Field(default=DEFAULT_GATE_POLICY, min_length=1)
    interval_start: AwareDatetime | None = None
    interval_end: AwareDatetime | None = None
    owner: str | None = None

    @field_validator("interval_start", "interval_end", "owner", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        """The trigger form sends an emptied text field as "": that means "use the default"."""
        return None if isinstance(value, str) and not value.strip() else value


@dataclass(frozen=True)
class ResolvedRequest:
    """A request with its defaults filled in from the dataset spec and the checked-in training config."""

    spec: DatasetSpec
    spec_path: Path
    config: TrainingConfig
    interval: TimeInterval
    owner: str
    source: Literal["table", "files"] = "table"
    gate_policy: Path = REPOSITORY_ROOT / DEFAULT_GATE_POLICY


def resolve_request(params: Mapping[str, Any], *, newest_row: datetime | None = None) -> ResolvedRequest:
    """Validate the Params, load the spec and the training config, and fill the defaults.

    Done by every task from the same Params (cheap: YAML and pydantic only), so no task depends on another's
    XCom for its configuration, and a typo in the form fails the first task instead of the training one.
    `newest_row`: given for a drift-triggered run (asset event), the source's newest row time; with no interval
    in the Params, the run then trains on the latest data (see `retraining_interval`).
    """
    try:
        request = TrainRequest.model_validate(dict(params))
    except ValidationError as error:
        raise TrainRequestError(f"invalid factory_train params: {format_validation_error(error)}") from None
    spec_path = Path(request.dataset_spec)
    spec_path = spec_path if spec_path.is_absolute() else REPOSITORY_ROOT / spec_path
    spec = load_dataset_spec(spec_path)
    if request.source == "files" and spec.source.files is None:
        raise TrainRequestError(
            f"source: 'files' asked for, but dataset spec {spec.name!r} ({spec_path}) has no source.files block; "
            "use source 'table' or declare source.files (uri_prefix, format) in the spec"
        )
    config = merge_overrides(default_training_config(request.trainer), request.overrides)
    gate_policy = _repository_path(request.gate_policy)
    if not gate_policy.is_file():  # checked here so a typo fails the first task, not the gate after training
        raise TrainRequestError(f"gate_policy: {gate_policy} is not a file")
    return ResolvedRequest(
        spec=spec,
        spec_path=spec_path,
        config=config,
        interval=_interval(request, spec, newest_row),
        owner=request.owner or spec.owner,
        source=request.source,
        gate_policy=gate_policy,
    )


def _repository_path(value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else REPOSITORY_ROOT / path


def _interval(request: TrainRequest, spec: DatasetSpec, newest_row: datetime | None) -> TimeInterval:
    start, end = request.interval_start, request.interval_end
    if start is None and end is None:
        if spec.split.initial_interval is None:
            raise TrainRequestError(
                f"interval_start/interval_end: not given and dataset spec {spec.name!r} has no "
                "split.initial_interval to default to"
            )
        if newest_row is not None:
            return retraining_interval(spec.split.initial_interval, newest_row)
        return spec.split.initial_interval
    if start is None or end is None:
        raise TrainRequestError("interval_start/interval_end: give both bounds or neither")
    if start >= end:
        raise TrainRequestError(f"interval_start {start.isoformat()} is not before interval_end {end.isoformat()}")
    return TimeInterval(start=start, end=end)


def retraining_interval(initial: TimeInterval, newest_row: datetime) -> TimeInterval:
    """A drift-triggered retraining learns from the latest labelled data: a window as long as the spec's initial
    one, ending just after the newest row, so the model sees the regime the monitor saw drift into."""
    if newest_row.tzinfo is None:
        raise TrainRequestError(f"newest row time {newest_row} has no timezone")
    end = (newest_row + timedelta(seconds=1)).replace(microsecond=0)  # half-open: the newest row is inside
    return TimeInterval(start=end - (initial.end - initial.start), end=end)


# ----- S3 layout --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotKeys:
    """Where one snapshot lives: content-addressed, so the keys are write-once."""

    prefix: str
    data: str
    manifest: str

    def validation_prefix(self, run_key: str) -> str:
        """Validation evidence sits next to the snapshot, one folder per run (reports carry a timestamp)."""
        return f"{self.prefix}/validation/{run_key}"


def snapshot_keys(dataset: str, snapshot_id: str) -> SnapshotKeys:
    prefix = f"snapshots/{dataset}/{snapshot_id}"
    return SnapshotKeys(prefix=prefix, data=f"{prefix}/data.parquet", manifest=f"{prefix}/manifest.json")


def run_key(airflow_run_id: str | None) -> str:
    """An Airflow run id as one S3 path segment (run ids hold ':' and '+', which tools quote inconsistently)."""
    key = re.sub(r"[^A-Za-z0-9._-]+", "_", airflow_run_id or "").strip("_")
    if not key:
        raise ValueError(f"run id {airflow_run_id!r} has no usable characters for an S3 key")
    return key


def run_prefix(dataset: str, airflow_run_id: str | None) -> str:
    """Per-run working area: the trained model, its evaluation and plots, before MLflow holds them."""
    return f"runs/{dataset}/{run_key(airflow_run_id)}"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


# ----- extraction -------------------------------------------------------------------------------------------
def source_time_text(moment: datetime) -> str:
    """A bound of an extraction interval in the SQLite source's timestamp text format."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment} has no timezone: interval bounds must be timezone-aware")
    return moment.astimezone(UTC).strftime(SOURCE_TIME_TEXT_FORMAT)


def conform_source_frame(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Type what a source returned as the spec declares it, where the reader cannot know.

    The time column becomes UTC timestamps in nanoseconds (SQLite returns text, PostgreSQL offset-aware
    datetimes, Parquet files may hold microseconds), and a numeric column that is entirely NULL in this interval
    (e.g. gusts in a calm fortnight) becomes float64 instead of an object column of None, which would change the
    snapshot's schema with the weather. A missing string is None whatever the reader made of it (CSV gives NaN,
    and an all-NaN column would otherwise be encoded as float): the same rows from a table or from files must
    give the same snapshot. Anything else is left alone: wrong types are validation's job to report, not
    extraction's to hide.
    """
    conformed = frame.copy()
    time_column = spec.time_column
    conformed[time_column] = pd.to_datetime(conformed[time_column], utc=True, format="ISO8601").dt.as_unit("ns")
    for name, column in spec.expectations.columns.items():
        if name not in conformed:
            continue
        values = conformed[name]
        if column.type in _NUMERIC_LOGICAL_TYPES and values.isna().all():
            conformed[name] = values.astype("float64")
        elif column.type == "string":
            conformed[name] = values.astype(object).where(values.notna(), None)
    return conformed


# ----- training ---------------------------------------------------------------------------------------------
class TrainingSummary(BaseModel):
    """What the training task did, stored next to the model for the evaluation and registration tasks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    snapshot_id: str
    config: TrainingConfig
    target: TargetReport
    split: SplitRecord
    fit_summary: dict[str, float]
    trained_at: AwareDatetime


def labelled_split(frame: pd.DataFrame, spec: DatasetSpec) -> tuple[TimeSplit, TargetReport]:
    """Label the snapshot rows, then split them by time: the same rows for training and evaluation tasks."""
    labelled, target = apply_target(frame, spec)
    return time_split(labelled, spec), target


# ----- MLflow records ---------------------------------------------------------------------------------------
UNRESOLVED_EXPERIMENT = "factory/unresolved-requests"


def experiment_name(dataset: str) -> str:
    """One MLflow experiment per dataset: every model kind and every run of it, failed ones included."""
    return f"factory/{dataset}"


def failure_experiment(params: Mapping[str, Any]) -> str:
    """Where a failed run is recorded: the dataset's experiment, or a catch-all when the spec itself is broken."""
    try:
        return experiment_name(resolve_request(params).spec.name)
    except (ValueError, OSError):  # invalid Params, spec or training config: all ValueErrors; OSError: no file
        return UNRESOLVED_EXPERIMENT


@dataclass(frozen=True)
class RunEvidence:
    """What the MLflow run of one training holds, besides its files."""

    record: RunRecord
    params: dict[str, str]
    metrics: dict[str, float]


def run_evidence(
    request: ResolvedRequest,
    *,
    snapshot_id: str,
    snapshot_uri: str,
    interval: TimeInterval,
    summary: TrainingSummary,
    evaluation: EvaluationReport,
    parity: ParityReport,
    artifact_uris: dict[str, str],
    validation_warnings: list[str],
    code: CodeLineage,
    environment: EnvironmentLineage,
) -> RunEvidence:
    """The run record and its flat params/metrics; `code` and `environment` are measured by the caller."""
    headline = evaluation.headline.model_dump(exclude={"undefined"})
    record = RunRecord(
        code=code,
        data=DataLineage(
            dataset=request.spec.name,
            spec_version=request.spec.version,
            snapshot_id=snapshot_id,
            snapshot_uri=snapshot_uri,
            split_rows=summary.split.rows,
        ),
        features=FeatureLineage.from_spec(request.spec.features),
        config=summary.config,
        environment=environment,
        metrics={f"test.{name}": value for name, value in headline.items()},
        artifacts=artifact_uris,
        # Validation warnings do not block a run, but whoever reviews the candidate must see them.
        governance=Governance(
            owner=request.owner, risk_notes=[f"validation warning: {w}" for w in validation_warnings]
        ),
    )
    sections = record.model_dump(mode="json", exclude={"metrics", "artifacts"}) | {
        "target": summary.target.model_dump(mode="json"),
        "split": summary.split.model_dump(mode="json"),
        "interval": interval.model_dump(mode="json"),  # the snapshot's: Params may have left it to a trigger
        "source": request.source,  # table or files: the manifest's source_query says which objects or query
    }
    return RunEvidence(record=record, params=flatten_params(sections), metrics=run_metrics(evaluation, summary, parity))


def run_metrics(evaluation: EvaluationReport, summary: TrainingSummary, parity: ParityReport) -> dict[str, float]:
    """Every metric a training run logs: evaluation (headline, slices, latency, size), fit summary, parity."""
    metrics = evaluation_metrics(evaluation) | {f"fit.{name}": value for name, value in summary.fit_summary.items()}
    metrics["parity.max_abs_diff"] = parity.max_abs_diff
    return metrics


def flatten_params(sections: Mapping[str, Any]) -> dict[str, str]:
    """Nested records as flat MLflow params: `config.params.max_iter` -> "300"; lists joined by commas.

    MLflow params are searchable strings of at most 6000 characters; the full record is logged as JSON too.
    """
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, list | tuple):
            flat[prefix] = ",".join(str(item) for item in value)
        else:
            flat[prefix] = "" if value is None else str(value)

    walk("", sections)
    return {key: value[:6000] for key, value in flat.items()}


def evaluation_metrics(report: EvaluationReport, *, prefix: str = "test") -> dict[str, float]:
    """Headline and per-slice metrics as flat MLflow metric names (undefined metrics are left out)."""
    metrics: dict[str, float] = {}

    def add(name: str, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                metrics[f"{name}.{key}"] = float(value)

    add(prefix, report.headline.model_dump(exclude={"undefined"}))
    for column, slices in report.slices.items():
        for item in slices:
            add(
                f"{prefix}.slice.{column}.{_metric_segment(item.value)}", item.metrics.model_dump(exclude={"undefined"})
            )
    add("latency", report.latency.model_dump())
    metrics["model_size_bytes"] = float(report.model_size_bytes)
    return metrics


def _metric_segment(value: str) -> str:
    """A slice value usable inside an MLflow metric name (letters, digits, _ - . / and space only)."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", value) or "_"
