"""The side effects of a rollout and a rollback: Triton fleet, gateway routes, registry aliases, step records.

The decisions (which routes, which guardrail verdict, which rollback target) are pure, in pipelines/rollout;
this module only carries them out, always in the zero-downtime order:

- add a version: load it on every host (verified), *then* route to it;
- remove a version: route away from it and wait until every gateway replica applies that, *then* unload it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from pydantic import BaseModel

from factory_providers.gateway.hooks import GatewayHook
from factory_providers.mlflow.hooks import MlflowHook
from factory_providers.s3.hooks import FactoryS3Hook
from factory_providers.triton.fleet import DeployReport, deploy_to_fleet, offline_probe, on_each_host
from factory_providers.triton.hooks import TritonHook
from pipelines.export.signature import ModelSignature, read_onnx_signature
from pipelines.rollout.guardrails import StepVerdict
from pipelines.rollout.plan import champion_routes
from pipelines.rollout.policy import RolloutPolicy
from pipelines.rollout.records import Action, StepRecord, record_key
from pipelines.rollout.window import Scrape, window_delta
from serving.gateway.routing import RouteTable
from serving.gateway.state import RouteStore

log = logging.getLogger(__name__)


class Rollout(BaseModel):
    """What every task of one rollout (or rollback) works on; passed between tasks as XCom."""

    @property
    def blue_green(self) -> bool:
        return self.target_pool != self.pool

    model: str
    rollout_id: str
    champion: int | None
    challenger: int
    pool: str  # the Triton pool the gateway routes to now (the champion's)
    target_pool: str  # where the challenger is deployed: `pool`, or the idle pool of a blue-green pair
    policy_path: str
    # The policy as read when the rollout was planned: every step judges by it, so editing the file mid-rollout
    # changes nothing until the next rollout (the records name its version).
    policy: RolloutPolicy
    actor: str


class StepRecorder:
    """Writes a rollout's step records to S3 (fixed keys: a retried task overwrites its own record)."""

    def __init__(self, rollout: Rollout, bucket: str, s3: FactoryS3Hook | None = None) -> None:
        self.rollout, self.bucket, self.s3 = rollout, bucket, s3 or FactoryS3Hook()

    def write(
        self,
        seq: int,
        step: str,
        action: Action,
        started_at: datetime,
        *,
        table: RouteTable | None = None,
        verdict: StepVerdict | None = None,
        detail: str = "",
    ) -> StepRecord:
        record = StepRecord(
            model=self.rollout.model,
            rollout_id=self.rollout.rollout_id,
            seq=seq,
            step=step,
            action=action,
            started_at=started_at,
            ended_at=datetime.now(UTC),
            champion=self.rollout.champion,
            challenger=self.rollout.challenger,
            routes_state_version=table.state_version if table else None,
            verdict=verdict,
            detail=detail,
            actor=self.rollout.actor,
            policy=f"{self.rollout.policy_path}@{self.rollout.policy.version}",
        )
        key = record_key(record.model, record.rollout_id, seq, step)
        self.s3.load_bytes(record.model_dump_json(indent=2).encode(), key=key, bucket_name=self.bucket, replace=True)
        log.info("rollout %s step %s: %s %s", record.rollout_id, step, action, detail or "")
        return record

    def uri(self, seq: int, step: str) -> str:
        return f"s3://{self.bucket}/{record_key(self.rollout.model, self.rollout.rollout_id, seq, step)}"


# ----- Triton ------------------------------------------------------------------------------------------------
def parity_inputs(mlflow: MlflowHook, model: str, version: int, rows: int, signature: ModelSignature) -> dict:
    """The last `rows` rows of the version's training snapshot, as the ONNX feed (numpy arrays by input):
    real rows, with the missing values and rare categories serving meets."""
    from factory_providers.mlflow.gate import download_record
    from factory_providers.mlflow.records import resolve_version
    from factory_providers.s3.snapshots import read_snapshot
    from pipelines.export.signature import onnx_inputs_from_frame
    from pipelines.lineage import RunRecord

    ref = resolve_version(mlflow, model, str(version))
    with mlflow.tracking() as client:
        record = download_record(client, ref.run_id, "run_record.json", RunRecord)
    _, frame = read_snapshot(record.data.dataset, record.data.snapshot_id)
    return onnx_inputs_from_frame(frame.tail(rows), signature)


def deploy(
    model: str,
    live_versions: Sequence[int],
    introduce: Sequence[int],
    policy: RolloutPolicy,
    *,
    pools: list[str] | None = None,
) -> DeployReport:
    """Serve exactly `live_versions` on every host of `pools`; the `introduce`d versions are parity-checked."""
    from factory_providers.mlflow.gate import fetch_version_onnx

    mlflow, triton = MlflowHook(), TritonHook()
    bucket, prefix = triton.repository
    graphs: dict[int, bytes] = {}

    def onnx_of(version: int) -> bytes:
        if version not in graphs:
            with mlflow.tracking() as client:
                graph = fetch_version_onnx(client, model, str(version))
            if graph is None:
                raise ValueError(f"{model} v{version} has no ONNX artifact in the registry: it cannot be served")
            graphs[version] = graph
        return graphs[version]

    signature = read_onnx_signature(onnx_of(max(live_versions)))
    inputs = parity_inputs(mlflow, model, introduce[0], policy.parity_rows, signature) if introduce else {}
    probe = offline_probe({version: onnx_of(version) for version in introduce}, inputs, policy.parity_tolerance)
    return deploy_to_fleet(
        FactoryS3Hook(),
        bucket=bucket,
        prefix=prefix,
        hosts=triton.hosts(pools),
        model=model,
        live_versions=live_versions,
        signature=signature,
        onnx_of=onnx_of,
        probe=probe,
        profile=triton.profile,
    )


def serving_everywhere(model: str, version: int, pools: list[str] | None = None) -> bool:
    """True if every host of the fleet has `version` of `model` ready (a rollback can then skip loading)."""

    def not_ready(client) -> str | None:
        return None if client.is_model_ready(model, str(version)) else "not ready"

    return not on_each_host(TritonHook().hosts(pools), 5.0, not_ready)


# ----- gateway -----------------------------------------------------------------------------------------------
def hold_and_judge(
    gateway: GatewayHook,
    store: RouteStore,
    judge: Callable[[Scrape], StepVerdict],
    *,
    window_seconds: float,
    max_extensions: int,
    sleep: Callable[[float], None] = time.sleep,
) -> StepVerdict:
    """Hold the current routes for a window, then judge what the gateway measured; extend a quiet window."""
    urls = gateway.replica_urls(store)
    before = gateway.scrape(urls)
    verdict = None
    for _ in range(max_extensions + 1):
        sleep(window_seconds)
        verdict = judge(window_delta(before, gateway.scrape(urls)))
        if verdict.enough_evidence:
            break
        log.info("%s; extending the window by %g s", verdict.summary, window_seconds)
    assert verdict is not None  # the loop runs at least once
    return verdict


def route_back(
    gateway: GatewayHook, store: RouteStore, model: str, champion: int, pool: str, reason: str
) -> RouteTable:
    """All traffic to the champion, applied by every replica (the rollback of a rollout step)."""
    return gateway.apply_routes(store, model, champion_routes(champion, pool), reason=reason)
