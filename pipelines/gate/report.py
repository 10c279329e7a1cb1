"""The gate's verdict as a record: every check with its numbers and a sentence, and the overall decision.

The report is what the registry adapter stores next to the model version, what the approval task shows a
human, and what the model card quotes; it carries everything needed to re-read the decision without the
data (values, thresholds, champion baselines, bootstrap CIs, the policy version).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from pipelines.gate.policy import BootstrapPolicy

Decision = Literal["promote", "reject", "needs_approval"]
# pass: meets its rule; fail: breaks it (the challenger is rejected); needs_approval: passes, but a human must
# look (behaviour change, critical slice near its bound); skipped_small_slice: too few rows to judge;
# info: reported without a rule (e.g. latency with no bound, the champion's figures).
Verdict = Literal["pass", "fail", "needs_approval", "skipped_small_slice", "info"]
CheckKind = Literal["value", "change", "slice_value", "slice_change", "latency", "size", "agreement"]


class GateCheck(BaseModel):
    """One rule applied to one population. `delta` is challenger - champion; the CI is the delta's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: CheckKind
    metric: str
    slice: str | None = None  # "column=value"; None for the whole evaluation set
    value: float | None = None
    threshold: float | None = None
    baseline: float | None = None
    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    verdict: Verdict
    reason: str
    # True on a change check whose supported improvement can earn a promotion.
    supports_promotion: bool = False


class GateReport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    policy_name: str
    policy_version: str
    decision: Decision
    summary: str
    first_model: bool
    rows: int
    positives: int
    decision_threshold: float
    bootstrap: BootstrapPolicy | None  # None for a first model: there is nothing to compare against
    checks: list[GateCheck]

    def checks_with(self, verdict: Verdict) -> list[GateCheck]:
        return [check for check in self.checks if check.verdict == verdict]


def format_number(value: float, *, signed: bool = False) -> str:
    """Metrics with 4 decimals; byte counts and other large figures as grouped integers."""
    sign = "+" if signed else ""
    return f"{value:{sign},.0f}" if abs(value) >= 1000 else f"{value:{sign}.4f}"
