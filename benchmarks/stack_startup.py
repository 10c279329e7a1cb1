"""Cold `stack up` → all services healthy (environments already installed), per service and in total.

Each round uses a new state directory and free ports (a real cold start: empty S3, fresh SQLite databases, Airflow
migration), then `down`. Reference: `airflow standalone` alone serves its UI in ~60 s here (shared/stack-facts.md).
Run: .venv/bin/python benchmarks/stack_startup.py [rounds]
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from factory.settings import isolated_settings
from factory.stack import Stack

AIRFLOW_STANDALONE_REFERENCE_S = 60.0


def one_round() -> tuple[float, float, dict[str, float]]:
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="factory-bench-") as home:
        stack = Stack(isolated_settings(Path(home)), env={}, report=lines.append)
        started = time.perf_counter()
        stack.up()
        cold = time.perf_counter() - started
        started = time.perf_counter()
        stack.up()  # idempotent: everything already healthy
        warm = time.perf_counter() - started
        stack.down()
    per_service = {m[1]: float(m[2]) for line in lines if (m := re.match(r"(\S+): healthy after ([\d.]+) s", line))}
    return cold, warm, per_service


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    results = [one_round() for _ in range(rounds)]
    cold = statistics.median(r[0] for r in results)
    warm = statistics.median(r[1] for r in results)
    print(f"stack up, cold, all services healthy: median {cold:.1f} s over {rounds} rounds "
          f"({', '.join(f'{r[0]:.1f}' for r in results)})")  # fmt: skip
    for name in results[0][2]:
        print(f"  {name:<24} median {statistics.median(r[2][name] for r in results):6.1f} s to healthy")
    print(f"stack up again (idempotent no-op): median {warm:.2f} s")
    print(f"ratio cold up / `airflow standalone` reference ({AIRFLOW_STANDALONE_REFERENCE_S:.0f} s): "
          f"{cold / AIRFLOW_STANDALONE_REFERENCE_S:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
