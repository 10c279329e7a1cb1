"""Guardrail verdicts of one rollout step: the challenger against the champion over the same window.

Every limit is judged on the window alone, and every result carries its measured value, its limit and a
sentence, so the step record says why a rollout went on or rolled back. Too little evidence is its own
outcome: the step is extended, and only then judged a failure (`StepVerdict.enough_evidence`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, TypeAdapter

from pipelines.rollout.policy import Guardrails
from pipelines.rollout.window import ShadowWindow, VersionWindow, bucket_counts, histogram_quantile

TAIL_REQUESTS = 10  # requests a window must have beyond the latency quantile it judges
_PSI_FLOOR = 1e-4  # share given to an empty bin so the logarithm stays finite (the usual PSI smoothing)


class GuardrailResult(BaseModel):
    name: str
    value: float | None
    limit: float
    passed: bool
    detail: str


Buckets = tuple[tuple[float, float], ...]  # a Prometheus histogram: (upper bound, cumulative count)
BUCKETS = TypeAdapter(Buckets)  # reads them back from JSON ("Infinity" included)


class StepVerdict(BaseModel):
    # Histograms end at the +Inf bound: JSON (records, XCom) writes it as "Infinity", which reads back as inf.
    model_config = ConfigDict(ser_json_inf_nan="strings")

    step: str
    challenger_percent: float
    enough_evidence: bool
    evidence: str
    results: list[GuardrailResult]
    # Shadow only: the challenger's scores on mirrored requests, the behaviour judged against the champion's on
    # identical requests; the later steps compare the challenger's live scores with these.
    shadow_scores: Buckets | None = None

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


class PsiShift(BaseModel):
    psi: float
    p_value: float  # chance of a PSI at least this large from sampling alone (no shift), at these counts
    reference_count: int
    current_count: int


def psi_shift(reference: Sequence[tuple[float, float]], current: Sequence[tuple[float, float]]) -> PsiShift | None:
    """PSI of two score histograms and whether sampling alone explains it; None if either is empty.

    PSI says how large a shift is, not whether the counts show one: 45 challenger requests over 20 buckets give a
    PSI above 0.25 for a third of pairs of samples of the *same* distribution (empty buckets weigh heavily), so a
    bare `PSI > 0.25` rolls healthy canaries back. The p-value is the chi-square test of homogeneity of the two
    bucket counts, with adjacent buckets merged until each expects 5 answers of the smaller side (the textbook
    condition under which the chi-square approximation holds), which is what "the scores moved" means.
    """
    from scipy.stats import chi2_contingency

    expected, actual = np.asarray(bucket_counts(reference)), np.asarray(bucket_counts(current))
    if expected.size == 0 or expected.size != actual.size or expected.sum() <= 0 or actual.sum() <= 0:
        return None
    n_expected, n_actual = float(expected.sum()), float(actual.sum())
    expected_share = np.clip(expected / n_expected, _PSI_FLOOR, None)
    actual_share = np.clip(actual / n_actual, _PSI_FLOOR, None)
    psi = float(np.sum((actual_share - expected_share) * np.log(actual_share / expected_share)))
    table = _merge_sparse_buckets(expected, actual)
    p_value = float(chi2_contingency(table).pvalue) if table.shape[1] > 1 else 1.0
    return PsiShift(psi=psi, p_value=p_value, reference_count=int(n_expected), current_count=int(n_actual))


def _merge_sparse_buckets(first: np.ndarray, second: np.ndarray, min_expected: float = 5.0) -> np.ndarray:
    """A 2 x m table of adjacent buckets merged until each expects `min_expected` counts of the smaller side."""
    pooled_share = (first + second) / (first.sum() + second.sum())
    smaller = min(first.sum(), second.sum())
    columns: list[list[float]] = []
    pending = np.zeros(3)  # first, second, expected count of the smaller side
    for a, b, share in zip(first, second, pooled_share, strict=True):
        pending += (a, b, share * smaller)
        if pending[2] >= min_expected:
            columns.append([pending[0], pending[1]])
            pending = np.zeros(3)
    if pending[:2].sum() > 0:  # the remainder joins the last full column (or stands alone if there is none)
        if columns:
            columns[-1] = [columns[-1][0] + pending[0], columns[-1][1] + pending[1]]
        else:
            columns.append([pending[0], pending[1]])
    return np.asarray(columns, dtype=float).T


def _psi_result(
    champion: VersionWindow, challenger: VersionWindow, limits: Guardrails, shadow_scores: Buckets | None
) -> GuardrailResult:
    """A shift breaches when PSI is over its limit and sampling noise cannot explain it (p < psi_significance)."""
    reference, against = (shadow_scores, "its shadow") if shadow_scores else (champion.prediction_buckets, "champion")
    what = f"PSI of challenger prediction scores vs {against} scores"
    shift = psi_shift(reference, challenger.prediction_buckets)
    name, limit = "prediction_psi", limits.max_prediction_psi
    if shift is None:  # passes only when the champion had no traffic left to compare with
        return _result(name, None, limit, what, missing_passes=not shadow_scores and champion.requests == 0)
    significant = shift.p_value < limits.psi_significance
    detail = (
        f"{what} {shift.psi:.4g} (limit {limit:g}; p {shift.p_value:.2g} at {shift.current_count} vs "
        f"{shift.reference_count} requests, a shift counts below {limits.psi_significance:g})"
    )
    return GuardrailResult(
        name=name, value=shift.psi, limit=limit, passed=shift.psi <= limit or not significant, detail=detail
    )


def _result(
    name: str, value: float | None, limit: float, detail: str, *, missing_passes: bool = False
) -> GuardrailResult:
    """`value <= limit` passes; a value that could not be measured passes only where that is harmless."""
    passed = missing_passes if value is None else value <= limit
    shown = "n/a" if value is None else f"{value:.4g}"
    return GuardrailResult(
        name=name, value=value, limit=limit, passed=passed, detail=f"{detail} {shown} (limit {limit:g})"
    )


def tail_quantile(requests: float) -> float:
    """The latency quantile a window of `requests` can estimate: p99, or lower so that TAIL_REQUESTS of them lie
    beyond it (a p99 of 45 canary requests is their slowest one, i.e. one scheduling hiccup on a busy host)."""
    if requests <= 0:
        return 0.99
    return max(0.5, min(0.99, 1.0 - TAIL_REQUESTS / requests))


def _latency(name: str, challenger: Buckets, champion: Buckets, limits: Guardrails) -> GuardrailResult:
    """The challenger's tail latency within `max_p99_ratio` of the champion's, or within `p99_slack_ms` of it
    (sub-ms noise on CPU). The tail is p99 when the window has the requests for it, else `tail_quantile`."""
    quantile = tail_quantile(challenger[-1][1] if challenger else 0.0)
    challenger_s, champion_s = histogram_quantile(quantile, challenger), histogram_quantile(quantile, champion)
    if challenger_s is None or champion_s is None:
        return _result(name, None, limits.max_p99_ratio, f"{name}: no latency observed, ratio", missing_passes=True)
    challenger_ms, champion_ms = challenger_s * 1000, champion_s * 1000
    allowed = max(champion_ms * limits.max_p99_ratio, champion_ms + limits.p99_slack_ms)
    ratio = challenger_ms / champion_ms if champion_ms > 0 else float("inf")
    return GuardrailResult(
        name=name,
        value=ratio,
        limit=limits.max_p99_ratio,
        passed=challenger_ms <= allowed,
        detail=f"{name}: p{quantile * 100:.3g} challenger {challenger_ms:.2f} ms vs champion {champion_ms:.2f} ms "
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
        _latency("shadow_p99_latency", shadow.upstream_buckets, champion.upstream_buckets, limits),
    ]
    return StepVerdict(
        step="shadow",
        challenger_percent=0.0,
        enough_evidence=mirrored >= min_requests,
        evidence=f"{mirrored} mirrored requests ({shadow.dropped} dropped), {min_requests} needed",
        results=results,
        shadow_scores=shadow.prediction_buckets or None,
    )


def judge_split(
    step: str,
    percent: float,
    champion: VersionWindow,
    challenger: VersionWindow,
    limits: Guardrails,
    *,
    min_requests: int,
    shadow_scores: Buckets | None = None,
) -> StepVerdict:
    """Canary or ramp step: both versions answer clients; the challenger must be as healthy as the champion.

    The score distribution is compared with the challenger's own scores in shadow (`shadow_scores`), where its
    difference from the champion was judged request by request. A retrained model is *meant* to score
    differently from a stale champion (after drift, that is the point); what must not happen is that it
    behaves differently once it answers clients than it did in shadow. Without shadow scores (the model has no
    scalar output, or the shadow step did not run) it is compared with the champion's live scores.
    """
    increase = challenger.error_rate - champion.error_rate
    results = [
        _result("error_rate", challenger.error_rate, limits.max_error_rate, "challenger error rate"),
        _result("error_rate_increase", increase, limits.max_error_rate_increase, "error rate over the champion's"),
        _latency("p99_latency", challenger.latency_buckets, champion.latency_buckets, limits),
        _psi_result(champion, challenger, limits, shadow_scores),
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
