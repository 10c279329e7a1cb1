"""The main job's summary: lead times from the marks it records, and the text it prints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from factory.demo_summary import DemoSummary, GateResult, RolloutResult, render_summary
from pipelines.assembly import REPOSITORY_ROOT

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def rollout(version: str, promoted_after: float | None, steps: dict | None = None) -> RolloutResult:
    promoted = None if promoted_after is None else T0 + timedelta(seconds=promoted_after)
    return RolloutResult(run_id=f"run-{version}", version=version, outcome="promoted", wall_s=60.0,
                         steps=steps or {}, promoted_at=promoted)  # fmt: skip


def gate(version: str, champion: str | None, decision: str, approvals: int = 0) -> GateResult:
    return GateResult(version=version, decision=decision, final=f"v{version}: {decision}", report_url="http://r",
                      model_card_url="http://c", champion_version=champion, approvals=approvals)  # fmt: skip


def story() -> DemoSummary:
    summary = DemoSummary(airflow_url="http://af", mlflow_url="http://ml", model="flights-hgb")
    summary.gates = [gate("1", None, "promote"), gate("2", "1", "needs_approval", approvals=1)]
    steps = {"shadow": {"action": "continued", "summary": "shadow: all 3 guardrails held"}, "promote": {"alias_seq": 4}}
    summary.rollouts = [rollout("1", -100), rollout("2", 400, steps)]
    summary.runs = [("factory_train", "manual__2026-11-24T08:00:00+00:00")]
    uris = {"monitor": "s3://factory-data/monitoring/m.json", "other": "s3://elsewhere/x.html"}
    summary.drift = {"verdict": "alert", "window_rows": 1925, "summary": "9 of 15 features drifted",
                     "drifted_features": ["temp", "dewp"], "signals": {"data": {"status": "alert", "summary": "x"}},
                     "uris": uris}  # fmt: skip
    summary.retraining = {"outcome": "retrain", "retrain": True, "summary": "all guardrails passed"}
    summary.load = {"answered": 5000, "failures": {}, "versions": {"1": 3000, "2": 2000}}
    summary.drift_started_at, summary.detected_at = T0, T0 + timedelta(seconds=45)
    summary.retrained_at = T0 + timedelta(seconds=120)
    summary.phase_walls, summary.total_s = {"stack up": 40.0, "train v1": 50.0}, 90.5
    return summary


def test_lead_times_count_from_the_first_drifted_request_to_the_second_rollouts_promotion() -> None:
    assert story().lead_times() == {"detected": 45.0, "retrained": 120.0, "promoted": 400.0}
    early = DemoSummary(airflow_url="a", mlflow_url="m", model="x")
    assert early.lead_times() == {}  # nothing drifted yet: no lead time at all
    early.drift_started_at, early.rollouts = T0, [rollout("1", 10)]
    assert early.lead_times() == {}  # the first rollout's promotion is not the retrained model's


def test_the_summary_names_versions_verdicts_drift_steps_links_and_timings() -> None:
    text = render_summary(story(), home=Path("/tmp/home"))
    assert "v1 (first model): gate promote" in text
    assert "v2 (vs champion v1): gate needs_approval, 1 approval answered by the demo" in text
    assert "Drift: alert on 1925 logged requests" in text and "drifted features: temp, dewp" in text
    assert "Retraining decision: retrain - all guardrails passed" in text
    assert "monitor: http://af/factory/reports/monitoring/m.json" in text  # served by the factory view
    assert "other: s3://elsewhere/x.html" in text  # not the view's to serve: the URI as it is
    assert "shadow             continued shadow: all 3 guardrails held" in text
    assert "promote            alias_seq=4" in text
    assert "5000 answered, 0 failed" in text
    assert "http://af/dags/factory_train/runs/manual__2026-11-24T08%3A00%3A00%2B00%3A00" in text
    assert "http://af/plugin/factory" in text and "http://ml/#/models/flights-hgb" in text
    assert "     90.5 s  total" in text
    assert "detected after 45 s, retrained after 120 s, promoted after 400 s" in text


def test_the_demo_rollout_policy_changes_windows_only_never_a_guardrail_limit() -> None:
    policies = REPOSITORY_ROOT / "pipelines/configs/policies"
    production = yaml.safe_load((policies / "rollout.yaml").read_text())
    demo = yaml.safe_load((policies / "rollout-demo.yaml").read_text())
    assert demo["guardrails"] == production["guardrails"]
    assert demo["parity_tolerance"] == production["parity_tolerance"]
    for steps in ("canary_percent", "ramp_percents"):
        assert demo[steps] == production[steps]
