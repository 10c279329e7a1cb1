"""Rollout decisions: windows from Prometheus scrapes, guardrail verdicts, step routes, rollback targets, policy."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from pipelines.alias_log import AliasChange, AliasMove
from pipelines.rollout.guardrails import (
    BUCKETS,
    StepVerdict,
    judge_alone,
    judge_shadow,
    judge_split,
    psi_shift,
    tail_quantile,
)
from pipelines.rollout.plan import (
    RolloutPlanError,
    is_rollback_request,
    rollback_target,
    rollout_versions,
    shadow_routes,
    split_routes,
)
from pipelines.rollout.policy import Guardrails, RolloutPolicyError, load_rollout_policy
from pipelines.rollout.window import (
    ScrapeError,
    histogram_quantile,
    parse_scrape,
    shadow_window,
    version_window,
    window_delta,
)
from serving.gateway.metrics import GatewayMetrics

MODEL = "flights-hgb"
LIMITS = Guardrails()


def scrape_of(metrics: GatewayMetrics) -> dict:
    return parse_scrape(generate_latest(metrics.registry).decode(), "test replica")


def serve(metrics: GatewayMetrics, version: int, route: str, *, count: int, seconds: float, score: float, status=200):
    target = metrics.for_target(MODEL, str(version), route, "default")
    for _ in range(count):
        if status == 200:
            target.answered.inc()
            target.latency.observe(seconds)
            target.upstream_latency.observe(seconds * 0.8)
            target.predictions.observe(score)
        else:
            metrics.child(metrics.requests, MODEL, str(version), route, "default", str(status)).inc()


# ----- windows ---------------------------------------------------------------------------------------------------
def test_a_window_counts_only_what_happened_between_the_scrapes_summed_over_replicas():
    one, two = GatewayMetrics(CollectorRegistry()), GatewayMetrics(CollectorRegistry())
    serve(one, 1, "champion", count=50, seconds=0.002, score=0.3)  # before the window: not counted
    before = {"r1": scrape_of(one), "r2": scrape_of(two)}
    serve(one, 1, "champion", count=30, seconds=0.002, score=0.3)
    serve(two, 1, "champion", count=20, seconds=0.004, score=0.3)
    serve(two, 1, "champion", count=5, seconds=0.004, score=0.3, status=503)
    window = window_delta(before, {"r1": scrape_of(one), "r2": scrape_of(two)})

    champion = version_window(window, MODEL, 1)
    assert (champion.requests, champion.errors) == (55, 5)
    assert champion.error_rate == pytest.approx(5 / 55)
    assert 0.003 < histogram_quantile(0.99, champion.latency_buckets) <= 0.005  # 99th of 50 answers: the 3-5 ms bucket
    nobody = version_window(window, MODEL, 2)
    assert nobody.requests == 0 and histogram_quantile(0.99, nobody.latency_buckets) is None


def test_a_replica_that_restarted_or_appeared_counts_from_zero():
    restarted = GatewayMetrics(CollectorRegistry())
    serve(restarted, 1, "champion", count=7, seconds=0.001, score=0.5)
    old = GatewayMetrics(CollectorRegistry())
    serve(old, 1, "champion", count=100, seconds=0.001, score=0.5)
    window = window_delta({"r1": scrape_of(old)}, {"r1": scrape_of(restarted), "new": scrape_of(restarted)})
    assert version_window(window, MODEL, 1).requests == 14


def test_histogram_quantile_interpolates_like_prometheus():
    buckets = ((0.001, 0.0), (0.002, 50.0), (0.005, 100.0), (math.inf, 100.0))
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.002)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.0035)
    assert histogram_quantile(0.99, ((0.001, 0.0), (math.inf, 10.0))) == pytest.approx(0.001)
    assert histogram_quantile(0.99, ()) is None and histogram_quantile(0.99, ((0.1, 0.0),)) is None


def test_unparseable_metrics_name_their_source():
    with pytest.raises(ScrapeError, match="replica-7"):
        parse_scrape("gateway_requests_total{model= 1\n", "replica-7")


def test_shadow_window_measures_mirrored_answers_and_disagreement():
    metrics = GatewayMetrics(CollectorRegistry())
    before = {"r": scrape_of(metrics)}
    for diff in [0.0] * 6 + [0.3] * 3:
        metrics.shadow_diff.labels(MODEL, "1", "2").observe(diff)
        metrics.shadow_requests.labels(MODEL, "2", "ok").inc()
    metrics.shadow_requests.labels(MODEL, "2", "error").inc()
    metrics.shadow_requests.labels(MODEL, "2", "dropped").inc()
    shadow = shadow_window(window_delta(before, {"r": scrape_of(metrics)}), MODEL, 2)
    assert (shadow.answered, shadow.errors, shadow.dropped) == (9, 1, 1)
    assert shadow.error_rate == pytest.approx(0.1)
    assert shadow.disagreement(0.2) == pytest.approx(3 / 9)
    assert shadow.disagreement(0.5) == 0.0


# ----- guardrails ------------------------------------------------------------------------------------------------
def split_window(*, challenger_seconds=0.002, challenger_errors=0, challenger_score=0.3, challenger_count=100):
    metrics = GatewayMetrics(CollectorRegistry())
    before = {"r": scrape_of(metrics)}
    serve(metrics, 1, "champion", count=900, seconds=0.002, score=0.3)
    serve(metrics, 2, "challenger", count=challenger_count, seconds=challenger_seconds, score=challenger_score)
    if challenger_errors:
        serve(metrics, 2, "challenger", count=challenger_errors, seconds=0, score=0, status=502)
    window = window_delta(before, {"r": scrape_of(metrics)})
    return version_window(window, MODEL, 1), version_window(window, MODEL, 2)


def test_a_healthy_challenger_passes_every_split_guardrail():
    verdict = judge_split("25%", 25, *split_window(), LIMITS, min_requests=50)
    assert verdict.passed and verdict.enough_evidence
    assert {result.name for result in verdict.results} == {
        "error_rate", "error_rate_increase", "p99_latency", "prediction_psi",
    }  # fmt: skip
    assert "all 4 guardrails held" in verdict.summary


@pytest.mark.parametrize(
    ("window", "breached"),
    [
        ({"challenger_errors": 5}, {"error_rate", "error_rate_increase"}),
        ({"challenger_seconds": 0.5}, {"p99_latency"}),
        ({"challenger_score": 0.9}, {"prediction_psi"}),
    ],
)
def test_each_split_breach_is_named(window, breached):
    verdict = judge_split("5%", 5, *split_window(**window), LIMITS, min_requests=50)
    assert not verdict.passed
    assert {result.name for result in verdict.breaches} == breached
    assert all(name in verdict.summary for name in ("breached",))


def mirrored_window(*, count: int = 100, diff: float = 0.05, score: float | None = None, seconds: float | None = None):
    """(champion, shadow) windows of a shadow step: the champion answers `count` requests, every one mirrored to
    v2 whose answer differs by `diff` (its score and Triton round trip observed when given)."""
    metrics = GatewayMetrics(CollectorRegistry())
    before = {"r": scrape_of(metrics)}
    serve(metrics, 1, "champion", count=count, seconds=0.002, score=0.3)
    for _ in range(count):
        metrics.shadow_requests.labels(MODEL, "2", "ok").inc()
        metrics.shadow_diff.labels(MODEL, "1", "2").observe(diff)
        if score is not None:
            metrics.shadow_predictions.labels(MODEL, "2").observe(score)
        if seconds is not None:
            metrics.shadow_latency.labels(MODEL, "2").observe(seconds)
    window = window_delta(before, {"r": scrape_of(metrics)})
    return version_window(window, MODEL, 1), shadow_window(window, MODEL, 2)


def shadow_scores(score: float, count: int = 300):
    """The challenger's scores as the shadow step measured them (mirrored requests, gateway histogram)."""
    return mirrored_window(count=count, score=score)[1].prediction_buckets


def test_a_behaviour_change_seen_in_shadow_is_not_a_split_breach_but_a_new_one_is():
    """A retrained model scoring 0.9 where the stale champion scores 0.3 did so in shadow too (judged there, on
    identical requests): the split compares its live scores with its shadow scores, not with the champion's."""
    champion, challenger = split_window(challenger_score=0.9)
    accepted = judge_split("25%", 25, champion, challenger, LIMITS, min_requests=50, shadow_scores=shadow_scores(0.9))
    assert accepted.passed, accepted.summary
    assert "vs its shadow scores" in next(r.detail for r in accepted.results if r.name == "prediction_psi")
    changed = judge_split("25%", 25, champion, challenger, LIMITS, min_requests=50, shadow_scores=shadow_scores(0.3))
    assert [result.name for result in changed.breaches] == ["prediction_psi"]


def test_shadow_verdict_carries_the_challenger_scores_for_the_later_steps():
    verdict = judge_shadow(*mirrored_window(diff=0.05, score=0.35), LIMITS, min_requests=50)
    assert verdict.passed and verdict.shadow_scores is not None
    assert psi_shift(verdict.shadow_scores, verdict.shadow_scores).current_count == 100
    as_xcom = json.loads(json.dumps(json.loads(verdict.model_dump_json())["shadow_scores"], allow_nan=False))
    assert as_xcom[-1][0] == "Infinity" and BUCKETS.validate_python(as_xcom) == verdict.shadow_scores
    assert StepVerdict.model_validate_json(verdict.model_dump_json()) == verdict  # the S3 step record reads back


def test_the_latency_tail_judged_is_one_the_window_can_estimate():
    """p99 of 45 canary requests is their slowest one: the window judges the quantile with 10 requests beyond it."""
    assert tail_quantile(2000) == 0.99 and tail_quantile(1000) == 0.99
    assert tail_quantile(45) == pytest.approx(1 - 10 / 45) and tail_quantile(10) == 0.5 and tail_quantile(0) == 0.99
    metrics = GatewayMetrics(CollectorRegistry())
    before = {"r": scrape_of(metrics)}
    serve(metrics, 1, "champion", count=900, seconds=0.002, score=0.3)
    serve(metrics, 2, "challenger", count=44, seconds=0.002, score=0.3)
    serve(metrics, 2, "challenger", count=1, seconds=0.04, score=0.3)  # one hiccup: 40 ms
    window = window_delta(before, {"r": scrape_of(metrics)})
    verdict = judge_split("5%", 5, version_window(window, MODEL, 1), version_window(window, MODEL, 2), LIMITS,
                          min_requests=20)  # fmt: skip
    latency = next(result for result in verdict.results if result.name == "p99_latency")
    assert latency.passed and "p77.8 challenger" in latency.detail
    slow = split_window(challenger_seconds=0.05, challenger_count=45)  # every canary request slow: a real breach
    assert "p99_latency" in {r.name for r in judge_split("5%", 5, *slow, LIMITS, min_requests=20).breaches}


def test_sub_millisecond_latency_noise_is_within_the_slack():
    # 3 ms vs 2 ms is a 1.5x+ ratio, but within the 5 ms slack: not a breach on a CPU box.
    verdict = judge_split("5%", 5, *split_window(challenger_seconds=0.004), LIMITS, min_requests=50)
    assert verdict.passed


def test_too_few_challenger_requests_is_not_enough_evidence_and_never_a_pass():
    verdict = judge_split("5%", 5, *split_window(challenger_count=10), LIMITS, min_requests=50)
    assert not verdict.enough_evidence and not verdict.passed
    assert "not enough evidence" in verdict.summary


def test_shadow_guardrails_judge_errors_disagreement_and_latency():
    # Every mirrored answer far from the champion's.
    verdict = judge_shadow(*mirrored_window(diff=0.5, seconds=0.002), LIMITS, min_requests=50)
    assert verdict.enough_evidence and not verdict.passed
    assert [result.name for result in verdict.breaches] == ["shadow_disagreement"]


def test_psi_is_zero_for_equal_distributions_and_none_without_data():
    same = ((0.5, 10.0), (1.0, 20.0))
    assert psi_shift(same, same).psi == pytest.approx(0.0)
    assert psi_shift(same, ((0.5, 0.0), (1.0, 0.0))) is None
    moved = psi_shift(same, ((0.5, 20.0), (1.0, 20.0)))
    assert moved.psi > 1.0 and (moved.reference_count, moved.current_count) == (20, 20)


def _cumulative(scores: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Scores as the gateway's Prometheus histogram (cumulative counts at 0.05-wide upper bounds)."""
    bounds = [round(step * 0.05, 2) for step in range(1, 21)]
    return tuple((bound, float(np.sum(scores <= bound))) for bound in bounds)


def test_canary_sized_samples_of_the_same_scores_do_not_breach_but_a_real_shift_does():
    """45 canary answers vs 855 champion answers from one distribution: the bare PSI often exceeds 0.25 (noise);
    the guardrail counts a shift only when sampling cannot explain it. A real shift is still caught at that size."""
    rng = np.random.default_rng(7)
    psis, breaches = [], 0
    for _ in range(300):
        champion, challenger = rng.beta(2, 6, 855), rng.beta(2, 6, 45)
        shift = psi_shift(_cumulative(champion), _cumulative(challenger))
        psis.append(shift.psi)
        breaches += shift.psi > LIMITS.max_prediction_psi and shift.p_value < LIMITS.psi_significance
    assert np.mean(np.array(psis) > LIMITS.max_prediction_psi) > 0.2  # what a bare threshold would roll back
    assert breaches / 300 <= 0.02
    shifted = psi_shift(_cumulative(rng.beta(2, 6, 855)), _cumulative(rng.beta(6, 2, 45)))
    assert shifted.psi > LIMITS.max_prediction_psi and shifted.p_value < LIMITS.psi_significance


def test_bake_judges_absolute_limits_only():
    champion, _ = split_window()
    assert judge_alone("bake", champion, LIMITS).passed
    _, failing = split_window(challenger_errors=50)
    assert not judge_alone("bake", failing, LIMITS).passed


# ----- plans -------------------------------------------------------------------------------------------------------
def test_step_routes_keep_the_champion_answering_and_label_both_sides():
    shadow = shadow_routes(3, 4, "blue", 0.5)
    assert [(r.version, r.percent, r.label) for r in shadow.routes] == [(3, 100, "champion")]
    assert (shadow.shadow.version, shadow.shadow.share, shadow.pool) == (4, 0.5, "blue")
    split = split_routes(3, 4, 25, "blue")
    assert {r.version: (r.percent, r.label) for r in split.routes} == {3: (75, "champion"), 4: (25, "challenger")}


def test_rollout_versions_resolve_aliases_and_refuse_nonsense():
    aliases = {"champion": "3", "challenger": "4"}
    assert rollout_versions(aliases, "@challenger") == (3, 4)
    assert rollout_versions({"challenger": "1"}, "@challenger") == (None, 1)
    assert rollout_versions(aliases, "5") == (3, 5)
    with pytest.raises(RolloutPlanError, match="no version holds @candidate"):
        rollout_versions(aliases, "@candidate")
    with pytest.raises(RolloutPlanError, match="already the champion"):
        rollout_versions(aliases, "3")


def _log(*moves: tuple[str, str, str | None, str]) -> list[AliasMove]:
    """An alias log of champion moves (to, request id, from, reason), with the derived `previous`."""
    records, aliases = [], {}
    for seq, (to, request_id, before, reason) in enumerate(moves, start=1):
        changes = [AliasChange(alias="champion", from_version=before, to_version=to)]
        aliases = {"champion": to} | ({"previous": before} if before else {})
        if before:
            changes.append(AliasChange(alias="previous", from_version=None, to_version=before))
        records.append(
            AliasMove(
                model="m",
                seq=seq,
                at=datetime(2026, 1, seq, tzinfo=UTC),
                actor="t",
                reason=reason,
                request_id=request_id,
                changes=changes,
                aliases=aliases,
            )
        )
    return records


PROMOTED = _log(("3", "r1", None, "first"), ("4", "rollout/a/promote", "3", "rollout passed"))


def test_rollback_goes_to_previous_by_default_or_to_the_named_version():
    assert rollback_target(PROMOTED, None, "rollback/x") == (4, 3)
    assert rollback_target(PROMOTED, "2", "rollback/x") == (4, 2)
    with pytest.raises(RolloutPlanError, match="no previous champion"):
        rollback_target(PROMOTED[:1], None, "rollback/x")
    with pytest.raises(RolloutPlanError, match="not a registry version"):
        rollback_target(PROMOTED, "v2", "rollback/x")
    with pytest.raises(RolloutPlanError, match="no previous champion"):
        rollback_target([], None, "rollback/x")


def test_a_retried_rollback_restores_what_its_first_attempt_chose():
    """After the first attempt moved the alias, `previous` is the bad version: the retry must not go there."""
    rolled_back = [
        *PROMOTED,
        AliasMove(
            model="m",
            seq=3,
            at=datetime(2026, 1, 3, tzinfo=UTC),
            actor="t",
            reason="rollback: p99",
            request_id="rollback/rollback-run1",
            aliases={"champion": "3", "previous": "4"},
            changes=[
                AliasChange(alias="champion", from_version="4", to_version="3"),
                AliasChange(alias="previous", from_version="3", to_version="4"),
            ],
        ),
    ]
    assert rollback_target(rolled_back, None, "rollback/rollback-run1") == (4, 3)
    # A new default rollback right after it would restore v4, the version just rolled back from: refused.
    with pytest.raises(RolloutPlanError, match=r"was a rollback: .* restore v4"):
        rollback_target(rolled_back, None, "rollback/rollback-run2")
    assert rollback_target(rolled_back, "4", "rollback/rollback-run2") == (3, 4)  # named: the operator's call
    assert is_rollback_request("rollout/abc/bake-rollback") and not is_rollback_request("rollout/abc/promote")


# ----- policy ------------------------------------------------------------------------------------------------------
def test_the_checked_in_policy_loads():
    policy = load_rollout_policy()
    assert policy.percent_steps == (5, 25, 50)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("version: '1'\nramp_percents: [50, 25]\n", "increase strictly"),
        ("version: '1'\nramp_percents: [25, 100]\n", "stay below 100"),
        ("version: '1'\nguardrails: {max_p99_ratio: 0.5}\n", "guardrails.max_p99_ratio"),
        ("version: '1'\nbake: 3\n", "bake"),
    ],
)
def test_a_bad_policy_names_the_field(tmp_path, text, problem):
    path = tmp_path / "rollout.yaml"
    path.write_text(text)
    with pytest.raises(RolloutPolicyError, match=problem):
        load_rollout_policy(path)


def test_blue_green_needs_exactly_two_pools_one_active():
    from pipelines.rollout.plan import idle_pool

    assert idle_pool(["blue", "green"], "blue") == "green"
    assert idle_pool(["blue", "green"], "green") == "blue"
    with pytest.raises(RolloutPlanError, match="exactly two Triton pools"):
        idle_pool(["default"], "default")
    with pytest.raises(RolloutPlanError, match="exactly two Triton pools"):
        idle_pool(["blue", "green"], "default")
