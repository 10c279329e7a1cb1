"""Parse time per DAG file (what the dag-processor pays on every re-parse), median of repeated warm parses.

Target: <= 0.3 s per file. The ratio printed is median / target. Heavy libraries are imported inside tasks, so a
DAG file costs only airflow.sdk and the file itself.
Run: .venv/bin/python benchmarks/dag_parse.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="factory-bench-airflow-"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

TARGET_S = 0.3
DAGS = Path(__file__).resolve().parents[1] / "dags"


def main(repeats: int = 7) -> None:
    from airflow.dag_processing.dagbag import DagBag

    for path in sorted(DAGS.glob("*.py")):
        DagBag(dag_folder=str(path))  # warm the shared imports (airflow.sdk), as in the long-lived dag-processor
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            bag = DagBag(dag_folder=str(path))
            times.append(time.perf_counter() - started)
        assert not bag.import_errors, bag.import_errors
        median = statistics.median(times)
        print(f"{path.name:<32} parse median {median * 1000:7.1f} ms (n={repeats}); "
              f"ratio to the {TARGET_S:.1f} s target: {median / TARGET_S:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
