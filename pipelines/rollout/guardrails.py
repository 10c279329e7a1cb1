"""Guardrail verdicts of one rollout step: the challenger against the champion over the same window.

Every limit is judged on the window alone, and every result carries its measured value, its limit and a
sentence, so the step record says why a rollout went on or rolled back. Too little evidence is its own
outcome: the step is extended, and only then judged a failure (`StepVerdict.enough_evidence`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from pipelines.rollout.policy import Guardrails
from pipelines.rollout.window import ShadowWindow, VersionWindow, bucket_counts

_PSI_FLOOR = 1e-4  # share given to an empty bin so the logarithm stays finite (the usual PSI smoothing)


class GuardrailResult(BaseModel):
    name: str
    value: float | None
    limit: float
    passed: bool
    detail: str


class StepVerdict(BaseModel):
    step: str
    challenger_percent: float
    enough_evidence: bool
    evidence: str
    results: list[GuardrailResult]

    @property
    def passed(self) -> bool:
        return self.enough_evidence and all(result.passed for result in self.results)

    @property
    def breaches(self) -> list[GuardrailResult]:
        return [result for result in self.results if not result.passed]

    @property
    def summary(self) -> str:
        if not self.enough_evidence:
            return f"{self.step}: not enough evidence ({self.evidence})"
        if self.breaches:
            return f"{self.step}: breached " + "; ".join(f"{r.name} ({r.detail})" for r in self.breaches)
        return f"{self.step}: all {len(self.results)} guardrails held ({self.evidence})"


def prediction_psi(reference: Sequence[tuple[float, float]], current: Sequence[tuple[float, float]]) -> float | None:
    """Population stability index of two score histograms with the same buckets; None if either is empty."""
    expected, actual = np.asarray(bucket_counts(reference)), np.asarray(bucket_counts(current))
    if expected.size == 0 or expected.size != actual.size or expected.sum() <= 0 or actual.sum() <= 0:
        return None
    expected = np.clip(expected / expected.sum(), _PSI_FLOOR, None)
    actual = np.clip(actual / actual.sum(), _PSI_FLOOR, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _result(
    name: str, value: float | None, limit: float, detail: str, *, missing_passes: bool = False
) -> GuardrailResult:
    """`value <= limit` passes; a value that could not be measured passes only where that is harmless."""
    passed = missing_passes if value is None else value <= limit
    shown = "n/a" if value is None else f"{value:.4g}"
    return GuardrailResult(
        name=name, value=value, limit=limit, passed=passed, detail=f"{detail} {shown} (limit {limit:g})"
    )


def _latency(name: str, challenger_ms: float | None, champion_ms: float | None, limits: Guardrails) -> GuardrailResult:
    """p99 within `max_p99_ratio` of the champion's, or within `p99_slack_ms` of it (sub-ms noise on CPU)."""
    if challenger_ms is None or champion_ms is None:
        return _result(name, None, limits.max_p99_ratio, f"{name}: no latency observed, ratio", missing_passes=True)
    allowed = max(champion_ms * limits.max_p99_ratio, champion_ms + limits.p99_slack_ms)
    ratio = challenger_ms / champion_ms if champion_ms > 0 else float("inf")
    return GuardrailResult(
        name=name,
        value=ratio,
        limit=limits.max_p99_ratio,
        passed=challenger_ms <= allowed,
        detail=f"{name}: challenger {challenger_ms:.2f} ms vs champion {champion_ms:.2f} ms "
        f"(ratio {ratio:.2f}, allowed up to {allowed:.2f} ms)",
    )


def judge_shadow(
    champion: VersionWindow, shadow: ShadowWindow, limits: Guardrails, *, min_requests: int
) -> StepVerdict:
    """Shadow step: the mirrored answers of the challenger, never seen by clients, against the champion's."""
    mirrored = shadow.answered + shadow.errors
    disagreement = shadow.disagreement(limits.disagreement_threshold) if shadow.answered else None
    results = [
        _result("shadow_error_rate", shadow.error_rate, limits.max_shadow_error_rate, "shadow error rate"),
        _result(
            "shadow_disagreement",
            disagreement,
            limits.max_shadow_disagreement,
            f"share of mirrored requests differing by more than {limits.disagreement_threshold:g}",
        ),
        _latency("shadow_p99_latency", shadow.upstream_p99_ms, champion.upstream_p99_ms, limits),
    ]
    return StepVerdict(
        step="shadow",
        challenger_percent=0.0,
        enough_evidence=mirrored >= min_requests,
        evidence=f"{mirrored} mirrored requests ({shadow.dropped} dropped), {min_requests} needed",
        results=results,
    )


def judge_split(
    step: str,
    percent: float,
    champion: VersionWindow,
    challenger: VersionWindow,
    limits: Guardrails,
    *,
    min_requests: int,
) -> StepVerdict:
    """Canary or ramp step: both versions answer clients; the challenger must be as healthy as the champion."""
    increase = challenger.error_rate - champion.error_rate
    results = [
        _result("error_rate", challenger.error_rate, limits.max_error_rate, "challenger error rate"),
        _result("error_rate_increase", increase, limits.max_error_rate_increase, "error rate over the champion's"),
        _latency("p99_latency", challenger.p99_ms, champion.p99_ms, limits),
        _result(
            "prediction_psi",
            prediction_psi(champion.prediction_buckets, challenger.prediction_buckets),
            limits.max_prediction_psi,
            "PSI of challenger vs champion prediction scores",
            missing_passes=champion.requests == 0,  # the champion had no traffic left to compare with
        ),
    ]
    return StepVerdict(
        step=step,
        challenger_percent=percent,
        enough_evidence=challenger.requests >= min_requests,
        evidence=f"{challenger.requests} challenger and {champion.requests} champion requests, "
        f"{min_requests} challenger requests needed",
        results=results,
    )


def judge_alone(step: str, version: VersionWindow, limits: Guardrails) -> StepVerdict:
    """Bake: the new champion serves everything; only absolute limits apply (there is nothing to compare)."""
    return StepVerdict(
        step=step,
        challenger_percent=100.0,
        enough_evidence=True,  # a quiet bake is no evidence against the champion
        evidence=f"{version.requests} requests",
        results=[_result("error_rate", version.error_rate, limits.max_error_rate, "error rate")],
    )
