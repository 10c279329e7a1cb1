"""The champion/challenger decision: a pure function from scores, slices and facts to a GateReport.

No registry, no files, no clock: the Airflow task fetches the inputs and acts on the decision, so the
decision itself is reproducible from its inputs (the bootstrap is seeded by the policy) and unit-testable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field

from pipelines.evaluation.metrics import MetricSet, as_binary_arrays, compute_metrics, metrics_by_slice
from pipelines.gate.bootstrap import BootstrapTarget, confidence_interval, paired_bootstrap_deltas
from pipelines.gate.checks import agreement_check, bound_check, change_check
from pipelines.gate.policy import Bounds, GatePolicy, MetricName
from pipelines.gate.report import Decision, GateCheck, GateReport

if TYPE_CHECKING:  # both import onnx/onnxruntime/sklearn, which deciding does not need (seconds at import)
    from pipelines.evaluation.report import EvaluationReport
    from pipelines.export.signature import ModelSignature

WHOLE_SET = "all"


class GateInputError(ValueError):
    """The gate's inputs cannot be judged (nothing is promoted); the message says what is wrong."""


class SignatureMismatchError(GateInputError):
    """Challenger and champion expose different serving contracts: a swap would break every client."""


class MissingCriticalSliceError(GateInputError):
    """The evaluation data lacks a slice column or value that the policy marks critical."""


class ServingFacts(BaseModel):
    """The exported model's serving cost, as measured by the evaluation task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    p50_ms: float = Field(ge=0)
    p99_ms: float = Field(ge=0)
    size_bytes: int = Field(ge=0)

    @classmethod
    def from_evaluation(cls, report: EvaluationReport) -> ServingFacts:
        """Single-row latency: the request shape the online path serves."""
        latency = report.latency
        return cls(
            p50_ms=latency.single_row_p50_ms,
            p99_ms=latency.single_row_p99_ms,
            size_bytes=report.model_size_bytes,
        )


@dataclass(frozen=True)
class Candidate:
    """One model as the gate sees it: its scores on the evaluation rows, its cost and its contract."""

    scores: ArrayLike
    serving: ServingFacts
    signature: ModelSignature


@dataclass(frozen=True)
class _Scored:
    """A model's scores and metrics on the whole set and on every slice (slice value -> metrics)."""

    scores: np.ndarray
    headline: MetricSet
    slices: dict[str, dict[str, MetricSet]]


def decide_promotion(
    y_true: ArrayLike,
    challenger: Candidate,
    champion: Candidate | None,
    slices: Mapping[str, ArrayLike],
    policy: GatePolicy,
) -> GateReport:
    """Judge `challenger` against `champion` (None: the first model) on the same evaluation rows.

    `slices` maps each slice column (e.g. "carrier") to its per-row values. Raises GateInputError
    subclasses when the inputs cannot be judged: different signatures, a missing critical slice, arrays of
    different lengths.
    """
    y, challenger_scores = as_binary_arrays(y_true, challenger.scores)
    if y.size == 0:
        raise GateInputError("the evaluation set is empty")
    slice_values = _checked_slices(slices, y.size)
    critical_rows = _critical_slice_rows(slice_values, policy)
    new = _score(y, challenger_scores, slice_values, policy)
    if champion is None:
        checks = _value_checks(new, None, policy) + _serving_checks(challenger.serving, None, policy)
        return _report(y, checks, policy, first_model=True)
    require_same_signature(challenger.signature, champion.signature)
    _, champion_scores = as_binary_arrays(y, champion.scores)
    old = _score(y, champion_scores, slice_values, policy)
    checks = [
        *_value_checks(new, old, policy),
        *_change_checks(y, new, old, critical_rows, policy),
        *_serving_checks(challenger.serving, champion.serving, policy),
        _agreement(new.scores, old.scores, policy),
    ]
    return _report(y, checks, policy, first_model=False)


def slice_label(column: str, value: str) -> str:
    return f"{column}={value}"


def _checked_slices(slices: Mapping[str, ArrayLike], n: int) -> dict[str, np.ndarray]:
    values = {column: np.asarray(column_values, dtype=object).ravel() for column, column_values in slices.items()}
    for column, column_values in values.items():
        if column_values.size != n:
            raise GateInputError(f"slice column {column!r} has {column_values.size} values for {n} rows")
    return values


def _critical_slice_rows(slices: dict[str, np.ndarray], policy: GatePolicy) -> dict[tuple[str, str], np.ndarray]:
    """Row indices of every critical slice; a critical slice absent from the data is an error, not a pass."""
    rows_by_column: dict[str, dict[str, np.ndarray]] = {}
    found = {}
    for column, value in policy.slices.critical_pairs():
        if column not in slices:
            raise MissingCriticalSliceError(
                f"critical slice column {column!r} is missing from the evaluation data "
                f"(slice columns given: {sorted(slices) or 'none'})"
            )
        if column not in rows_by_column:
            rows_by_column[column] = _rows_by_value(slices[column])
        if value not in rows_by_column[column]:
            raise MissingCriticalSliceError(
                f"critical slice {slice_label(column, value)} has no rows in the evaluation data"
            )
        found[(column, value)] = rows_by_column[column][value]
    return found


def _rows_by_value(values: np.ndarray) -> dict[str, np.ndarray]:
    """Row indices per slice value, named as metrics_by_slice names them (missing values: "<missing>")."""
    codes, uniques = pd.factorize(values)
    names = [*map(str, uniques), "<missing>"]
    codes[codes == -1] = len(uniques)
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(names)))[:-1]
    return {name: rows for name, rows in zip(names, np.split(order, bounds), strict=True) if rows.size}


def _score(y: np.ndarray, scores: np.ndarray, slices: dict[str, np.ndarray], policy: GatePolicy) -> _Scored:
    threshold, n_bins = policy.decision_threshold, policy.calibration_bins
    by_slice = {
        column: {
            result.value: result.metrics
            for result in metrics_by_slice(y, scores, values, policy.slices.min_size, threshold, n_bins)
        }
        for column, values in slices.items()
    }
    return _Scored(scores, compute_metrics(y, scores, threshold, n_bins), by_slice)


def _value_checks(new: _Scored, old: _Scored | None, policy: GatePolicy) -> list[GateCheck]:
    """Absolute bounds on the headline and on every slice big enough to judge."""
    checks = [
        bound_check(
            name=f"value/{metric}",
            kind="value",
            metric=metric,
            value=getattr(new.headline, metric),
            bounds=bounds,
            baseline=None if old is None else getattr(old.headline, metric),
            undefined_reason=new.headline.undefined.get(metric),
        )
        for metric, bounds in policy.value_bounds.items()
    ]
    critical = set(policy.slices.critical_pairs())
    for column, metrics_by_value in new.slices.items():
        for value, metrics in metrics_by_value.items():
            label = slice_label(column, value)
            if metrics.n < policy.slices.min_size:
                checks.append(_small_slice(label, metrics.n, policy.slices.min_size))
                continue
            for metric, bounds in policy.slices.value_bounds.items():
                baseline = None if old is None else getattr(old.slices[column][value], metric)
                checks.append(
                    bound_check(
                        name=f"slice_value/{label}/{metric}",
                        kind="slice_value",
                        metric=metric,
                        value=getattr(metrics, metric),
                        bounds=bounds,
                        slice_name=label,
                        baseline=baseline,
                        undefined_reason=metrics.undefined.get(metric),
                        approval_margin=(
                            policy.approval.critical_slice_margin if (column, value) in critical else None
                        ),
                    )
                )
    return checks


def _small_slice(label: str, rows: int, min_size: int) -> GateCheck:
    return GateCheck(
        name=f"slice_value/{label}",
        kind="slice_value",
        metric="rows",
        slice=label,
        value=float(rows),
        threshold=float(min_size),
        verdict="skipped_small_slice",
        reason=f"{label} has {rows} rows, below min_size {min_size}: reported, not judged.",
    )


def _change_checks(
    y: np.ndarray,
    new: _Scored,
    old: _Scored,
    critical_rows: dict[tuple[str, str], np.ndarray],
    policy: GatePolicy,
) -> list[GateCheck]:
    """Headline change rules, and regression limits on critical slices big enough to judge."""
    judged_critical = [pair for pair, rows in critical_rows.items() if rows.size >= policy.slices.min_size]
    regression_metrics = tuple(limit.metric for limit in policy.slices.regressions)
    targets = [BootstrapTarget(WHOLE_SET, np.arange(y.size), tuple(rule.metric for rule in policy.changes))]
    if regression_metrics:
        targets += [
            BootstrapTarget(slice_label(column, value), critical_rows[(column, value)], regression_metrics)
            for column, value in judged_critical
        ]
    settings = policy.bootstrap
    deltas = paired_bootstrap_deltas(
        y,
        new.scores,
        old.scores,
        targets,
        n_resamples=settings.n_resamples,
        seed=settings.seed,
        threshold=policy.decision_threshold,
        n_bins=policy.calibration_bins,
    )

    def ci(target: str, metric: MetricName) -> tuple[float, float] | None:
        return confidence_interval(deltas[(target, metric)], settings.confidence)

    checks = [
        change_check(
            name=f"change/{rule.metric}",
            kind="change",
            rule=rule,
            value=getattr(new.headline, rule.metric),
            baseline=getattr(old.headline, rule.metric),
            ci=ci(WHOLE_SET, rule.metric),
            confidence=settings.confidence,
        )
        for rule in policy.changes
    ]
    for column, value in judged_critical:
        label = slice_label(column, value)
        checks += [
            change_check(
                name=f"slice_change/{label}/{limit.metric}",
                kind="slice_change",
                rule=limit,
                value=getattr(new.slices[column][value], limit.metric),
                baseline=getattr(old.slices[column][value], limit.metric),
                ci=ci(label, limit.metric),
                confidence=settings.confidence,
                slice_name=label,
                approval_margin=policy.approval.critical_slice_margin,
            )
            for limit in policy.slices.regressions
        ]
    return checks


def _serving_checks(new: ServingFacts, old: ServingFacts | None, policy: GatePolicy) -> list[GateCheck]:
    bounds = policy.serving
    facts = [
        ("latency/p50_ms", "latency", "p50_ms", bounds.max_p50_ms),
        ("latency/p99_ms", "latency", "p99_ms", bounds.max_p99_ms),
        ("size/bytes", "size", "size_bytes", bounds.max_size_bytes),
    ]
    return [
        bound_check(
            name=name,
            kind=kind,
            metric=field,
            value=float(getattr(new, field)),
            bounds=None if limit is None else Bounds(max=limit),
            baseline=None if old is None else float(getattr(old, field)),
        )
        for name, kind, field, limit in facts
    ]


def _agreement(new: np.ndarray, old: np.ndarray, policy: GatePolicy) -> GateCheck:
    threshold = policy.decision_threshold
    share = float(np.mean((new >= threshold) == (old >= threshold)))
    return agreement_check(share, min_share=policy.agreement.min_share, review_below=policy.approval.min_agreement)


def require_same_signature(challenger: ModelSignature, champion: ModelSignature) -> None:
    if challenger == champion:
        return
    problems = []
    for side in ("inputs", "outputs"):
        new = {tensor.name: tensor for tensor in getattr(challenger, side)}
        old = {tensor.name: tensor for tensor in getattr(champion, side)}
        if added := sorted(new.keys() - old.keys()):
            problems.append(f"{side} only in the challenger: {added}")
        if removed := sorted(old.keys() - new.keys()):
            problems.append(f"{side} only in the champion: {removed}")
        if changed := sorted(name for name in new.keys() & old.keys() if new[name] != old[name]):
            problems.append(f"{side} with a different dtype or shape: {changed}")
        if not problems and list(new) != list(old):
            problems.append(f"{side} in a different order")
    raise SignatureMismatchError(
        "challenger and champion signatures differ (" + "; ".join(problems) + "): clients of the champion "
        "would break, so nothing is promoted; deploy the challenger as a new model instead"
    )


def _report(y: np.ndarray, checks: list[GateCheck], policy: GatePolicy, *, first_model: bool) -> GateReport:
    decision, summary = _decide(checks, policy, first_model=first_model)
    return GateReport(
        policy_name=policy.name,
        policy_version=policy.version,
        decision=decision,
        summary=summary,
        first_model=first_model,
        rows=int(y.size),
        positives=int(y.sum()),
        decision_threshold=policy.decision_threshold,
        bootstrap=None if first_model else policy.bootstrap,
        checks=checks,
    )


def _decide(checks: list[GateCheck], policy: GatePolicy, *, first_model: bool) -> tuple[Decision, str]:
    """Any failure rejects; a challenger without a supported improvement is not promoted (the champion
    stays); otherwise any review trigger asks a human; otherwise promote."""
    if failed := [check.name for check in checks if check.verdict == "fail"]:
        return "reject", f"Rejected: {len(failed)} check(s) failed: {', '.join(failed)}."
    gains = [check for check in checks if check.supports_promotion]
    if not first_model and not gains:
        targets = [rule.metric for rule in policy.changes if rule.min_improvement is not None]
        return "reject", (
            f"Not promoted: no supported improvement on {', '.join(targets)} "
            "(a change inside the bootstrap CI is noise); the champion stays."
        )
    if review := [check.name for check in checks if check.verdict == "needs_approval"]:
        return "needs_approval", f"Needs approval: every rule passed, but {', '.join(review)} asks for a human."
    if first_model:
        return "promote", (
            "Promote: first model (no champion), judged on value thresholds only (headline, slices, serving); "
            "every check passed."
        )
    improved = "; ".join(check.reason.rstrip(".") for check in gains)
    return "promote", f"Promote: {improved}; no check failed."
