"""The rollout policy: which steps a challenger walks, how long each holds, and what counts as a breach.

Windows are bounded by evidence, not only by time: a step holds at least `window_seconds` and needs at least
`min_requests` challenger answers; a quiet window is extended a few times and then judged as too little
evidence (a rollback, never a silent pass: a challenger that nobody called has proven nothing).
"""

from __future__ import annotations

import itertools
from pathlib import Path

from pydantic import Field, model_validator

from pipelines.config_loading import StrictModel, load_yaml_model

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ROLLOUT_POLICY = "pipelines/configs/policies/rollout.yaml"


class RolloutPolicyError(ValueError):
    """The rollout policy file is unreadable or invalid; the message names the file and the field."""


class ShadowPolicy(StrictModel):
    share: float = Field(1.0, gt=0, le=1)
    window_seconds: float = Field(60, gt=0)
    min_requests: int = Field(200, ge=1)


class Guardrails(StrictModel):
    """Limits judged on each step's window; the challenger is compared with the champion of the same window."""

    max_error_rate: float = Field(0.01, ge=0, le=1)
    max_error_rate_increase: float = Field(0.005, ge=0, le=1)
    max_p99_ratio: float = Field(1.5, ge=1)
    p99_slack_ms: float = Field(5.0, ge=0)
    max_prediction_psi: float = Field(0.25, gt=0)
    psi_significance: float = Field(0.01, gt=0, lt=1)  # ... and sampling noise must not explain it (p below this)
    max_shadow_disagreement: float = Field(0.35, ge=0, le=1)
    disagreement_threshold: float = Field(0.2, gt=0, le=1)
    max_shadow_error_rate: float = Field(0.01, ge=0, le=1)


class RolloutPolicy(StrictModel):
    version: str
    shadow: ShadowPolicy = ShadowPolicy()
    canary_percent: float = Field(5, gt=0, lt=100)
    ramp_percents: tuple[float, ...] = (25, 50)
    step_window_seconds: float = Field(60, gt=0)
    min_requests_per_step: int = Field(100, ge=1)
    max_window_extensions: int = Field(3, ge=0, le=20)
    guardrails: Guardrails = Guardrails()
    bake_seconds: float = Field(120, ge=0)
    parity_tolerance: float = Field(1e-5, gt=0)
    parity_rows: int = Field(64, ge=1, le=4096)

    @model_validator(mode="after")
    def _check_ramp(self) -> RolloutPolicy:
        steps = (self.canary_percent, *self.ramp_percents)
        if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
            raise ValueError(f"canary_percent and ramp_percents must increase strictly, got {list(steps)}")
        if steps[-1] >= 100:
            raise ValueError("ramp_percents stay below 100: the last step to 100 % is the promotion itself")
        return self

    @property
    def percent_steps(self) -> tuple[float, ...]:
        """Challenger shares of the canary and ramp steps, in order (100 % is the promotion)."""
        return (self.canary_percent, *self.ramp_percents)


def load_rollout_policy(path: str | Path = DEFAULT_ROLLOUT_POLICY) -> RolloutPolicy:
    path = Path(path)
    path = path if path.is_absolute() else REPOSITORY_ROOT / path
    return load_yaml_model(path, RolloutPolicy, RolloutPolicyError, "rollout policy")
