"""Delayed labels as pure logic: join arriving labels to logged predictions, score each served version online,
and name data, concept and model drift separately (the seed's drift table).

- **model drift**: the version performs worse online than it did on its own test rows at training time
  (ROC AUC down, Brier score up beyond `feedback.yaml`), overall or in a slice. It says *that* the model got
  worse, not why.
- **concept drift**: P(y|x) changed. Seen as calibration breaking: the version's probabilities no longer match
  the observed outcome rate (|observed - mean predicted| and the ECE rise). A calibrated model stays
  calibrated under pure covariate shift, so a calibration break points at the relation x -> y itself. When
  the inputs drifted at the same time the report says so: then part of the break may be extrapolation.
- **data drift**: P(x) changed. Not recomputed here: it is the hourly `factory_drift` verdict for the windows
  the labelled predictions were served in (passed in as `DriftWindow`s).

The join is by (request_id, row): a label for an id the log does not hold (unsampled, or older than the
lookback) is counted as unmatched, repeated labels are collapsed (the latest landing wins, conflicting ones
are counted), a request logged twice (a client retry with the same id) counts once, the first answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import AwareDatetime, Field

from pipelines.config_loading import StrictModel, load_yaml_model
from pipelines.datasets.spec import BusinessMetricSpec
from pipelines.evaluation.metrics import compute_metrics, metrics_by_slice
from pipelines.monitoring.alerts import Alert, AlertPolicy, AlertType, make_alert
from pipelines.monitoring.inference_log import LOGGED_OUTPUT
from pipelines.monitoring.policy import Band, Severity

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FEEDBACK_POLICY = "pipelines/configs/policies/feedback.yaml"
TRAINING_PREFIX = "test"  # the split a training run's metrics are logged for (pipelines.assembly)
Family = Literal["data", "concept", "model"]
FamilyStatus = Literal["ok", "warn", "alert", "insufficient_data", "not_evaluated"]
FindingKind = Literal["model_drift", "slice_model_drift", "concept_drift"]


class FeedbackPolicyError(ValueError):
    """A feedback policy file that cannot be used; the message names the file and the field."""


class ModelDriftPolicy(StrictModel):
    roc_auc_drop: Band = Band(warn=0.03, alert=0.06)
    brier_rise: Band = Band(warn=0.01, alert=0.03)


class ConceptDriftPolicy(StrictModel):
    calibration_gap: Band = Band(warn=0.04, alert=0.08)
    ece_rise: Band = Band(warn=0.03, alert=0.06)


class SlicePolicy(StrictModel):
    min_rows: int = Field(300, ge=1)
    roc_auc_drop: Band = Band(warn=0.05, alert=0.10)


class FeedbackPolicy(StrictModel):
    version: str = Field(min_length=1)
    min_labelled_rows: int = Field(500, ge=1)
    prediction_lookback_hours: int = Field(168, ge=1)
    decision_threshold: float = Field(0.5, gt=0, lt=1)
    calibration_bins: int = Field(10, ge=2)
    model_drift: ModelDriftPolicy = ModelDriftPolicy()
    concept_drift: ConceptDriftPolicy = ConceptDriftPolicy()
    slices: SlicePolicy = SlicePolicy()


def load_feedback_policy(path: str | Path = REPOSITORY_ROOT / DEFAULT_FEEDBACK_POLICY) -> FeedbackPolicy:
    path = Path(path)
    path = path if path.is_absolute() else REPOSITORY_ROOT / path
    return load_yaml_model(path, FeedbackPolicy, FeedbackPolicyError, "feedback policy")


# ----- join ---------------------------------------------------------------------------------------------------
class JoinCounts(StrictModel):
    labels: int  # label records read (before collapsing repeats)
    predictions: int  # logged prediction rows read
    joined: int
    unmatched_labels: int  # labels whose request id the log does not hold
    repeated_labels: int  # label records collapsed into another of the same id
    conflicting_labels: int  # ids whose repeated labels disagree (the latest landing was kept)
    repeated_predictions: int  # logged rows of an id logged before (the first answer was kept)


@dataclass(frozen=True)
class JoinResult:
    joined: pd.DataFrame  # one row per labelled prediction: the logged columns + label, event_time, label_time
    counts: JoinCounts


def join_labels(predictions: pd.DataFrame, labels: pd.DataFrame) -> JoinResult:
    """Labels joined to logged predictions by (request_id, row); see the module docstring for the rules."""
    if predictions.empty:  # no log at all (nothing served, or nothing sampled): every label is unmatched
        predictions = pd.DataFrame(
            {"request_id": pd.Series(dtype=object), "timestamp": pd.Series(dtype="datetime64[ns, UTC]"),
             "version": pd.Series(dtype=object), LOGGED_OUTPUT: pd.Series(dtype=float)}
        )  # fmt: skip
    for name, frame, needed in (
        ("predictions", predictions, ("request_id", "timestamp", "version", LOGGED_OUTPUT)),
        ("labels", labels, ("request_id", "label", "label_time")),
    ):
        missing = sorted(set(needed) - set(frame.columns))
        if missing:
            raise KeyError(f"{name} lack columns {missing}")
    logged = predictions.copy()
    if "row" not in logged:
        logged["row"] = 0
    logged = logged.sort_values("timestamp", kind="stable")
    first_answers = logged.drop_duplicates(["request_id", "row"], keep="first")
    landed = labels.copy()
    if "row" not in landed:
        landed["row"] = 0
    landed = landed.sort_values("label_time", kind="stable")
    distinct = landed.groupby(["request_id", "row"], sort=False)["label"].nunique()
    latest = landed.drop_duplicates(["request_id", "row"], keep="last")
    joined = first_answers.merge(latest, on=["request_id", "row"], how="inner", validate="one_to_one")
    counts = JoinCounts(
        labels=len(labels),
        predictions=len(predictions),
        joined=len(joined),
        unmatched_labels=len(latest) - len(joined),
        repeated_labels=len(landed) - len(latest),
        conflicting_labels=int((distinct > 1).sum()),
        repeated_predictions=len(logged) - len(first_answers),
    )
    return JoinResult(joined=joined.reset_index(drop=True), counts=counts)


# ----- metrics ------------------------------------------------------------------------------------------------
class Scores(StrictModel):
    """What is compared online vs at training time; None when undefined (e.g. ROC AUC on one class)."""

    n: int
    positive_rate: float | None
    mean_predicted: float | None = None
    roc_auc: float | None
    brier: float | None
    ece: float | None

    @property
    def calibration_gap(self) -> float | None:
        """Observed positive rate minus mean predicted probability (calibration in the large)."""
        if self.positive_rate is None or self.mean_predicted is None:
            return None
        return self.positive_rate - self.mean_predicted


def online_scores(y: np.ndarray, p: np.ndarray, policy: FeedbackPolicy) -> Scores:
    metrics = compute_metrics(y, p, policy.decision_threshold, policy.calibration_bins)
    return Scores(
        n=metrics.n,
        positive_rate=float(y.mean()) if y.size else None,
        mean_predicted=float(p.mean()) if p.size else None,
        roc_auc=metrics.roc_auc,
        brier=metrics.brier,
        ece=metrics.ece,
    )


def training_scores(
    run_metrics: Mapping[str, float], *, slice_column: str | None = None, value: str = ""
) -> Scores | None:
    """The version's test-split scores as its training run logged them (`test.roc_auc`, and per slice
    `test.slice.<column>.<value>.roc_auc`); None when the run logged none for that population."""
    from pipelines.assembly import _metric_segment  # the one spelling of slice values in metric names

    prefix = TRAINING_PREFIX
    if slice_column is not None:
        prefix = f"{TRAINING_PREFIX}.slice.{slice_column}.{_metric_segment(value)}"
    n = run_metrics.get(f"{prefix}.n")
    if n is None or n <= 0:
        return None
    positives = run_metrics.get(f"{prefix}.positives")
    return Scores(
        n=int(n),
        positive_rate=None if positives is None else float(positives) / float(n),
        roc_auc=run_metrics.get(f"{prefix}.roc_auc"),
        brier=run_metrics.get(f"{prefix}.brier"),
        ece=run_metrics.get(f"{prefix}.ece"),
    )


# ----- the report ---------------------------------------------------------------------------------------------
class Finding(StrictModel):
    kind: FindingKind
    severity: Severity
    version: str
    slice: str | None = None  # "carrier=UA"
    message: str


class SliceFeedback(StrictModel):
    column: str
    value: str
    online: Scores
    training: Scores | None
    roc_auc_drop: float | None
    judged: bool  # enough rows on both sides


class VersionFeedback(StrictModel):
    version: str
    rows: int
    status: Literal["judged", "insufficient_data", "no_training_metrics"]
    online: Scores
    training: Scores | None
    roc_auc_drop: float | None
    brier_rise: float | None
    ece_rise: float | None
    slices: list[SliceFeedback]


class DriftWindow(StrictModel):
    """One factory_drift verdict (monitor.json) for a window the labelled predictions were served in."""

    interval_start: AwareDatetime
    interval_end: AwareDatetime
    verdict: str
    drifted_features: list[str] = Field(default_factory=list)


class FamilySignal(StrictModel):
    family: Family
    status: FamilyStatus
    summary: str
    versions: list[str] = Field(default_factory=list)
    columns: list[str] = Field(default_factory=list)


class FeedbackReport(StrictModel):
    dataset: str
    model_name: str
    label_window_start: AwareDatetime
    label_window_end: AwareDatetime
    policy_version: str
    join: JoinCounts
    versions: list[VersionFeedback]
    findings: list[Finding]
    signals: dict[Family, FamilySignal]
    business: dict[str, float | int | str | None] = Field(default_factory=dict)
    uris: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)

    @property
    def verdict(self) -> FamilyStatus:
        statuses = [signal.status for signal in self.signals.values() if signal.family != "data"]
        for status in ("alert", "warn", "ok"):
            if status in statuses:
                return status  # type: ignore[return-value]
        return "insufficient_data"


def _drop(training: float | None, online: float | None) -> float | None:
    return None if training is None or online is None else training - online


def _rise(training: float | None, online: float | None) -> float | None:
    return None if training is None or online is None else online - training


def assess_version(
    version: str,
    rows: pd.DataFrame,
    run_metrics: Mapping[str, float] | None,
    slices: Sequence[str],
    policy: FeedbackPolicy,
) -> tuple[VersionFeedback, list[Finding]]:
    """One served version's online scores vs its training-time scores, and what that names."""
    y = rows["label"].to_numpy(dtype=np.int64)
    p = pd.to_numeric(rows[LOGGED_OUTPUT], errors="coerce").to_numpy(dtype=float)
    online = online_scores(y, p, policy)
    training = training_scores(run_metrics) if run_metrics else None
    slice_results = []
    for column in slices:
        if column not in rows:
            continue
        for item in metrics_by_slice(
            y, p, rows[column].to_numpy(dtype=object), policy.slices.min_rows, policy.decision_threshold,
            policy.calibration_bins,
        ):  # fmt: skip
            base = training_scores(run_metrics, slice_column=column, value=item.value) if run_metrics else None
            scores = Scores(
                n=item.metrics.n, positive_rate=item.metrics.positives / item.metrics.n if item.metrics.n else None,
                roc_auc=item.metrics.roc_auc, brier=item.metrics.brier, ece=item.metrics.ece,
            )  # fmt: skip
            judged = base is not None and scores.n >= policy.slices.min_rows and base.n >= policy.slices.min_rows
            drop = _drop(base.roc_auc if base else None, scores.roc_auc) if judged else None
            slice_results.append(SliceFeedback(column=column, value=item.value, online=scores, training=base,
                                               roc_auc_drop=drop, judged=judged))  # fmt: skip
    if training is None:
        status = "no_training_metrics"
    elif online.n < policy.min_labelled_rows:
        status = "insufficient_data"
    else:
        status = "judged"
    result = VersionFeedback(
        version=version, rows=online.n, status=status, online=online, training=training,
        roc_auc_drop=_drop(training.roc_auc if training else None, online.roc_auc),
        brier_rise=_rise(training.brier if training else None, online.brier),
        ece_rise=_rise(training.ece if training else None, online.ece), slices=slice_results,
    )  # fmt: skip
    return result, _findings(result, policy) if status == "judged" else []


def _findings(result: VersionFeedback, policy: FeedbackPolicy) -> list[Finding]:
    findings: list[Finding] = []
    version, online, training = result.version, result.online, result.training
    if training is None:
        return findings
    model = policy.model_drift
    level = _loudest(model.roc_auc_drop.level(result.roc_auc_drop), model.brier_rise.level(result.brier_rise))
    if level != Severity.OK:
        findings.append(
            Finding(
                kind="model_drift",
                severity=level,
                version=version,
                message=f"v{version} online ROC AUC {_fmt(online.roc_auc)} vs {_fmt(training.roc_auc)} at "
                f"training (drop {_fmt(result.roc_auc_drop)}), Brier {_fmt(online.brier)} vs "
                f"{_fmt(training.brier)} (rise {_fmt(result.brier_rise)}) on {online.n} labelled rows",
            )
        )
    concept = policy.concept_drift
    gap = online.calibration_gap
    level = _loudest(concept.calibration_gap.level(abs(gap) if gap is not None else None),
                     concept.ece_rise.level(result.ece_rise))  # fmt: skip
    if level != Severity.OK:
        findings.append(
            Finding(
                kind="concept_drift",
                severity=level,
                version=version,
                message=f"v{version} is no longer calibrated: {_pct(online.positive_rate)} delayed observed vs "
                f"{_pct(online.mean_predicted)} predicted, ECE {_fmt(online.ece)} vs {_fmt(training.ece)} "
                "at training",
            )
        )
    for item in result.slices:
        level = policy.slices.roc_auc_drop.level(item.roc_auc_drop) if item.judged else Severity.OK
        if level != Severity.OK:
            findings.append(
                Finding(
                    kind="slice_model_drift",
                    severity=level,
                    version=version,
                    slice=f"{item.column}={item.value}",
                    message=f"v{version} {item.column}={item.value}: online ROC AUC {_fmt(item.online.roc_auc)} vs "
                    f"{_fmt(item.training.roc_auc)} at training on {item.online.n} rows",
                )
            )
    return findings


def data_signal(windows: Sequence[DriftWindow]) -> FamilySignal:
    """Data drift as factory_drift saw it in the windows the labelled predictions were served in."""
    judged = [window for window in windows if window.verdict in ("ok", "warn", "alert")]
    if not judged:
        return FamilySignal(
            family="data", status="not_evaluated",
            summary="no factory_drift verdict covers the labelled predictions' serving time",
        )  # fmt: skip
    loudest = max(judged, key=lambda window: Severity(window.verdict).rank).verdict
    columns = sorted({name for window in judged for name in window.drifted_features})
    counts = {verdict: sum(window.verdict == verdict for window in judged) for verdict in ("ok", "warn", "alert")}
    summary = f"factory_drift over {len(judged)} window(s): " + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    if columns:
        summary += f"; drifted features: {', '.join(columns)}"
    return FamilySignal(family="data", status=loudest, summary=summary, columns=columns)  # type: ignore[arg-type]


def name_drift(
    versions: Sequence[VersionFeedback], findings: Sequence[Finding], data: FamilySignal
) -> dict[Family, FamilySignal]:
    """The three families, each with its own status: the report never folds them into one word."""
    judged = [version for version in versions if version.status == "judged"]
    signals: dict[Family, FamilySignal] = {"data": data}
    for family, kinds in (("model", {"model_drift", "slice_model_drift"}), ("concept", {"concept_drift"})):
        mine = [finding for finding in findings if finding.kind in kinds]
        if not judged:
            why = "; ".join(f"v{v.version}: {v.status.replace('_', ' ')} ({v.rows} rows)" for v in versions)
            signals[family] = FamilySignal(family=family, status="insufficient_data", summary=why or "no labelled rows")
            continue
        if not mine:
            summary = "; ".join(_healthy(version, family) for version in judged)
            signals[family] = FamilySignal(family=family, status="ok", summary=summary,
                                           versions=[v.version for v in judged])  # fmt: skip
            continue
        level = _loudest(*(finding.severity for finding in mine))
        summary = "; ".join(finding.message for finding in mine)
        if family == "concept":
            summary += _input_context(data)
        signals[family] = FamilySignal(
            family=family, status=level.value, summary=summary,  # type: ignore[arg-type]
            versions=sorted({finding.version for finding in mine}),
            columns=sorted({finding.slice for finding in mine if finding.slice}),
        )  # fmt: skip
    return signals


def _input_context(data: FamilySignal) -> str:
    if data.status == "ok":
        return " - while the inputs were stable (factory_drift ok): the relation x -> y changed"
    if data.status in ("warn", "alert"):
        return f" - the inputs drifted too ({data.summary}): part of it may be extrapolation, not a new relation"
    return " - input drift unknown (no factory_drift verdict for the period)"


def _healthy(version: VersionFeedback, family: Family) -> str:
    online = version.online
    if family == "model":
        drop = _fmt(version.roc_auc_drop)
        return f"v{version.version}: ROC AUC {_fmt(online.roc_auc)} (drop {drop}) on {online.n} rows"
    return f"v{version.version}: {_pct(online.positive_rate)} observed vs {_pct(online.mean_predicted)} predicted"


def build_report(
    *,
    dataset: str,
    model_name: str,
    window: tuple[datetime, datetime],
    join: JoinResult,
    run_metrics: Mapping[str, Mapping[str, float] | None],
    slices: Sequence[str],
    drift_windows: Sequence[DriftWindow],
    policy: FeedbackPolicy,
    business: Mapping[str, float | int | str | None] | None = None,
    notes: Sequence[str] = (),
) -> FeedbackReport:
    """Everything one feedback run concludes, per served version (`run_metrics`: version -> its training run's
    metrics, None when it could not be read)."""
    versions, findings = [], []
    frame = join.joined
    for version in sorted(frame["version"].astype(str).unique(), key=lambda v: (len(v), v)) if len(frame) else []:
        rows = frame[frame["version"].astype(str) == version]
        result, found = assess_version(version, rows, run_metrics.get(version), slices, policy)
        versions.append(result)
        findings += found
    return FeedbackReport(
        dataset=dataset, model_name=model_name, label_window_start=window[0], label_window_end=window[1],
        policy_version=policy.version, join=join.counts, versions=versions, findings=findings,
        signals=name_drift(versions, findings, data_signal(drift_windows)), business=dict(business or {}),
        notes=list(notes),
    )  # fmt: skip


def count_new_labelled(labels: pd.DataFrame, since: datetime) -> int:
    """Distinct labelled request ids whose event happened at or after `since` (the retraining guardrail's
    "new labelled data": rows newer than the reference's training interval)."""
    if labels.empty:
        return 0
    newer = labels[pd.to_datetime(labels["event_time"], utc=True) >= pd.Timestamp(since)]
    return int(newer["request_id"].nunique())


def _loudest(*levels: Severity) -> Severity:
    return max(levels, key=lambda level: level.rank, default=Severity.OK)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def feedback_alerts(
    report: FeedbackReport, policy: AlertPolicy, *, report_uri: str, raised_at: datetime
) -> list[Alert]:
    """Model and concept drift at their levels (warn | alert, the rubric maps them); data drift is alerted by
    factory_drift itself, insufficient data raises nothing."""
    alerts = []
    for family, alert_type in (("model", AlertType.MODEL_DRIFT), ("concept", AlertType.CONCEPT_DRIFT)):
        signal = report.signals[family]  # type: ignore[index]
        if signal.status not in ("warn", "alert"):
            continue
        where = ", ".join(signal.columns) or ", ".join(f"v{version}" for version in signal.versions)
        alerts.append(
            make_alert(
                policy,
                alert_type,
                level=signal.status,
                scope=report.model_name,
                title=f"{family} drift on {report.model_name}" + (f": {where}" if where else ""),
                summary=signal.summary,
                report_uri=report_uri,
                raised_at=raised_at,
                details={
                    "versions": signal.versions,
                    "slices": signal.columns,
                    "data_drift": report.signals["data"].status,
                },
            )
        )
    return alerts


def feedback_prefix(dataset: str, model_name: str, start: datetime, end: datetime) -> str:
    """`monitoring/<dataset>/<model>/feedback/<window>/`: one folder per label window (a re-run overwrites its
    own evidence): `feedback_report.json`, `alerts.json`."""
    from pipelines.monitoring.monitor import model_prefix, window_id

    return f"{model_prefix(dataset, model_name)}/feedback/{window_id(start, end)}/"


def business_on_labels(spec_metric: BusinessMetricSpec, joined: pd.DataFrame, label_name: str) -> dict:
    """The dataset spec's business metric on the labelled rows (the real outcome, e.g. the delayed share)."""
    if joined.empty:
        return {"name": spec_metric.name, "value": None, "rows": 0}
    try:
        value = spec_metric.evaluate(joined.assign(**{label_name: joined["label"]}))
    except KeyError as error:  # it needs a raw column the gateway does not log
        return {"name": spec_metric.name, "value": None, "rows": len(joined), "note": str(error)}
    return {"name": spec_metric.name, "value": value, "rows": len(joined)}
