"""Wall time of the champion/challenger gate as the DAG runs it, champion re-scoring from the registry included
(target: <= 20 s on 2 cores with 1000 bootstrap resamples).

A throwaway S3 + MLflow stack is started; two HGB models of the demo are trained and registered through the
real adapter (`log_training_run`): the champion on January-February 2013, the challenger on Q1 2013 (the demo's
first model). The champion alias is set through the alias log, then `gate_registered_version` (the code of the
`gate_candidate` task) is timed end to end: alias log read, both ONNX files downloaded from the registry,
both scored on the challenger's rows with their latency measured, the decision with the paired bootstrap,
the report and model card written to the run, the version tagged. Two row sets:
- demo: the challenger's own test window (last ~15% of Q1, ~12.5k rows), what the DAG gates;
- stress: April-July 2013 (~110k rows), ten times the rows.
Prints medians of --runs runs, split into the bootstrap, registry download + scoring, and the rest.

    .venv/bin/python benchmarks/gate_wall_time.py [--runs 3] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from factory.settings import PROJECT_ROOT, isolated_settings
from factory.stack import Stack, s3_client

sys.path.insert(0, str(PROJECT_ROOT / "plugins"))  # as Airflow does for plugins/

DATASET_SPEC = "pipelines/configs/datasets/flights.yaml"
MODEL = "bench-flights-hgb"


def between(frame: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    times = frame["time_hour"]
    return frame[(times >= pd.Timestamp(start, tz="UTC")) & (times < pd.Timestamp(end, tz="UTC"))]


def timed(function: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    return wrapper


def register(frame: pd.DataFrame, end: str, tmp: Path) -> tuple[str, pd.DataFrame]:
    """Train the demo HGB on [Jan 1, end) like factory_train, log and register it; (version, its test rows)."""
    from factory_providers.mlflow.hooks import MlflowHook
    from factory_providers.mlflow.registry import log_training_run

    from pipelines.assembly import REPOSITORY_ROOT, labelled_split, resolve_request, run_evidence
    from pipelines.lineage import code_lineage, environment_lineage
    from pipelines.train_steps import evaluate_on_snapshot, fit_on_snapshot

    request = resolve_request({"interval_start": "2013-01-01T00:00:00Z", "interval_end": f"{end}T00:00:00Z"})
    window = between(frame, "2013-01-01", end).reset_index(drop=True)
    snapshot_id = f"bench-{end}"
    fitted = fit_on_snapshot(window, request.spec, request.config, snapshot_id)
    evaluated = evaluate_on_snapshot(fitted.model, window, request.spec, tmp / end / "plots")
    folder = tmp / end
    (folder / "evaluation").mkdir(parents=True, exist_ok=True)
    (folder / "evaluation" / "evaluation.json").write_text(evaluated.report.model_dump_json())
    (folder / "training.json").write_text(fitted.summary.model_dump_json())
    evidence = run_evidence(
        request, snapshot_id=snapshot_id, snapshot_uri=None, interval=request.interval, summary=fitted.summary,
        evaluation=evaluated.report, parity=evaluated.parity, artifact_uris={}, validation_warnings=[],
        code=code_lineage(REPOSITORY_ROOT), environment=environment_lineage(),
    )  # fmt: skip
    candidate = log_training_run(
        MlflowHook(), experiment="factory/bench-gate", run_name=f"hgb-{end}", attempt_key=f"bench/{end}",
        record=evidence.record, params=evidence.params, metrics=evidence.metrics,
        artifacts={"evaluation": folder / "evaluation", "training": folder / "training.json"},
        onnx_model=evaluated.onnx_model, model_name=MODEL, alias="candidate",
    )  # fmt: skip
    return candidate.version, labelled_split(window, request.spec)[0].test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="factory-bench-gate-") as home:
        stack = Stack(isolated_settings(Path(home)), env={}, report=lambda line: None)
        stack.up(["mlflow"])  # with its dependency, S3
        try:
            os.environ.update({k: v for k, v in stack.airflow_env().items() if k.startswith("AIRFLOW_CONN_")})
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
            measure(stack, Path(home), args.runs, args.resamples)
        finally:
            stack.down()


def measure(stack: Stack, tmp: Path, runs: int, resamples: int) -> None:
    from factory_providers.mlflow import gate as gate_adapter
    from factory_providers.mlflow.aliases import AliasRegistry
    from mlflow import MlflowClient

    import pipelines.gate.decision as gate_decision
    import pipelines.gate.rescoring as rescoring
    from pipelines.datasets import apply_target, load_dataset_spec
    from pipelines.datasets.demo import load_demo_flights
    from pipelines.gate import load_gate_policy
    from pipelines.gate.card import load_model_card_config

    spec = load_dataset_spec(PROJECT_ROOT / DATASET_SPEC)
    flights = load_demo_flights()
    started = time.perf_counter()
    champion, _ = register(flights, "2013-03-01", tmp)
    challenger, demo_rows = register(flights, "2013-04-01", tmp)
    print(f"trained and registered champion v{champion} (Jan-Feb) and challenger v{challenger} (Q1) in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    registry = AliasRegistry(s3_client(stack.settings, stack.credentials), MlflowClient(stack.settings.mlflow_url))
    registry.move_alias(MODEL, "champion", champion, expected=None, actor="benchmark", reason="baseline")
    stress_rows = apply_target(between(flights, "2013-04-01", "2013-08-01").reset_index(drop=True), spec)[0]

    policy = load_gate_policy()
    policy = policy.model_copy(update={"bootstrap": policy.bootstrap.model_copy(update={"n_resamples": resamples})})
    bootstrap_s: list[float] = []
    fetch_s: list[float] = []
    score_s: list[float] = []
    gate_decision.paired_bootstrap_deltas = timed(gate_decision.paired_bootstrap_deltas, bootstrap_s)
    gate_adapter.fetch_version_onnx = timed(gate_adapter.fetch_version_onnx, fetch_s)
    rescoring.score_registered = timed(rescoring.score_registered, score_s)
    card = load_model_card_config(spec.name, spec.description)
    for name, rows in (("demo", demo_rows), ("stress", stress_rows)):
        totals, cpu, parts = [], [], []
        for _ in range(runs):
            bootstrap_s.clear(), fetch_s.clear(), score_s.clear()
            started, cpu_started = time.perf_counter(), time.process_time()
            outcome, report = gate_adapter.gate_registered_version(
                registry, model_name=MODEL, version=challenger, rows=rows, label=spec.target.name,
                slice_columns=spec.slices, policy=policy, card=card,
            )  # fmt: skip
            totals.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
            parts.append((sum(bootstrap_s), sum(fetch_s), sum(score_s)))
        total = statistics.median(totals)
        boot, fetch, score = (statistics.median(part[i] for part in parts) for i in range(3))
        print(f"\n{name}: {len(rows):,} rows, {rows[spec.target.name].mean():.1%} delayed, {resamples} resamples")
        print(f"  gate wall time, median of {runs}: {total:.2f} s (target <= 20 s); CPU {statistics.median(cpu):.2f} s")
        print(f"  paired bootstrap {boot:.2f} s; registry download of both ONNX files {fetch:.2f} s; "
              f"scoring + latency of both {score:.2f} s; rest (report, card, MLflow writes) "
              f"{total - boot - fetch - score:.2f} s")  # fmt: skip
        print(f"  runs: {', '.join(f'{seconds:.2f}' for seconds in totals)} s")
        print(f"  decision: {report.decision} - {report.summary}")
        for check in report.checks:
            if check.kind in {"change", "agreement"} or check.verdict in {"fail", "needs_approval"}:
                print(f"    {check.verdict:>15}  {check.name}: {check.reason}")
        print(f"  report: {outcome.report_url}")


if __name__ == "__main__":
    main()
