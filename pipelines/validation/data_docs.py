"""Data Docs for a validation run: GX's own HTML rendering of the report, one file per run.

The report is turned back into GX's result types (`ExpectationSuiteValidationResult`, with each check's
expectation configuration from the same suite) and rendered by GX's Data Docs renderer, so a run validated by
the fast path reads exactly like one validated by GX. One self-contained page is what the lead stores in S3
next to the run; a full Data Docs site would need a file-backed context and its stores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.datasets.spec import DatasetSpec
from pipelines.validation._gx import (
    DefaultJinjaPageView,
    ExpectationSuiteValidationResult,
    ExpectationValidationResult,
    ValidationResultsPageRenderer,
    gx,
)
from pipelines.validation.checks import build_checks
from pipelines.validation.report import CheckResult, ValidationReport


def to_gx_validation_result(report: ValidationReport, spec: DatasetSpec) -> ExpectationSuiteValidationResult:
    """The report in GX's result schema (`.to_json_dict()` gives GX's JSON)."""
    checks = {check.name: check for check in build_checks(spec, interval_end=report.interval_end)}
    unknown = sorted({c.name for c in report.checks} - set(checks))
    if unknown:
        raise ValueError(f"report checks {unknown} are not in spec {spec.name!r} {spec.version}")
    results = [
        ExpectationValidationResult(
            success=result.success,
            expectation_config=checks[result.name].expectation().configuration,
            result=_gx_result(result),
            exception_info={
                "raised_exception": result.error is not None,
                "exception_message": result.error,
                "exception_traceback": result.error,
            },
        )
        for result in report.checks
    ]
    passed = sum(result.success for result in report.checks)
    return ExpectationSuiteValidationResult(
        success=report.success,
        results=results,
        suite_name=report.dataset,
        statistics={
            "evaluated_expectations": len(results),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(results) - passed,
            "success_percent": 100.0 * passed / len(results) if results else None,
        },
        meta={
            "great_expectations_version": gx.__version__,
            "run_id": {
                "run_name": f"{report.dataset} to {report.interval_end.isoformat()} ({report.engine})",
                "run_time": report.validated_at.isoformat(),
            },
            "batch_spec": {
                "data_asset_name": spec.source.table,
                "dataset": f"{report.dataset} {report.spec_version}",
                "snapshot_id": report.snapshot_id,
                "interval_end": report.interval_end.isoformat(),
                "row_count": report.row_count,
                "engine": report.engine,
                "blocking_failures": [c.name for c in report.blocking_failures],
                "warnings": [c.name for c in report.warnings],
            },
        },
    )


def render_data_docs_html(report: ValidationReport, spec: DatasetSpec) -> str:
    """One self-contained Data Docs page for the run."""
    document = ValidationResultsPageRenderer().render(to_gx_validation_result(report, spec))
    return DefaultJinjaPageView().render(document)


def write_data_docs(report: ValidationReport, spec: DatasetSpec, directory: str | Path) -> Path:
    """Write the run's Data Docs page into `directory` and return its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"validation_{report.dataset}_{report.interval_end:%Y%m%dT%H%M%SZ}_{report.engine}.html"
    path.write_text(render_data_docs_html(report, spec), encoding="utf-8")
    return path


def _gx_result(result: CheckResult) -> dict[str, Any]:
    """GX's `result` dict for one check, from the report's counts (percentages as GX computes them)."""
    if result.element_count is None or result.unexpected_count is None:
        return {} if result.observed is None and result.error else {"observed_value": result.observed}
    element, unexpected = result.element_count, result.unexpected_count
    gx_result: dict[str, Any] = {
        "element_count": element,
        "unexpected_count": unexpected,
        "unexpected_percent": None if result.observed is None else 100.0 * float(result.observed),
        "partial_unexpected_list": list(result.unexpected_sample),
    }
    if result.missing_count is not None:
        missing = result.missing_count
        gx_result |= {
            "missing_count": missing,
            "missing_percent": 100.0 * missing / element if element else None,
            "unexpected_percent_total": 100.0 * unexpected / element if element else None,
            "unexpected_percent_nonmissing": gx_result["unexpected_percent"],
        }
    return gx_result
