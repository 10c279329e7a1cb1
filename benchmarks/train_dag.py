"""factory_train end to end through the real scheduler on the demo interval: wall time, per-task time, Airflow's share.

A throwaway stack (free ports, temp state dir) is started and its source DB seeded; factory_train is triggered
through the REST API with default Params (the spec's initial interval, Jan-Mar 2013, HGB), like a user would.
The tasks run one after another (each needs the previous one's output), so the run's wall time is the sum of the
task durations plus what Airflow adds between them: queueing, scheduling, starting a task process. "Airflow's
share" is that remainder over the wall time. Task durations include each fresh interpreter's imports.
Then factory_reproduce re-trains the last registered version from its MLflow record alone: the figure is how many
of the compared metrics are bit-identical (target: all), and its wall time against the training run's.
Run: .venv/bin/python benchmarks/train_dag.py [runs]    (target: wall <= 180 s)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from factory.airflow_api import AirflowClient
from factory.dag_runs import TRAIN_DAG as DAG_ID
from factory.dag_runs import run_dag
from factory.settings import isolated_settings
from factory.source_data import seed_source_database
from factory.stack import Stack

REPRODUCE_DAG_ID = "factory_reproduce"
TASKS = (
    "extract_snapshot", "validate_snapshot", "train_model", "evaluate_and_export", "register_model",
    "gate_candidate", "route_gate_decision", "approve_candidate", "promote_challenger", "record_gate_outcome",
)  # fmt: skip
TARGET_WALL_S = 180.0


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    with tempfile.TemporaryDirectory(prefix="factory-bench-") as home:
        stack = Stack(isolated_settings(Path(home)), env={}, report=lambda line: None)
        started = time.monotonic()
        stack.up()
        try:
            up_s = time.monotonic() - started
            seed = seed_source_database(stack.settings)
            creds = stack.credentials
            client = AirflowClient(stack.settings.airflow_url, creds.airflow_admin_user, creds.airflow_admin_password)
            walls: list[float] = []
            durations: dict[str, list[float]] = {task_id: [] for task_id in TASKS}
            for _ in range(runs):
                run_id, wall = run_dag(client, DAG_ID, report=lambda line: None)
                walls.append(wall)
                for timing in client.task_timings(DAG_ID, run_id):
                    durations[timing.task_id].append(timing.duration_s)
                snapshot = client.xcom(DAG_ID, run_id, "extract_snapshot")
                registered = client.xcom(DAG_ID, run_id, "register_model")
            reproduce_conf = {"model_name": registered["model_name"], "version": registered["version"]}
            reproduce_run, reproduce_wall = run_dag(client, REPRODUCE_DAG_ID, reproduce_conf, report=lambda line: None)
            reproduction = client.xcom(REPRODUCE_DAG_ID, reproduce_run, "compare_and_record")
            client.close()
        finally:
            stack.down()
    wall = statistics.median(walls)
    task_total = sum(statistics.median(values) for values in durations.values())
    print(f"stack up {up_s:.1f} s; source seeded in {seed.seconds:.1f} s ({seed.rows} rows)")
    print(f"snapshot {snapshot['snapshot_id'][:12]} ({snapshot['rows']} rows); registered "
          f"{registered['model_name']} v{registered['version']} @{registered['alias']}")  # fmt: skip
    print(f"factory_train through the scheduler: wall median {wall:.1f} s over {runs} run(s) "
          f"({', '.join(f'{w:.1f}' for w in walls)}); target <= {TARGET_WALL_S:.0f} s")  # fmt: skip
    print(f"{'task':<22} {'duration':>9}  (seconds, medians)")
    for task_id in TASKS:
        print(f"{task_id:<22} {statistics.median(durations[task_id]):9.1f}")
    overhead = wall - task_total
    print(f"sum of task durations {task_total:.1f} s; Airflow's share of the wall time {overhead / wall:.0%} "
          f"({overhead:.1f} s of queueing, scheduling, task start-up)")  # fmt: skip
    print(f"factory_reproduce of v{registered['version']}: {reproduction['verdict']}; wall {reproduce_wall:.1f} s "
          f"({reproduce_wall / wall:.2f}x the training run)")  # fmt: skip


if __name__ == "__main__":
    main()
