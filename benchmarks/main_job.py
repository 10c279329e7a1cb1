"""The main job (`make demo` without the installs): wall time of the whole loop and of each phase, and the drift ->
detection -> retrained -> promoted lead time, against the 15-minute target.

Each run plays the whole story on a throwaway stack (free ports, temp state dir, stopped afterwards), exactly as
`factory demo` does (`factory.demo.run_demo`), and reads the summary it stores. Medians over the runs.
Run: .venv/bin/python benchmarks/main_job.py [runs]    (target: total <= 900 s on 2 cores)
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import sys
import tempfile
from pathlib import Path

from factory.demo import run_demo
from factory.settings import isolated_settings
from factory.stack import Stack

TARGET_TOTAL_S = 900.0


def one_run() -> dict:
    with tempfile.TemporaryDirectory(prefix="factory-bench-demo-") as home:
        stack = Stack(isolated_settings(Path(home)), env={}, report=lambda line: None)
        with contextlib.redirect_stdout(io.StringIO()):  # the demo's own progress lines
            run_demo(stack, keep_up=False)
        return json.loads((Path(home) / "demo-summary.json").read_text())


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    summaries = [one_run() for _ in range(runs)]
    print(f"main job, {runs} run(s) on a throwaway embedded stack (medians):")
    for phase in summaries[0]["phase_walls"]:
        print(f"  {statistics.median(s['phase_walls'][phase] for s in summaries):7.1f} s  {phase}")
    total = statistics.median(s["total_s"] for s in summaries)
    print(f"  {total:7.1f} s  total: {total / TARGET_TOTAL_S:.2f}x the {TARGET_TOTAL_S:.0f} s target")
    for mark in ("detected", "retrained", "promoted"):
        lead = statistics.median(s["lead_times_s"][mark] for s in summaries)
        print(f"  drift -> {mark:<9} {lead:6.1f} s after the first drifted request")
    failed = sum(sum(s["load"]["failures"].values()) for s in summaries)
    answered = sum(s["load"]["answered"] for s in summaries)
    print(f"  requests during the retrained model's rollouts: {answered} answered, {failed} failed")


if __name__ == "__main__":
    main()
