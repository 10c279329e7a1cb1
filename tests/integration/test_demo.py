"""The README's main command, end to end on its own throwaway stack: the whole factory loop through the scheduler.

`run_demo` is what `make demo` runs (after installing): stack up, smoke check, seed, train + gate v1, first rollout,
drifted traffic, drift check, asset-triggered retraining, gate v2 against v1, progressive rollout of v2 under live
traffic, summary, stack down. The test checks the story's outcome from the summary the demo stores and from the
registry's own alias log, not from the demo's printout.
"""

from __future__ import annotations

import json

import pytest

from factory.registry import alias_registry
from factory.settings import isolated_settings
from factory.stack import Stack

pytestmark = [pytest.mark.services, pytest.mark.scheduler, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict, list]:
    from factory.demo import run_demo

    stack = Stack(isolated_settings(tmp_path_factory.mktemp("demo")), env={}, report=lambda line: None)
    try:
        code = run_demo(stack, keep_up=True)
        summary = json.loads((stack.settings.home / "demo-summary.json").read_text())
        history = alias_registry(stack).alias_history("flights-hgb")  # the audit trail, as any auditor reads it
    finally:
        stack.down()
    return code, summary, history


def test_the_main_job_plays_the_whole_story(demo) -> None:
    code, summary, history = demo
    assert code == 0
    v1, v2 = (gate["version"] for gate in summary["gates"])
    assert summary["gates"][0]["champion_version"] is None  # the first model is gated on value bounds alone
    assert summary["gates"][1]["champion_version"] == v1  # v2 is judged against the serving champion
    # The monitor saw the July traffic drift and asked for a retraining through the asset.
    assert summary["drift"]["verdict"] == "alert" and summary["drift"]["drifted_features"]
    assert summary["retraining"]["retrain"] is True
    # Both rollouts promoted; the second walked every traffic step under load without a failed request.
    assert [rollout["outcome"] for rollout in summary["rollouts"]] == ["promoted", "promoted"]
    steps = summary["rollouts"][1]["steps"]
    assert [steps[step]["action"] for step in ("shadow", "canary", "ramp")] == ["continued"] * 3
    load = summary["load"]
    assert load["answered"] > 0 and not load["failures"] and set(load["versions"]) == {v1, v2}
    # The registry's audit trail tells the same story: v1 champion, then v2 champion with v1 as previous.
    final = history[-1].aliases
    assert final["champion"] == v2 and final["previous"] == v1
    lead = summary["lead_times_s"]
    assert 0 < lead["detected"] < lead["retrained"] < lead["promoted"]
    assert summary["total_s"] == pytest.approx(sum(summary["phase_walls"].values()), rel=0.05)
