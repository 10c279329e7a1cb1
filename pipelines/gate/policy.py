"""The gate policy: what a challenger must show, on the same evaluation rows, to replace the champion.

One versioned YAML file per model family (pipelines/configs/policies/gate.yaml), validated here on load. The
rules, and why each exists:

- `value_bounds`: absolute floors/ceilings on headline metrics. The only rules a first model (no champion) is
  judged by, besides the slice bounds and the serving bounds.
- `changes`: how far each metric may move against the champion. A change counts, as a regression or as an
  improvement, only when the paired bootstrap CI of the difference excludes zero: a gate that reacts to noise
  flip-flops between models. Promotion needs a supported improvement on a metric with `min_improvement`.
- `slices`: bounds on every slice big enough to judge, and a regression limit on the critical slices (the
  customers you cannot afford to hurt while the average improves).
- `serving`: the exported model's in-process latency and size, the floor under the served cost.
- `agreement` / `approval`: a model that changes many decisions, or a critical slice that only just passes,
  goes to a human instead of straight to production; unanswered within `response_timeout_hours`, it is rejected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import (
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from pipelines.config_loading import StrictModel, load_yaml_model
from pipelines.evaluation.metrics import DEFAULT_N_BINS, DEFAULT_THRESHOLD

GATE_POLICY_PATH = Path(__file__).resolve().parents[1] / "configs" / "policies" / "gate.yaml"

# The headline metrics of pipelines.evaluation.metrics.MetricSet (a unit test keeps the two lists equal).
MetricName = Literal["roc_auc", "pr_auc", "log_loss", "accuracy", "f1", "ece", "brier"]
METRIC_NAMES: tuple[MetricName, ...] = get_args(MetricName)
Direction = Literal["higher_is_better", "lower_is_better"]
METRIC_DIRECTIONS: dict[MetricName, Direction] = {
    "roc_auc": "higher_is_better",
    "pr_auc": "higher_is_better",
    "log_loss": "lower_is_better",
    "accuracy": "higher_is_better",
    "f1": "higher_is_better",
    "ece": "lower_is_better",
    "brier": "lower_is_better",
}


class GatePolicyError(ValueError):
    """A gate policy that cannot be used; the message names the file and the offending field."""


class Bounds(StrictModel):
    """Inclusive bounds on a metric's value; at least one side is set."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_sided_or_ordered(self) -> Bounds:
        if self.min is None and self.max is None:
            raise ValueError("set min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class RegressionLimit(StrictModel):
    """How much worse than the champion a metric may get: absolute, relative to the champion, or both.

    When both are set the stricter one applies. `direction` defaults to the metric's nature; stating it is
    allowed (it documents the rule) but it must agree, since a flipped direction would invert the gate.
    """

    metric: MetricName
    direction: Direction | None = None
    max_regression: NonNegativeFloat | None = None
    max_relative_regression: NonNegativeFloat | None = None

    @model_validator(mode="after")
    def _check_rule(self) -> RegressionLimit:
        natural = METRIC_DIRECTIONS[self.metric]
        if self.direction is not None and self.direction != natural:
            raise ValueError(f"direction: {self.metric} is {natural}, the policy says {self.direction}")
        limits = self._limit_fields()
        if all(getattr(self, name) is None for name in limits):
            raise ValueError(f"{self.metric}: set {' or '.join(limits)}")
        return self

    @property
    def sign(self) -> int:
        """+1 when higher is better: `sign * (challenger - champion)` is positive for an improvement."""
        return 1 if METRIC_DIRECTIONS[self.metric] == "higher_is_better" else -1

    def tolerance(self, baseline: float) -> float | None:
        """The largest allowed worsening against a champion at `baseline` (None: no regression limit)."""
        limits = [self.max_regression] if self.max_regression is not None else []
        if self.max_relative_regression is not None:
            limits.append(self.max_relative_regression * abs(baseline))
        return min(limits) if limits else None

    @classmethod
    def _limit_fields(cls) -> list[str]:
        """The fields of which at least one must be set for the rule to mean anything."""
        return ["max_regression", "max_relative_regression"]


class ChangeRule(RegressionLimit):
    """A headline change rule; `min_improvement` makes the metric one that can earn a promotion."""

    min_improvement: NonNegativeFloat | None = None

    @classmethod
    def _limit_fields(cls) -> list[str]:
        return [*super()._limit_fields(), "min_improvement"]


class CriticalSlices(StrictModel):
    """Slice values of one column that must not regress (they must also exist in the evaluation data)."""

    column: str = Field(min_length=1)
    values: list[str] = Field(min_length=1)


class SlicePolicy(StrictModel):
    """Slices below `min_size` rows are reported but not judged: on a handful of rows a metric is noise."""

    min_size: PositiveInt = 500
    value_bounds: dict[MetricName, Bounds] = Field(default_factory=dict)
    critical: list[CriticalSlices] = Field(default_factory=list)
    regressions: list[RegressionLimit] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_slices(self) -> SlicePolicy:
        _require_unique("regressions", [limit.metric for limit in self.regressions])
        _require_unique("critical", [(group.column, value) for group in self.critical for value in group.values])
        if self.regressions and not self.critical:
            raise ValueError("regressions: apply to critical slices, but none are listed under critical")
        return self

    def critical_pairs(self) -> list[tuple[str, str]]:
        return [(group.column, value) for group in self.critical for value in group.values]


class ServingPolicy(StrictModel):
    """Single-row in-process latency (ms) and ONNX size (bytes) of the exported model; unset = reported only."""

    max_p50_ms: PositiveFloat | None = None
    max_p99_ms: PositiveFloat | None = None
    max_size_bytes: PositiveInt | None = None


class AgreementPolicy(StrictModel):
    """Minimum share of rows on which challenger and champion take the same decision (else reject)."""

    min_share: float | None = Field(None, ge=0, le=1)


class ApprovalPolicy(StrictModel):
    """When a passing challenger still needs a human: a behaviour change, or a critical slice near its bound."""

    min_agreement: float | None = Field(None, ge=0, le=1)
    critical_slice_margin: NonNegativeFloat | None = None
    # How long a human has to answer; then the request takes its default, Reject: silence never promotes.
    response_timeout_hours: PositiveFloat = 24.0


class BootstrapPolicy(StrictModel):
    """Paired bootstrap over the evaluation rows; the seed makes a gate decision reproducible."""

    n_resamples: int = Field(1000, ge=100, le=100_000)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    seed: int = 0


class GatePolicy(StrictModel):
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    description: str = ""
    decision_threshold: float = Field(DEFAULT_THRESHOLD, gt=0, lt=1)
    calibration_bins: int = Field(DEFAULT_N_BINS, ge=2, le=100)
    bootstrap: BootstrapPolicy = Field(default_factory=BootstrapPolicy)
    value_bounds: dict[MetricName, Bounds] = Field(default_factory=dict)
    changes: list[ChangeRule] = Field(min_length=1)
    slices: SlicePolicy = Field(default_factory=SlicePolicy)
    serving: ServingPolicy = Field(default_factory=ServingPolicy)
    agreement: AgreementPolicy = Field(default_factory=AgreementPolicy)
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)

    @model_validator(mode="after")
    def _check_policy(self) -> GatePolicy:
        _require_unique("changes", [rule.metric for rule in self.changes])
        if not any(rule.min_improvement is not None for rule in self.changes):
            raise ValueError("changes: no rule sets min_improvement, so no challenger could ever be promoted")
        floor, review = self.agreement.min_share, self.approval.min_agreement
        if floor is not None and review is not None and review < floor:
            raise ValueError(
                f"approval.min_agreement ({review}) is below agreement.min_share ({floor}): it could never fire"
            )
        return self


def load_gate_policy(path: str | Path = GATE_POLICY_PATH) -> GatePolicy:
    """Read and validate a gate policy YAML; every problem is reported as `file: field: reason`."""
    return load_yaml_model(path, GatePolicy, GatePolicyError, "gate policy")


def _require_unique(field: str, items: list[object]) -> None:
    duplicates = sorted({str(item) for item in items if items.count(item) > 1})
    if duplicates:
        raise ValueError(f"{field}: listed more than once: {', '.join(duplicates)}")
