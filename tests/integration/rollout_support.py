"""What the rollout tests share: the model, two trained versions, a fast policy, client load, state probes.

Used by test_rollout.py (embedded stack) and test_fleet_profile.py (production profile, two Triton hosts and two
gateway replicas): both need two real factory_train versions and clients predicting through a gateway.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
import yaml

from factory.airflow_api import AirflowClient
from factory.source_data import seed_source_database
from factory.stack import Stack, s3_client

MODEL = "flights-hgb"
WINDOWS = (
    {"interval_start": "2013-01-01T00:00:00Z", "interval_end": "2013-01-15T00:00:00Z", "owner": "tests"},
    {"interval_start": "2013-02-01T00:00:00Z", "interval_end": "2013-02-15T00:00:00Z", "owner": "tests"},
)
CHECKED_IN_POLICY = Path(__file__).resolve().parents[2] / "pipelines" / "configs" / "policies" / "rollout.yaml"


def fast_policy(path: Path, **guardrails: float) -> Path:
    """The checked-in policy with second-long windows (CI traffic is a few clients, not production's)."""
    policy = yaml.safe_load(CHECKED_IN_POLICY.read_text())
    policy["shadow"] |= {"window_seconds": 2, "min_requests": 20}
    policy |= {"step_window_seconds": 2, "min_requests_per_step": 5, "max_window_extensions": 10, "bake_seconds": 3}
    # Two versions trained on different months disagree by design; these limits keep error and latency checks.
    # p99 over a few dozen requests on a shared 2-core CI box is one scheduling hiccup: a wide slack keeps the latency
    # check from flaking here (its arithmetic is unit-tested in test_rollout_decisions).
    policy["guardrails"] |= {"max_prediction_psi": 10.0, "max_shadow_disagreement": 1.0, "p99_slack_ms": 250.0}
    policy["guardrails"] |= guardrails
    path.write_text(yaml.safe_dump(policy))
    return path


@contextlib.contextmanager
def connections_of(stack: Stack) -> Iterator[None]:
    """The stack's Airflow Connections (AIRFLOW_CONN_*) in this process, for hooks used by the test itself."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in stack.airflow_env().items():
            if key.startswith("AIRFLOW_CONN_"):
                patch.setenv(key, value)
        yield


def trained_versions(mlflow) -> list[int]:
    """Versions registered by factory_train (a real run record and snapshot behind them), the latest one per
    training snapshot: any two are different models (the gate tests register the same window twice, and two
    identical models would never breach a disagreement guardrail)."""
    latest: dict[str, int] = {}
    for found in mlflow.search_model_versions(f"name='{MODEL}'"):
        tags = mlflow.get_run(found.run_id).data.tags
        if tags.get("airflow.dag_id") == "factory_train":
            snapshot = tags.get("data.snapshot_id", found.run_id)
            latest[snapshot] = max(latest.get(snapshot, 0), int(found.version))
    return sorted(latest.values())


def train_versions(
    stack: Stack, airflow: AirflowClient, windows: tuple[dict[str, Any], ...] = WINDOWS, frame=None
) -> tuple[int, int]:
    """(A, B): the last two real factory_train versions (ONNX, run record, snapshot), trained through the stack's
    scheduler when it has fewer (source seeded with `frame`, default: the whole demo year)."""
    from mlflow import MlflowClient

    mlflow = MlflowClient(stack.settings.mlflow_url)
    if len(trained_versions(mlflow)) < 2:
        seed_source_database(stack.settings, frame=frame)
        airflow.wait_for_dag("factory_train")
        airflow.unpause("factory_train")
        runs = [airflow.trigger("factory_train", conf) for conf in windows]
        for run_id in runs:
            airflow.wait_for_run("factory_train", run_id, timeout=900)
            states = {t.task_id: t.state for t in airflow.task_timings("factory_train", run_id)}
            failed = [task for task, state in states.items() if state == "failed"]
            logs = "\n".join(airflow.task_log("factory_train", run_id, task)[-3000:] for task in failed)
            assert states["register_model"] == "success", f"{states}\n{logs}"
    found = trained_versions(mlflow)
    assert len(found) >= 2, f"factory_train registered {found}"
    return found[-2], found[-1]


def alias_registry(stack: Stack):  # -> AliasRegistry (imported late: it pulls in the plugins' MLflow code)
    from factory_providers.mlflow.aliases import AliasRegistry
    from mlflow import MlflowClient

    return AliasRegistry(s3_client(stack.settings, stack.credentials), MlflowClient(stack.settings.mlflow_url))


def set_alias(registry, alias: str, version: int) -> None:
    registry.move_alias(
        MODEL, alias, str(version), expected=registry.current(MODEL).get(alias), actor="tests", reason="test set-up"
    )


def feature_rows(version: int, rows: int = 40) -> list[dict[str, Any]]:
    """Real rows of the version's training snapshot as the JSON a client sends (NaN -> null)."""
    from factory_providers.mlflow.gate import fetch_version_onnx
    from factory_providers.mlflow.hooks import MlflowHook
    from factory_providers.rollout.operations import parity_inputs

    from pipelines.export.signature import read_onnx_signature

    mlflow = MlflowHook()
    with mlflow.tracking() as client:
        signature = read_onnx_signature(fetch_version_onnx(client, MODEL, str(version)))
    inputs = parity_inputs(mlflow, MODEL, version, rows, signature)
    payload = []
    for index in range(rows):
        record = {}
        for name, values in inputs.items():
            value = values[index, 0]
            if isinstance(value, float | np.floating):
                record[name] = None if np.isnan(value) else float(value)
            else:
                record[name] = None if value == "" else str(value)
        payload.append(record)
    return payload


@dataclass
class Load:
    """Clients predicting through a gateway until stopped; every status and version counted."""

    url: str
    token: str
    rows: list[dict[str, Any]]
    statuses: Counter[int] = field(default_factory=Counter)
    served: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def client(self, offset: int) -> None:
        with httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30) as own:
            index = offset
            while not self.stop.is_set():
                body = {"rows": self.rows[index % len(self.rows) : index % len(self.rows) + 1]}
                response = own.post(f"/v1/models/{MODEL}/predict", json=body)
                self.statuses[response.status_code] += 1
                if response.status_code == 200:
                    self.served[response.json()["version"]] += 1
                elif len(self.failures) < 5:
                    self.failures.append(response.text[:300])
                index += 1
                time.sleep(0.01)


@contextlib.contextmanager
def running_load(url: str, token: str, rows: list[dict[str, Any]], clients: int) -> Iterator[Load]:
    """`clients` clients predicting through the gateway at `url` for the duration of the block."""
    generator = Load(url, token, rows)
    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(generator.client, offset) for offset in range(clients)]
        try:
            yield generator
        finally:
            generator.stop.set()
            for future in futures:
                future.result()


def serve_champion(registry, champion: int, challenger: int) -> None:
    """`champion` live on every Triton host, 100 % of the routes (applied by every gateway replica) and the
    `champion` alias; `challenger` holds the `challenger` alias (a rollout's starting point)."""
    from factory_providers.gateway.hooks import GatewayHook
    from factory_providers.rollout.operations import deploy

    from pipelines.rollout.plan import champion_routes
    from pipelines.rollout.policy import load_rollout_policy

    deploy(MODEL, [champion], [champion], load_rollout_policy())
    gateway = GatewayHook()
    with gateway.route_store() as store:
        gateway.apply_routes(store, MODEL, champion_routes(champion, "default"), reason="test set-up")
    set_alias(registry, "champion", champion)
    set_alias(registry, "challenger", challenger)


def ready(endpoint: str, version: int) -> bool:
    client = triton_http.InferenceServerClient(endpoint.removeprefix("http://"))
    try:
        return client.is_model_ready(MODEL, str(version))
    finally:
        client.close()


def records(live_stack: Stack, rollout_id: str) -> dict[str, dict[str, Any]]:
    s3 = s3_client(live_stack.settings, live_stack.credentials)
    listing = s3.list_objects_v2(Bucket="factory-data", Prefix=f"rollouts/{MODEL}/{rollout_id}/")
    found = {}
    for item in listing.get("Contents", []):
        record = json.loads(s3.get_object(Bucket="factory-data", Key=item["Key"])["Body"].read())
        found[record["step"]] = record
    return found
