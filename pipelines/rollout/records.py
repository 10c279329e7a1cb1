"""The evidence a rollout or rollback leaves: one JSON record per step, under one key prefix per rollout.

    s3://<data bucket>/rollouts/<model>/<rollout id>/<nn>-<step>.json

Keys are fixed by the rollout id and the step, so a retried task overwrites its own record instead of
adding a second one; the records of a rollout list in the order the steps ran.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from pipelines.rollout.guardrails import StepVerdict

Action = Literal[
    "planned", "deployed", "continued", "skipped", "rolled_back", "promoted", "baked", "unloaded", "failed"
]
ROLLOUTS_PREFIX = "rollouts"


class StepRecord(BaseModel):
    model: str
    rollout_id: str
    seq: int
    step: str
    action: Action
    started_at: datetime
    ended_at: datetime
    champion: int | None
    challenger: int
    routes_state_version: int | None = None
    verdict: StepVerdict | None = None
    detail: str = ""
    actor: str = ""
    policy: str = ""  # <file>@<version> of the rollout policy the step was judged by


def record_key(model: str, rollout_id: str, seq: int, step: str) -> str:
    return f"{ROLLOUTS_PREFIX}/{model}/{rollout_id}/{seq:02d}-{step}.json"


def rollout_prefix(model: str, rollout_id: str) -> str:
    return f"{ROLLOUTS_PREFIX}/{model}/{rollout_id}/"
