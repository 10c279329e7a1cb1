"""The gate report as one self-contained HTML page (inline CSS, no scripts, no external assets).

It is attached to the MLflow run and shown in the approval task, possibly offline or behind a proxy, so it
must render from the file alone. Every value from the report is HTML-escaped.
"""

from __future__ import annotations

from collections import Counter
from html import escape

from pipelines.gate.report import GateCheck, GateReport, format_number

_VERDICT_COLOURS = {
    "pass": "#e6f4ea",
    "fail": "#fce8e6",
    "needs_approval": "#fef7e0",
    "skipped_small_slice": "#f1f3f4",
    "info": "#e8f0fe",
}
_DECISION_COLOURS = {"promote": "#137333", "reject": "#c5221f", "needs_approval": "#b06000"}
_DECISION_TITLES = {"promote": "PROMOTE", "reject": "REJECT", "needs_approval": "NEEDS APPROVAL"}
_COLUMNS = ("Verdict", "Check", "Kind", "Slice", "Value", "Threshold", "Champion", "Delta", "CI", "Reason")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #202124; }
.banner { color: #fff; padding: 1rem 1.5rem; border-radius: 6px; }
.banner h1 { margin: 0 0 .3rem 0; font-size: 1.6rem; }
.meta { margin: 1rem 0; color: #5f6368; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { border: 1px solid #dadce0; padding: .35rem .5rem; text-align: left; vertical-align: top; }
th { background: #f8f9fa; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
"""


def render_gate_report_html(report: GateReport) -> str:
    counts = Counter(check.verdict for check in report.checks)
    tally = ", ".join(f"{counts[verdict]} {verdict}" for verdict in _VERDICT_COLOURS if counts[verdict])
    context = (
        "First model: no champion, judged on value thresholds only." if report.first_model else _bootstrap_line(report)
    )
    rows = "\n".join(_row(check) for check in report.checks)
    header = "".join(f"<th>{name}</th>" for name in _COLUMNS)
    title = f"Gate report: {report.policy_name} {report.policy_version}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<div class="banner" style="background: {_DECISION_COLOURS[report.decision]}">
<h1>{_DECISION_TITLES[report.decision]}</h1>
<div>{escape(report.summary)}</div>
</div>
<p class="meta">Policy <strong>{escape(report.policy_name)}</strong> version
<strong>{escape(report.policy_version)}</strong> &middot; {report.rows:,} evaluation rows
({report.positives:,} positive) &middot; decision threshold {report.decision_threshold:g}
&middot; {escape(context)} &middot; checks: {escape(tally)}</p>
<table>
<thead><tr>{header}</tr></thead>
<tbody>
{rows}
</tbody>
</table>
</body>
</html>
"""


def _bootstrap_line(report: GateReport) -> str:
    settings = report.bootstrap
    if settings is None:
        return "No bootstrap."
    return f"Paired bootstrap: {settings.n_resamples} resamples, {settings.confidence:.0%} CI, seed {settings.seed}."


def _row(check: GateCheck) -> str:
    ci = "" if check.ci_low is None or check.ci_high is None else f"{check.ci_low:+.4f} .. {check.ci_high:+.4f}"
    cells = [
        f"<td><strong>{escape(check.verdict)}</strong></td>",
        f"<td>{escape(check.name)}</td>",
        f"<td>{escape(check.kind)}</td>",
        f"<td>{escape(check.slice or '')}</td>",
        *(f'<td class="num">{_cell_number(value)}</td>' for value in (check.value, check.threshold, check.baseline)),
        f'<td class="num">{_cell_number(check.delta, signed=True)}</td>',
        f'<td class="num">{ci}</td>',
        f"<td>{escape(check.reason)}</td>",
    ]
    return f'<tr class="{check.verdict}" style="background: {_VERDICT_COLOURS[check.verdict]}">{"".join(cells)}</tr>'


def _cell_number(value: float | None, *, signed: bool = False) -> str:
    return "" if value is None else format_number(value, signed=signed)
