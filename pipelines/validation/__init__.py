"""Data validation against a dataset spec's expectations.

`validate_frame` runs the spec's suite with the fast vectorized engine (default) or with Great Expectations,
and returns a `ValidationReport`; `pipelines.validation.data_docs` renders a report as GX Data Docs HTML.
Great Expectations is imported only by the GX engine and Data Docs (it takes ~5 s).
"""

from __future__ import annotations

from pipelines.validation.checks import Check, build_checks
from pipelines.validation.report import CheckResult, ValidationReport, verdict_disagreements
from pipelines.validation.run import Engine, evaluate_fast, validate_frame

__all__ = [
    "Check",
    "CheckResult",
    "Engine",
    "ValidationReport",
    "build_checks",
    "evaluate_fast",
    "validate_frame",
    "verdict_disagreements",
]
