"""What the main job shows at the end: versions, gate verdicts, drift findings, rollout steps, links, timings.

Pure: built from what the runs returned (their XComs), rendered as text; `as_dict` is the JSON kept next to
the stack's state for later comparison of runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pipelines.factory_view.links import Paths


@dataclass(frozen=True)
class GateResult:
    version: str
    decision: str  # promote | needs_approval | reject
    final: str  # the final outcome's summary (after the approval, if one was asked)
    report_url: str
    model_card_url: str
    champion_version: str | None
    approvals: int


@dataclass(frozen=True)
class RolloutResult:
    run_id: str
    version: str
    outcome: str
    wall_s: float
    steps: dict[str, Any]  # task id -> its XCom (what the step did and why)
    promoted_at: datetime | None


@dataclass
class DemoSummary:
    airflow_url: str
    mlflow_url: str
    model: str
    runs: list[tuple[str, str]] = field(default_factory=list)  # (dag id, run id) in the order they ran
    gates: list[GateResult] = field(default_factory=list)
    rollouts: list[RolloutResult] = field(default_factory=list)
    drift: dict[str, Any] = field(default_factory=dict)  # check_drift's monitor report
    retraining: dict[str, Any] = field(default_factory=dict)  # decide_retraining's decision
    load: dict[str, Any] = field(default_factory=dict)  # the traffic served during the second rollout
    drift_started_at: datetime | None = None
    detected_at: datetime | None = None
    retrained_at: datetime | None = None
    phase_walls: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0

    def run_url(self, dag_id: str, run_id: str) -> str:
        return f"{self.airflow_url}/dags/{dag_id}/runs/{quote(run_id, safe='')}"

    def lead_times(self) -> dict[str, float]:
        """Seconds from the moment drifted traffic started to detection, retrained challenger, and promotion."""
        start = self.drift_started_at
        if start is None:
            return {}
        promoted = self.rollouts[-1].promoted_at if len(self.rollouts) > 1 else None
        marks = {"detected": self.detected_at, "retrained": self.retrained_at, "promoted": promoted}
        return {name: (moment - start).total_seconds() for name, moment in marks.items() if moment is not None}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"lead_times_s": self.lead_times()}


def render_summary(summary: DemoSummary, *, home: Path) -> str:
    """The text printed at the end of the main job."""
    lines = ["", "=" * 100, f"The factory loop for {summary.model}", "=" * 100, "", "Versions and gate verdicts:"]
    for gate in summary.gates:
        against = f"vs champion v{gate.champion_version}" if gate.champion_version else "first model"
        asked = f", {gate.approvals} approval answered by the demo" if gate.approvals else ""
        lines += [
            f"  v{gate.version} ({against}): gate {gate.decision}{asked}",
            f"    {gate.final}",
            f"    report {gate.report_url}",
            f"    model card {gate.model_card_url}",
        ]
    if summary.drift:
        drift = summary.drift
        features = ", ".join(drift.get("drifted_features", [])) or "none"
        lines += [
            "",
            f"Drift: {drift.get('verdict')} on {drift.get('window_rows')} logged requests - {drift.get('summary')}",
            f"  drifted features: {features}",
        ]
        for family, signal in drift.get("signals", {}).items():
            lines.append(f"  {family:<10} {signal.get('status'):<18} {_clip(signal.get('summary', ''))}")
        links = Paths(airflow_base=summary.airflow_url, app_base=f"{summary.airflow_url}/factory")
        for name, uri in sorted(drift.get("uris", {}).items()):  # through the factory view where it serves them
            served = links.report_of_uri(uri)
            lines.append(f"  {name}: {served.href if served else uri}")
    if summary.retraining:
        lines.append(f"Retraining decision: {summary.retraining.get('outcome')} - {summary.retraining.get('summary')}")
    for rollout in summary.rollouts:
        lines += ["", f"Rollout of v{rollout.version}: {rollout.outcome} in {rollout.wall_s:.0f} s"]
        for task_id, step in rollout.steps.items():
            lines.append(f"  {task_id:<18} {_step_line(step)}")
    if summary.load:
        load = summary.load
        failed = sum(load.get("failures", {}).values())
        lines.append(
            f"  traffic during the rollout: {load.get('answered')} answered, {failed} failed, "
            f"by version {load.get('versions')}"
        )
    lines += ["", "Links:", f"  Airflow UI   {summary.airflow_url}"]
    lines.append(f"  factory view {summary.airflow_url}/plugin/factory")
    lines.append(f"  MLflow model {summary.mlflow_url}/#/models/{summary.model}")
    lines += [f"  {dag_id:<16} {summary.run_url(dag_id, run_id)}" for dag_id, run_id in summary.runs]
    lines += ["", "Wall time per phase:"]
    lines += [f"  {seconds:7.1f} s  {name}" for name, seconds in summary.phase_walls.items()]
    lines.append(f"  {summary.total_s:7.1f} s  total")
    if lead := summary.lead_times():
        marks = ", ".join(f"{name} after {seconds:.0f} s" for name, seconds in lead.items())
        lines.append(f"Drift -> promoted lead time (from the first drifted request): {marks}")
    lines.append(f"\nState, logs and credentials: {home} (summary: {home / 'demo-summary.json'})")
    return "\n".join(lines)


def _clip(text: str, width: int = 110) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _step_line(step: Any) -> str:
    if not isinstance(step, dict):
        return str(step)
    if "live_versions" in step:  # a fleet deploy report
        return f"live versions {step['live_versions']}, newly loaded {step.get('introduced', [])}"
    action = step.get("action") or step.get("outcome") or ""
    detail = step.get("summary") or step.get("detail") or ""
    if not action and not detail:
        return ", ".join(f"{key}={value}" for key, value in list(step.items())[:4])
    return f"{action} {detail}".strip()
