"""Model cards: what a registered model is for, what it learned from, how good it is, where it fails, what it
costs to serve, why it was promoted, and where everything behind it lives.

The card is built from records the pipeline already has (the evaluation report, the gate report, the run's
lineage), so it cannot drift from the numbers that decided the promotion. One document structure is rendered
twice: Markdown (for the MLflow model version description and the repository) and a self-contained HTML
page (no external assets, every value escaped).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PositiveFloat, model_validator

from pipelines.evaluation.metrics import MetricSet, SliceMetrics
from pipelines.evaluation.report import EvaluationReport
from pipelines.gate.report import GateReport, format_number

_METRIC_LABELS = {
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC (average precision)",
    "log_loss": "Log loss",
    "accuracy": "Accuracy",
    "f1": "F1",
    "ece": "Expected calibration error",
    "brier": "Brier score",
}
_SLICE_METRICS = ("roc_auc", "log_loss", "ece")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataWindow(_Strict):
    """A dataset the model met: which snapshot, how many rows, which time span."""

    snapshot_id: str = Field(min_length=1)
    rows: int = Field(ge=0)
    start: AwareDatetime
    end: AwareDatetime
    positive_rate: float | None = Field(None, ge=0, le=1)
    description: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> DataWindow:
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self


class Lineage(_Strict):
    """Where to find what produced the model; None when unknown (the card says so)."""

    mlflow_run_url: str | None = None
    snapshot_uri: str | None = None
    commit: str | None = None
    feature_spec_version: str | None = None


class ModelCardInputs(_Strict):
    model_name: str = Field(min_length=1)
    model_version: str = Field(min_length=1)
    task: str = Field(min_length=1)
    intended_users: list[str] = Field(min_length=1)
    out_of_scope_uses: list[str] = Field(default_factory=list)
    training_data: DataWindow
    evaluation_data: DataWindow
    evaluation: EvaluationReport
    known_failure_modes: list[str] = Field(default_factory=list)
    worst_slices: int = Field(3, ge=0)  # how many of the lowest-ROC-AUC slices to list as failure modes
    core_hour_usd: PositiveFloat | None = None  # price of one CPU core-hour, for the cost per million rows
    gate: GateReport | None = None
    lineage: Lineage


@dataclass(frozen=True)
class Link:
    text: str
    url: str


Cell = str | Link


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[Cell]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: list[tuple[Cell, ...]]


Block = Paragraph | Bullets | Table


@dataclass(frozen=True)
class Section:
    title: str
    blocks: list[Block]


def render_model_card_markdown(inputs: ModelCardInputs) -> str:
    lines = [f"# {_card_title(inputs)}", ""]
    for section in model_card_sections(inputs):
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            lines += [*_markdown_block(block), ""]
    return "\n".join(lines)


def render_model_card_html(inputs: ModelCardInputs) -> str:
    title = escape(_card_title(inputs))
    body = "\n".join(
        f"<h2>{escape(section.title)}</h2>\n" + "\n".join(_html_block(block) for block in section.blocks)
        for section in model_card_sections(inputs)
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 60rem;
       color: #202124; line-height: 1.45; }}
h2 {{ border-bottom: 1px solid #dadce0; padding-bottom: .2rem; margin-top: 2rem; }}
table {{ border-collapse: collapse; margin: .5rem 0; }}
th, td {{ border: 1px solid #dadce0; padding: .3rem .6rem; text-align: left; }}
th {{ background: #f8f9fa; }}
code {{ background: #f1f3f4; padding: 0 .2rem; }}
</style>
</head>
<body>
<h1>{title}</h1>
{body}
</body>
</html>
"""


def model_card_sections(inputs: ModelCardInputs) -> list[Section]:
    """The card's content, independent of the output format."""
    evaluation = inputs.evaluation
    return [
        Section("Task", [Paragraph(inputs.task)]),
        Section("Intended use", _intended_use_blocks(inputs)),
        Section("Training data", [_data_table(inputs.training_data)]),
        Section("Evaluation data", [_data_table(inputs.evaluation_data)]),
        Section("Headline metrics", [_headline_table(evaluation.headline)]),
        Section("Slice metrics", _slice_blocks(evaluation.slices)),
        Section("Known failure modes", [Bullets(failure_modes(inputs))]),
        Section("Latency and cost", [_cost_table(evaluation, inputs.core_hour_usd)]),
        Section("Gate decision", _gate_blocks(inputs.gate)),
        Section("Lineage", [_lineage_table(inputs.lineage)]),
    ]


def failure_modes(inputs: ModelCardInputs) -> list[Cell]:
    """The stated failure modes, then the worst slices by ROC AUC, the worst-calibrated slice, and the
    slices too small to evaluate (the model is unverified there, which users should know)."""
    headline = inputs.evaluation.headline
    evaluated = [
        (column, result)
        for column, results in inputs.evaluation.slices.items()
        for result in results
        if result.metrics.roc_auc is not None
    ]
    modes: list[Cell] = list(inputs.known_failure_modes)
    by_auc = sorted(evaluated, key=lambda item: item[1].metrics.roc_auc or 0.0)
    for column, result in by_auc[: inputs.worst_slices]:
        overall = "" if headline.roc_auc is None else f" vs {headline.roc_auc:.3f} overall"
        modes.append(
            f"Weak slice {column}={result.value}: ROC AUC {result.metrics.roc_auc:.3f}{overall} "
            f"({result.metrics.n:,} rows)."
        )
    calibrated = [(column, result) for column, result in evaluated if result.metrics.ece is not None]
    if calibrated:
        column, result = max(calibrated, key=lambda item: item[1].metrics.ece or 0.0)
        modes.append(
            f"Least calibrated slice {column}={result.value}: ECE {result.metrics.ece:.3f} ({result.metrics.n:,} rows)."
        )
    unevaluated = [
        f"{column}={result.value} ({result.metrics.n:,} rows)"
        for column, results in inputs.evaluation.slices.items()
        for result in results
        if result.metrics.roc_auc is None
    ]
    if unevaluated:
        modes.append(f"Not evaluated (too few rows or a single class): {', '.join(unevaluated)}.")
    return modes or ["None identified."]


def _card_title(inputs: ModelCardInputs) -> str:
    return f"Model card: {inputs.model_name} version {inputs.model_version}"


def _intended_use_blocks(inputs: ModelCardInputs) -> list[Block]:
    blocks: list[Block] = [Paragraph("Intended users:"), Bullets(list(inputs.intended_users))]
    if inputs.out_of_scope_uses:
        blocks += [Paragraph("Out of scope:"), Bullets(list(inputs.out_of_scope_uses))]
    return blocks


def _data_table(window: DataWindow) -> Table:
    rows: list[tuple[Cell, ...]] = [
        ("Snapshot", window.snapshot_id),
        ("Rows", f"{window.rows:,}"),
        ("Interval", f"{window.start.isoformat()} to {window.end.isoformat()}"),
    ]
    if window.positive_rate is not None:
        rows.append(("Positive rate", f"{window.positive_rate:.1%}"))
    if window.description:
        rows.append(("Description", window.description))
    return Table(("Field", "Value"), rows)


def _headline_table(headline: MetricSet) -> Table:
    rows: list[tuple[Cell, ...]] = [(label, _metric_text(headline, name)) for name, label in _METRIC_LABELS.items()]
    rows += [
        ("Rows (positives)", f"{headline.n:,} ({headline.positives:,})"),
        ("Decision threshold", f"{headline.threshold:g}"),
    ]
    return Table(("Metric", "Value"), rows)


def _slice_blocks(slices: dict[str, list[SliceMetrics]]) -> list[Block]:
    if not slices:
        return [Paragraph("No slices were evaluated.")]
    headers = ("Value", "Rows", "Positives", *(_METRIC_LABELS[name] for name in _SLICE_METRICS))
    blocks: list[Block] = []
    for column, results in slices.items():
        blocks.append(Paragraph(f"By {column}:"))
        rows: list[tuple[Cell, ...]] = [
            (
                result.value,
                f"{result.metrics.n:,}",
                f"{result.metrics.positives:,}",
                *(_metric_text(result.metrics, name) for name in _SLICE_METRICS),
            )
            for result in results
        ]
        blocks.append(Table(headers, rows))
    return blocks


def _metric_text(metrics: MetricSet, name: str) -> str:
    value = getattr(metrics, name)
    return f"{value:.4f}" if value is not None else f"undefined ({metrics.undefined.get(name, 'unknown')})"


def _cost_table(evaluation: EvaluationReport, core_hour_usd: float | None) -> Table:
    latency = evaluation.latency
    rows_per_second = latency.batch_size / (latency.batch_p50_ms / 1000) if latency.batch_p50_ms > 0 else None
    rows: list[tuple[Cell, ...]] = [
        ("Single row p50 / p99", f"{latency.single_row_p50_ms:.3f} ms / {latency.single_row_p99_ms:.3f} ms"),
        (
            f"Batch of {latency.batch_size} p50 / p99",
            f"{latency.batch_p50_ms:.3f} ms / {latency.batch_p99_ms:.3f} ms",
        ),
        ("Model size", f"{evaluation.model_size_bytes:,} bytes"),
    ]
    if rows_per_second is not None:
        rows.append(("Batch throughput, one core", f"{rows_per_second:,.0f} rows/s"))
        if core_hour_usd is not None:
            per_million = 1e6 / rows_per_second / 3600 * core_hour_usd
            rows.append(("Compute cost per million rows", f"${per_million:.4f} at ${core_hour_usd:g}/core-hour"))
    rows.append(("Measured", f"in-process onnxruntime, 1 thread, {latency.repeats} repeats (serving adds network)"))
    return Table(("Measure", "Value"), rows)


def _gate_blocks(gate: GateReport | None) -> list[Block]:
    if gate is None:
        return [Paragraph("Not gated yet: this model has not been through the champion/challenger gate.")]
    blocks: list[Block] = [
        Paragraph(f"Decision: {gate.decision} (policy {gate.policy_name} version {gate.policy_version})."),
        Paragraph(gate.summary),
    ]
    if gate.first_model:
        blocks.append(Paragraph("First model: there was no champion, so only value thresholds applied."))
    notable = [check for check in gate.checks if check.verdict in {"fail", "needs_approval"}]
    notable += [check for check in gate.checks if check.supports_promotion]
    if notable:
        blocks.append(
            Table(
                ("Check", "Verdict", "Value", "Champion", "Reason"),
                [
                    (
                        check.name,
                        check.verdict,
                        "" if check.value is None else format_number(check.value),
                        "" if check.baseline is None else format_number(check.baseline),
                        check.reason,
                    )
                    for check in notable
                ],
            )
        )
    return blocks


def _lineage_table(lineage: Lineage) -> Table:
    def linked(value: str | None) -> Cell:
        if value is None:
            return "unknown"
        return Link(value, value) if value.startswith(("http://", "https://")) else value

    return Table(
        ("Item", "Where"),
        [
            ("MLflow run", linked(lineage.mlflow_run_url)),
            ("Data snapshot", linked(lineage.snapshot_uri)),
            ("Code commit", linked(lineage.commit)),
            ("Feature spec version", linked(lineage.feature_spec_version)),
        ],
    )


def _markdown_block(block: Block) -> list[str]:
    if isinstance(block, Paragraph):
        return [_markdown_text(block.text)]
    if isinstance(block, Bullets):
        return [f"- {_markdown_cell(item)}" for item in block.items]
    header = "| " + " | ".join(_markdown_cell(cell) for cell in block.headers) + " |"
    rule = "|" + "|".join("---" for _ in block.headers) + "|"
    rows = ["| " + " | ".join(_markdown_cell(cell) for cell in row) + " |" for row in block.rows]
    return [header, rule, *rows]


def _markdown_cell(cell: Cell) -> str:
    if isinstance(cell, Link):
        return f"[{_markdown_text(cell.text)}]({cell.url.replace(')', '%29').replace(' ', '%20')})"
    return _markdown_text(cell)


def _markdown_text(text: str) -> str:
    """Pipes and line breaks would split a table cell; a "<" could open an HTML tag and hide the text."""
    return text.replace("|", "\\|").replace("<", "\\<").replace("\n", " ")


def _html_block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{escape(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_html_cell(item)}</li>" for item in block.items) + "</ul>"
    header = "".join(f"<th>{escape(cell)}</th>" for cell in block.headers)
    rows = "".join("<tr>" + "".join(f"<td>{_html_cell(cell)}</td>" for cell in row) + "</tr>" for row in block.rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"


def _html_cell(cell: Cell) -> str:
    if isinstance(cell, Link):
        return f'<a href="{escape(cell.url, quote=True)}">{escape(cell.text)}</a>'
    return escape(cell)
