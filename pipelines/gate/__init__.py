"""The champion/challenger quality gate: policy (`policy`), paired bootstrap (`bootstrap`), the pure
decision (`decision`), its record (`report`) and the HTML page (`render`)."""

from __future__ import annotations

from pipelines.gate.decision import (
    Candidate,
    GateInputError,
    MissingCriticalSliceError,
    ServingFacts,
    SignatureMismatchError,
    decide_promotion,
)
from pipelines.gate.policy import GatePolicy, GatePolicyError, load_gate_policy
from pipelines.gate.render import render_gate_report_html
from pipelines.gate.report import GateCheck, GateReport

__all__ = [
    "Candidate",
    "GateCheck",
    "GateInputError",
    "GatePolicy",
    "GatePolicyError",
    "GateReport",
    "MissingCriticalSliceError",
    "ServingFacts",
    "SignatureMismatchError",
    "decide_promotion",
    "load_gate_policy",
    "render_gate_report_html",
]
