"""The main job (`make demo`): the whole factory loop through the real scheduler, with progress and a summary.

The seed's story, played out on the embedded stack: a model is trained on Q1 2013 flights, gated and rolled out
to Triton behind the gateway; later traffic (July: summer storms, the real seasonal drift of the data) is
replayed through the gateway; `factory_drift` detects it within one check and, every guardrail passing, emits
the retraining asset event; that event schedules `factory_train`, whose gate compares the retrained challenger
with the champion; `factory_rollout` walks the challenger through shadow, canary and ramp to champion under
live traffic. Every phase's wall time and the drift -> promoted lead time are printed and stored in
`<home>/demo-summary.json`.

Where a person would act (the gate's approval request), the main job answers in their place and says so.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from factory.airflow_api import AirflowClient
from factory.dag_runs import TRAIN_DAG, finish_gated_training, run_dag, run_smoke_dag, wait_for_new_run
from factory.demo_summary import DemoSummary, GateResult, RolloutResult, render_summary
from factory.stack import Stack

DRIFT_DAG, ROLLOUT_DAG = "factory_drift", "factory_rollout"
MODEL = "flights-hgb"  # what factory_train registers for the flights spec with the default trainer
DEMO_ROLLOUT_POLICY = "pipelines/configs/policies/rollout-demo.yaml"
ROLLOUT_TASKS = ("deploy_challenger", "shadow", "canary", "ramp", "promote", "bake", "unload_previous")
# The demo's clock: "now" is 2013-07-01. The operational source DB holds the flights that have happened (and
# whose outcome is known) until then; July's flights arrive as traffic at the gateway. The first two days of July
# (about 1,900 flights, over the drift policy's 1,000-row minimum) carry the summer's weather and delays; the two
# weeks after, in random order, are the live load while the retrained model is rolled out.
DEMO_NOW = datetime(2013, 7, 1, tzinfo=UTC)
DRIFT_WINDOW = (DEMO_NOW, datetime(2013, 7, 3, tzinfo=UTC))
LOAD_WINDOW = (DRIFT_WINDOW[1], datetime(2013, 7, 17, tzinfo=UTC))
LOAD_RATE = 60.0  # requests per second while the challenger is rolled out


class Phases:
    """Numbered progress headings and the wall time of each phase."""

    def __init__(self, total: int, report: Callable[[str], None] = print) -> None:
        self.total, self.report = total, report
        self.walls: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.report(f"\n== {len(self.walls) + 1}/{self.total} {name}")
        started = time.monotonic()
        try:
            yield
        finally:
            self.walls[name] = time.monotonic() - started
            self.report(f"   ({self.walls[name]:.0f} s)")


def approve_as_reviewer(gate: dict[str, Any]) -> bool:
    """The demo's stand-in for the reviewer: it approves, and prints what a person would have read first."""
    print(f"  the gate asks a human about v{gate['version']}: {gate['summary']}")
    for reason in gate.get("review", []):
        print(f"    - {reason}")
    print(f"  report: {gate['report_url']}")
    print("  the demo approves as the reviewer (in production a person answers in the UI: Required Actions)")
    return True


def gate_result(client: AirflowClient, run_id: str, approvals: int) -> GateResult:
    gate = client.xcom(TRAIN_DAG, run_id, "gate_candidate")
    final = client.xcom(TRAIN_DAG, run_id, "record_gate_outcome")
    return GateResult(
        version=gate["version"], decision=gate["decision"], final=final["summary"], report_url=gate["report_url"],
        model_card_url=gate["model_card_url"], champion_version=gate["champion_version"], approvals=approvals,
    )  # fmt: skip


def roll_out(client: AirflowClient, requested: str, report: Callable[[str], None]) -> RolloutResult:
    """factory_rollout of `requested` ("@challenger" or a version) with the demo's policy; what it did."""
    conf = {"model_name": MODEL, "version": requested, "policy": DEMO_ROLLOUT_POLICY}
    run_id, wall = run_dag(client, ROLLOUT_DAG, conf, report=report)
    steps = {task: client.xcom(ROLLOUT_DAG, run_id, task) for task in ROLLOUT_TASKS}
    outcome = client.xcom(ROLLOUT_DAG, run_id, "record_rollout")["outcome"]
    version = str(client.xcom(ROLLOUT_DAG, run_id, "plan_rollout")["challenger"])
    ended = {t.task_id: t.end for t in client.task_timings(ROLLOUT_DAG, run_id)}
    return RolloutResult(run_id=run_id, version=version, outcome=outcome, wall_s=wall, steps=steps,
                         promoted_at=ended.get("promote"))  # fmt: skip


def registry_holds_demo_model(mlflow_url: str) -> bool:
    """Whether an earlier run of the story left its model in this stack's registry."""
    import httpx

    answer = httpx.get(f"{mlflow_url}/api/2.0/mlflow/registered-models/get", params={"name": MODEL}, timeout=30)
    return answer.status_code == 200


def start_over(stack: Stack) -> Stack:
    """The story needs an empty registry (v1 trained again would be gated against v2): stop the stack, keep the
    earlier state beside it (nothing is deleted), start a fresh one on the same settings."""
    stack.down()
    home = stack.settings.home
    kept = home.with_name(f"{home.name}.previous-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
    home.rename(kept)
    print(f"  {MODEL} is already registered here (an earlier run): that state is kept in {kept}; starting over")
    fresh = Stack(stack.settings)
    fresh.up()
    return fresh


def run_loop(stack: Stack, client: AirflowClient, phases: Phases) -> DemoSummary:
    """Phases 2..9 of the main job on a running stack; returns what the summary shows."""
    from factory.replay import BackgroundTraffic, replay
    from factory.source_data import seed_source_database
    from factory.stack import s3_client
    from pipelines.assembly import DEFAULT_DATASET_SPEC, REPOSITORY_ROOT
    from pipelines.datasets.demo import load_demo_flights
    from pipelines.datasets.spec import load_dataset_spec
    from pipelines.monitoring.replay import plan_replay
    from serving.gateway.config import GatewayConfig

    settings, creds, report = stack.settings, stack.credentials, phases.report
    summary = DemoSummary(airflow_url=settings.airflow_url, mlflow_url=settings.mlflow_url, model=MODEL)
    with phases.phase("stack check: the smoke DAG (S3, MLflow, Triton) through the scheduler"):
        run_smoke_dag(client, report=report)
    spec = load_dataset_spec(REPOSITORY_ROOT / DEFAULT_DATASET_SPEC)
    flights = load_demo_flights()
    with phases.phase("assembly line: seed the source DB up to the demo's now, train v1 on Q1 2013, gate it"):
        happened = flights.loc[flights[spec.time_column] < DEMO_NOW]
        seed = seed_source_database(settings, frame=happened)
        until = f"flights before {DEMO_NOW:%Y-%m-%d}"
        report(f"  source table {seed.table!r}: {seed.rows} {until} ({'loaded' if seed.written else 'already there'})")
        client.wait_for_dag(TRAIN_DAG)
        client.unpause(TRAIN_DAG)  # also lets the retraining asset schedule it later
        first = client.trigger(TRAIN_DAG, {})
        trained = finish_gated_training(client, first, approver=approve_as_reviewer, report=report)
        summary.runs.append((TRAIN_DAG, first))
        summary.gates.append(gate_result(client, first, trained.approvals))
    with phases.phase(f"deploy v{summary.gates[0].version} to Triton: first rollout (deploy, promote, bake)"):
        summary.rollouts.append(roll_out(client, "@challenger", report))
        summary.runs.append((ROLLOUT_DAG, summary.rollouts[-1].run_id))
    with phases.phase("the world drifts: replay July 2013 traffic through the gateway (labels land later)"):
        summary.drift_started_at = datetime.now(UTC)
        replayed = replay(
            gateway_url=settings.gateway_url, token=creds.gateway_token, model=MODEL,
            plan=plan_replay(flights, spec, *DRIFT_WINDOW), s3=s3_client(settings, creds),
            bucket=settings.data_bucket, with_labels=True,
        )  # fmt: skip
        answered = f"{replayed.answered}/{replayed.requested} answered by {dict(replayed.versions)}"
        report(f"  {answered}, {replayed.labels} labels landed")
        time.sleep(GatewayConfig.model_fields["sample_max_interval"].default + 2)  # the request log's flush interval
    with phases.phase("production monitor: factory_drift on the replayed window"):
        known_trainings = {run["dag_run_id"] for run in client.dag_runs(TRAIN_DAG)}
        conf = {"window_start": summary.drift_started_at.isoformat(), "window_end": datetime.now(UTC).isoformat()}
        drift_run, _ = run_dag(client, DRIFT_DAG, conf, report=report)
        summary.runs.append((DRIFT_DAG, drift_run))
        summary.drift = client.xcom(DRIFT_DAG, drift_run, "check_drift")
        summary.retraining = client.xcom(DRIFT_DAG, drift_run, "decide_retraining")
        summary.detected_at = datetime.now(UTC)
        if not summary.retraining["retrain"]:
            raise RuntimeError(f"the monitor did not request a retraining: {summary.retraining['summary']}")
    with phases.phase("retraining: the asset event schedules factory_train (v2 on the newest data), gate v2 vs v1"):
        retrain = wait_for_new_run(client, TRAIN_DAG, known=known_trainings, run_type="asset_triggered")
        report(f"  scheduled by the retraining asset: {retrain}")
        trained = finish_gated_training(client, retrain, approver=approve_as_reviewer, report=report)
        summary.runs.append((TRAIN_DAG, retrain))
        summary.gates.append(gate_result(client, retrain, trained.approvals))
        summary.retrained_at = datetime.now(UTC)
    with phases.phase(f"roll v{summary.gates[1].version} out under live traffic: shadow, canary, ramp, champion"):
        # Shuffled: in time order, 60 requests/s would sweep a day of flights every ~15 s, so each rollout step
        # would see different days' weather (a shift production traffic does not have within minutes).
        load = plan_replay(flights, spec, *LOAD_WINDOW).requests
        random.Random(2013).shuffle(load)
        with BackgroundTraffic(gateway_url=settings.gateway_url, token=creds.gateway_token, model=MODEL,
                               requests=load, rate=LOAD_RATE) as traffic:  # fmt: skip
            summary.rollouts.append(roll_out(client, "@challenger", report))
        summary.runs.append((ROLLOUT_DAG, summary.rollouts[-1].run_id))
        summary.load = traffic.result.as_dict()
    return summary


def run_demo(stack: Stack, *, keep_up: bool) -> int:
    started = time.monotonic()
    phases = Phases(total=8)
    with phases.phase("stack up (S3, MLflow, Triton, gateway, Airflow)"):
        stack.up()
        if registry_holds_demo_model(stack.settings.mlflow_url):
            stack = start_over(stack)
    if notice := stack.credentials_notice():
        print(notice)
    client = stack.airflow_client()
    try:
        summary = run_loop(stack, client, phases)
    except Exception:
        print(f"\nThe stack is left running for inspection ({stack.settings.airflow_url}); stop it with "
              "`.venv/bin/factory stack down`.")  # fmt: skip
        raise
    finally:
        client.close()
    summary.phase_walls = dict(phases.walls)
    summary.total_s = time.monotonic() - started
    print(render_summary(summary, home=stack.settings.home))
    (stack.settings.home / "demo-summary.json").write_text(json.dumps(summary.as_dict(), indent=2, default=str))
    if keep_up:
        print("The stack keeps running (--keep-up); stop it with `.venv/bin/factory stack down`.")
    else:
        stack.down()
    return 0
