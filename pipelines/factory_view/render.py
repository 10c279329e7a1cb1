"""The factory view's pages as server-rendered HTML: small inline CSS, no build, every value escaped.

The pages are shown inside the Airflow UI (an external view in an iframe whose sandbox allows same-origin
scripts but not top-level navigation or popups) and can be opened directly. Links into the Airflow UI and out
to MLflow therefore carry `data-nav`: a few lines of script hand them to the top window when framed, so a DAG
run opens as the Airflow page it is, not as a second Airflow inside the frame. Without the frame (or the
script) they are ordinary links.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape

from pipelines.factory_view.links import Link
from pipelines.factory_view.view import (
    AliasPanel,
    DriftPanel,
    HistoryPanel,
    IndexView,
    ModelView,
    RolloutPanel,
    RunsPanel,
    TrafficPanel,
    VersionsPanel,
)

NONE_YET = "none yet"
_GOOD = {"passed", "approved", "ok", "promoted", "success", "no_drift", "delivered", "continued", "deployed"}
_WARN = {"needs_approval", "warn", "in_progress", "running", "queued", "blocked", "skipped", "insufficient_data"}
_BAD = {"rejected", "error", "alert", "failed", "rolled_back", "stopped", "retrain", "critical"}
_ROUTE_COLOURS = ("#1a73e8", "#e37400", "#188038", "#9334e6", "#d01884")

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #202124; background: #f8f9fa; }
header { background: #fff; border-bottom: 1px solid #dadce0; padding: .8rem 1.5rem; display: flex; gap: 1rem;
  align-items: baseline; flex-wrap: wrap; }
header h1 { font-size: 1.3rem; margin: 0; }
header .meta { color: #5f6368; font-size: .85rem; margin-left: auto; }
main { padding: 1rem 1.5rem 2rem; display: grid; gap: 1rem;
  grid-template-columns: repeat(auto-fit, minmax(32rem, 1fr)); }
section { background: #fff; border: 1px solid #dadce0; border-radius: 8px; padding: .8rem 1rem; min-width: 0; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 1.05rem; margin: 0 0 .6rem; }
h3 { font-size: .95rem; margin: .8rem 0 .4rem; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; }
th, td { border-bottom: 1px solid #eceff1; padding: .3rem .45rem; text-align: left; vertical-align: top; }
th { background: #f8f9fa; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.muted { color: #5f6368; }
.empty { color: #5f6368; font-style: italic; }
.error { background: #fce8e6; color: #a50e0e; border-radius: 4px; padding: .4rem .6rem; font-size: .85rem; }
.badge { display: inline-block; border-radius: 10px; padding: 0 .5rem; font-size: .78rem; background: #e8eaed;
  white-space: nowrap; }
.good { background: #e6f4ea; color: #137333; }
.warn { background: #fef7e0; color: #b06000; }
.bad { background: #fce8e6; color: #c5221f; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(11rem, 1fr)); gap: .6rem; }
.card { border: 1px solid #dadce0; border-radius: 8px; padding: .6rem .8rem; }
.card .role { text-transform: uppercase; font-size: .72rem; letter-spacing: .05em; color: #5f6368; }
.card .version { font-size: 1.6rem; font-weight: 600; }
.card .since { font-size: .78rem; color: #5f6368; }
.bar { display: flex; height: 1.6rem; border-radius: 4px; overflow: hidden; margin: .3rem 0 .6rem; }
.bar div { color: #fff; font-size: .78rem; display: flex; align-items: center; justify-content: center;
  white-space: nowrap; overflow: hidden; }
ul.plain { margin: .2rem 0; padding-left: 1.1rem; }
a { color: #1a73e8; }
code { font-size: .8rem; }
"""

# Framed inside the Airflow UI (sandbox: scripts + same origin, no top navigation, no popups), a link to an
# Airflow page or to MLflow is followed by an anchor created in the top document.
_SCRIPT = """
(function () {
  if (window.top === window) { return; }
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a[data-nav]") : null;
    if (!link) { return; }
    try {
      var doc = window.top.document, proxy = doc.createElement("a");
      proxy.href = link.href;
      if (link.getAttribute("data-nav") === "tab") { proxy.target = "_blank"; proxy.rel = "noopener"; }
      doc.body.appendChild(proxy);
      proxy.click();
      proxy.remove();
      event.preventDefault();
    } catch (error) { /* another origin above us: the link is followed in the frame */ }
  });
})();
"""


def render_model_page(view: ModelView, *, app_base: str) -> str:
    """The page of one registered model."""
    header = (
        f'<a href="{escape(app_base)}/">Factory</a> <span class="muted">›</span> '
        f'<h1 id="model-name">{escape(view.model)}</h1> '
        + " ".join(link_html(link) for link in view.links)
        + f'<span class="meta">generated {escape(format_time(view.generated_at))}</span>'
    )
    body = "\n".join(
        [
            _section("Aliases", aliases_html(view.aliases), "aliases", wide=True),
            _section("Traffic split (gateway routes)", traffic_html(view.traffic), "traffic"),
            _section("Latest rollout", rollout_html(view.rollout), "rollout"),
            _section("Latest drift window", drift_html(view.drift), "drift", wide=True),
            _section("Versions", versions_html(view.versions), "versions", wide=True),
            _section("Alias history", history_html(view.history), "history", wide=True),
            _section("Latest factory DAG runs", runs_html(view.runs), "runs", wide=True),
        ]
    )
    return _page(f"Factory · {view.model}", header, body)


def render_index_page(view: IndexView) -> str:
    """The landing page: the registered models and the latest runs of the factory's DAGs."""
    if view.error:
        models = _error(view.error)
    elif not view.models:
        models = _empty("no registered model yet: run factory_train")
    else:
        rows = []
        for summary in view.models:
            chips = " ".join(
                f'<span class="badge" data-alias="{escape(alias)}">{escape(alias)} v{escape(version)}</span>'
                for alias, version in summary.aliases.items()
            )
            latest = f"v{escape(summary.latest_version)}" if summary.latest_version else "—"
            rows.append(
                f'<tr data-model="{escape(summary.name)}"><td>{link_html(summary.link)}</td>'
                f"<td>{chips or _empty('no alias')}</td><td>{latest}</td></tr>"
            )
        models = _table(("Model", "Aliases (MLflow)", "Latest version"), rows)
    header = (
        f'<h1 id="model-name">Factory</h1><span class="muted">registered models, their roles and the factory loop'
        f'</span><span class="meta">generated {escape(format_time(view.generated_at))}</span>'
    )
    body = "\n".join(
        [
            _section("Registered models", models, "models", wide=True),
            _section("Latest factory DAG runs", runs_html(view.runs), "runs", wide=True),
        ]
    )
    return _page("Factory", header, body)


def render_message_page(title: str, message: str, *, app_base: str, status: int) -> str:
    """A page for a request the view cannot answer (unknown model, report not found), with a way back."""
    header = f'<a href="{escape(app_base)}/">Factory</a> <span class="muted">›</span> <h1>{escape(title)}</h1>'
    body = _section(f"{status}: {title}", f'<p class="error">{escape(message)}</p>', "message", wide=True)
    return _page(f"Factory · {title}", header, body)


# ----- panels ------------------------------------------------------------------------------------------------
def aliases_html(panel: AliasPanel) -> str:
    if panel.error:
        return _error(panel.error)
    cards = []
    for holder in panel.holders:
        version = f"v{escape(holder.version)}" if holder.version else f'<span class="empty">{NONE_YET}</span>'
        since = ""
        if holder.since is not None:
            who = link_html(holder.actor_link) if holder.actor_link else escape(holder.actor or "")
            when = escape(format_time(holder.since))
            since = f'<div class="since">since #{holder.since_seq}, {when}<br>by {who}</div>'
        cards.append(
            f'<div class="card" data-alias="{escape(holder.alias)}" data-version="{escape(holder.version or "")}">'
            f'<div class="role">{escape(holder.alias)}</div><div class="version">{version}</div>{since}</div>'
        )
    notes = []
    if panel.latest_seq is None:
        notes.append("no alias move recorded yet (the alias log is empty)")
    if panel.mlflow_aliases is None:
        notes.append("MLflow's aliases could not be read")
    elif panel.in_sync is False:
        mlflow = ", ".join(f"{alias} v{version}" for alias, version in panel.mlflow_aliases.items()) or "none"
        notes.append(
            f"MLflow's aliases ({mlflow}) lag the alias log (applied #{panel.applied_seq}, log at "
            f"#{panel.latest_seq}): the log is the truth; the next move or `sync` re-applies it"
        )
    elif panel.in_sync:
        notes.append(f"MLflow's aliases match the alias log (#{panel.latest_seq})")
    return f'<div class="cards">{"".join(cards)}</div>' + "".join(f'<p class="muted">{escape(n)}</p>' for n in notes)


def traffic_html(panel: TrafficPanel) -> str:
    if panel.error:
        return _error(panel.error)
    if not panel.has_routes:
        return _empty(f"{NONE_YET}: the gateway has no routes for this model (no rollout has served it)")
    bar = "".join(
        f'<div style="width:{route.share * 100:.2f}%;background:{_ROUTE_COLOURS[i % len(_ROUTE_COLOURS)]}" '
        f'title="v{route.version} {route.share:.1%}">v{route.version} {route.share:.0%}</div>'
        for i, route in enumerate(panel.routes)
        if route.share > 0
    )
    rows = [
        f'<tr data-version="{route.version}"><td>v{route.version}</td><td>{escape(route.label)}</td>'
        f'<td>{_badges(route.roles)}</td><td class="num">{route.percent:g} %</td>'
        f'<td class="num">{route.share:.2%}</td></tr>'
        for route in panel.routes
    ]
    applied = "no live gateway replica reports"
    if panel.replicas:
        counted = sum(1 for v in panel.replicas.values() if panel.state_version and v >= panel.state_version)
        applied = f"applied by {counted} of {len(panel.replicas)} live gateway replica(s)"
    facts = [
        f"routes state {panel.state_version} in pool <code>{escape(panel.pool or '')}</code>, "
        f"updated {escape(_iso_time(panel.updated_at))}",
        escape(applied),
    ]
    if panel.reason:
        facts.append(f"reason: {escape(panel.reason)}")
    if panel.shadow:
        facts.append(f"shadow: {escape(panel.shadow)}")
    return (
        f'<div class="bar">{bar}</div>'
        + _table(("Version", "Route", "Alias", "Requested", "Buckets owned"), rows)
        + _list(facts)
    )


def rollout_html(panel: RolloutPanel) -> str:
    if panel.error:
        return _error(panel.error)
    if panel.rollout_id is None:
        return _empty(f"{NONE_YET}: no rollout or rollback recorded for this model")
    if panel.kind == "rollback":
        versions = f"rollback from v{panel.champion} to v{panel.challenger}"
    else:
        versions = f"v{panel.challenger} over " + (f"champion v{panel.champion}" if panel.champion else "no champion")
    actor = f" by {link_html(panel.actor_link)}" if panel.actor_link else ""
    policy = f' <span class="muted">policy {escape(panel.policy)}</span>' if panel.policy else ""
    head = (
        f'<p><span class="badge {_tone(panel.status)}" id="rollout-status">{escape(panel.status)}</span> '
        f"<code>{escape(panel.rollout_id)}</code>: {escape(versions)}{actor}</p>"
        f"<p>Outcome: {escape(panel.outcome)}{policy}</p>"
    )
    rows = [
        f'<tr data-step="{escape(step.step)}"><td class="num">{step.seq}</td><td>{escape(step.step)}</td>'
        f"<td>{_badge(step.action)}</td><td>{escape(format_time(step.ended_at))}</td>"
        f'<td class="num">{step.seconds:g} s</td><td>{escape(step.verdict or step.detail)}</td>'
        f"<td>{link_html(step.record)}</td></tr>"
        for step in panel.steps
    ]
    return head + _table(("#", "Step", "Action", "Ended", "Took", "Verdict / detail", "Record"), rows)


def drift_html(panel: DriftPanel) -> str:
    if panel.error:
        return _error(panel.error)
    if panel.window is None:
        return _empty(f"{NONE_YET}: no monitoring window stored for this model (factory_drift has not run on it)")
    window = escape(panel.window)
    if panel.start and panel.end:
        window = f"{escape(format_time(panel.start))} – {escape(format_time(panel.end))}"
    verdict = (
        f'<span class="badge {_tone(panel.verdict)}" id="drift-verdict">{escape(panel.verdict)}</span>'
        if panel.verdict
        else '<span class="empty" id="drift-verdict">no verdict (drift_report.json missing)</span>'
    )
    parts = [
        f"<p>{verdict} <strong>{window}</strong> <span class='muted'>dataset {escape(panel.dataset or '')}"
        + (f", {panel.window_rows:,} rows" if panel.window_rows is not None else "")
        + (f", compared with {escape(panel.reference)}" if panel.reference else "")
        + "</span></p>",
        f"<p>{escape(panel.summary or '')}</p>",
    ]
    features = ", ".join(f"<code>{escape(name)}</code>" for name in panel.drifted_features)
    parts.append(f'<p id="drifted-features">Drifted features: {features or _empty("none")}</p>')
    if panel.evidently_drifted_features is not None:
        evidently = ", ".join(escape(name) for name in panel.evidently_drifted_features) or "none"
        parts.append(f'<p class="muted">Evidently (bounded sample) also flags: {evidently}</p>')
    if panel.signals:
        rows = [
            f"<tr><td>{escape(s.family)}</td><td>{_badge(s.status)}</td><td>{escape(s.summary)}</td></tr>"
            for s in panel.signals
        ]
        parts.append("<h3>Signals</h3>" + _table(("Family", "Status", "Summary"), rows))
    parts.append("<h3>Alerts</h3>")
    if panel.alerts is None:
        parts.append(_empty("alerts.json not written for this window (yet)"))
    elif not panel.alerts:
        parts.append(_empty("no alert raised in this window"))
    else:
        rows = [
            f'<tr class="alert-row"><td>{_badge(a.severity)}</td><td>{escape(a.title)}</td><td>{escape(a.summary)}</td>'
            f"<td>{escape('; '.join(a.deliveries)) or '—'}</td><td>{link_html(a.report) if a.report else ''}</td></tr>"
            for a in panel.alerts
        ]
        parts.append(_table(("Severity", "Alert", "Summary", "Delivered", "Report"), rows))
    parts.append("<h3>Retraining decision</h3>")
    if panel.decision is None:
        parts.append(_empty("retraining_decision.json not written for this window (yet)"))
    else:
        blocked = f" — blocked by {escape(', '.join(panel.blocked_by))}" if panel.blocked_by else ""
        parts.append(
            f'<p><span class="badge {_tone(panel.decision)}" id="retraining-decision">{escape(panel.decision)}</span>'
            f"{blocked} {escape(panel.decision_summary or '')}</p>"
        )
    if panel.links:
        parts.append('<p id="drift-links">' + " · ".join(link_html(link) for link in panel.links) + "</p>")
    if panel.missing:
        parts.append(f'<p class="muted">not written (yet): {escape(", ".join(panel.missing))}</p>')
    parts += [_error(f"{name}: {problem}") for name, problem in panel.problems.items()]
    return "".join(parts)


def versions_html(panel: VersionsPanel) -> str:
    if panel.error:
        return _error(panel.error)
    if not panel.rows:
        return _empty(f"{NONE_YET}: no registered version")
    rows = []
    for row in panel.rows:
        gate = row.gate
        if gate is None:
            gate_cell = _empty("not gated")
        else:
            extra = [
                text
                for text in (
                    f"vs champion {gate.champion_version}" if gate.champion_version else None,
                    gate.approval,
                    gate.error,
                    gate.promoted_to and f"promoted to {gate.promoted_to}",
                    gate.promotion,
                    gate.policy and f"policy {gate.policy}",
                )
                if text
            ]
            gate_cell = f"{_badge(gate.decision or 'unknown')} {escape(gate.summary or '')}" + (
                f'<div class="muted">{escape("; ".join(extra))}</div>' if extra else ""
            )
        rollout = "; ".join(f"{key}: {value}" for key, value in {**row.rollout, **row.rollback}.items())
        trained = link_html(row.trained_by) if row.trained_by else _empty("not by factory_train")
        owner = f'<div class="muted">owner {escape(row.owner)}</div>' if row.owner else ""
        problem = f'<div class="error">{escape(row.problem)}</div>' if row.problem else ""
        rows.append(
            f'<tr data-version="{escape(row.version)}"><td><strong>v{escape(row.version)}</strong></td>'
            f"<td>{_badges(row.roles)}</td><td>{escape(format_time(row.created_at))}</td>"
            f"<td>{trained}{owner}{problem}</td><td>{gate_cell}</td><td>{escape(rollout) or '—'}</td>"
            f"<td>{' · '.join(link_html(link) for link in row.links)}</td></tr>"
        )
    shown = f'<p class="muted">{len(panel.rows)} of {panel.total} version(s): the newest and every alias holder</p>'
    return _table(("Version", "Alias", "Registered", "Trained by", "Gate", "Rollout", "Evidence"), rows) + (
        shown if panel.total > len(panel.rows) else ""
    )


def history_html(panel: HistoryPanel) -> str:
    if panel.error:
        return _error(panel.error)
    if not panel.rows:
        return _empty(f"{NONE_YET}: no alias move recorded")
    rows = []
    for row in panel.rows:
        actor = link_html(row.actor_link) if row.actor_link else escape(row.actor)
        details = "".join(f'<div class="muted">{escape(k)}: {escape(v)}</div>' for k, v in row.details.items())
        report = link_html(row.report) if row.report else escape(row.report_uri or "")
        rows.append(
            f'<tr class="history-row" data-seq="{row.seq}"><td class="num">{row.seq}</td>'
            f"<td>{escape(format_time(row.at))}</td><td>{'<br>'.join(escape(c) for c in row.changes)}</td>"
            f"<td>{actor}</td><td>{escape(row.reason)}{details}</td><td>{report}</td></tr>"
        )
    return _table(("#", "At", "Changes", "Actor", "Reason", "Evidence"), rows)


def runs_html(panel: RunsPanel) -> str:
    dags = '<p class="muted">DAGs: ' + " · ".join(link_html(link) for link in panel.dags) + "</p>"
    if panel.error:
        return _error(panel.error) + dags
    if not panel.rows:
        return _empty(f"{NONE_YET}: no run of the factory's DAGs") + dags
    rows = [
        f'<tr data-dag="{escape(run.dag_id)}"><td>{escape(run.dag_id)}</td><td>{link_html(run.link, run.run_id)}</td>'
        f"<td>{_badge(run.state or 'unknown')}</td><td>{escape(run.run_type or '')}</td>"
        f"<td>{escape(format_time(run.start_date))}</td><td>{escape(format_time(run.end_date))}</td></tr>"
        for run in panel.rows
    ]
    return _table(("DAG", "Run", "State", "Type", "Started", "Ended"), rows) + dags


# ----- pieces ------------------------------------------------------------------------------------------------
def link_html(link: Link, label: str | None = None) -> str:
    text = escape(label if label is not None else link.label)
    href = escape(link.href, quote=True)
    if link.target == "top":
        return f'<a href="{href}" data-nav="top">{text}</a>'
    if link.target == "tab":
        return f'<a href="{href}" data-nav="tab" target="_blank" rel="noopener">{text}</a>'
    return f'<a href="{href}">{text}</a>'


def format_time(moment: datetime | None) -> str:
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso_time(text: str | None) -> str:
    """An ISO 8601 timestamp as the page shows times; the text itself if it is not one."""
    try:
        return format_time(datetime.fromisoformat(text or ""))
    except ValueError:
        return text or "—"


def _tone(status: str | None) -> str:
    value = (status or "").lower()
    return "good" if value in _GOOD else "warn" if value in _WARN else "bad" if value in _BAD else ""


def _badge(status: str) -> str:
    return f'<span class="badge {_tone(status)}">{escape(status)}</span>'


def _badges(roles: Iterable[str]) -> str:
    return " ".join(f'<span class="badge">{escape(role)}</span>' for role in roles)


def _error(message: str) -> str:
    return f'<p class="error">{escape(message)}</p>'


def _empty(message: str) -> str:
    return f'<span class="empty">{escape(message)}</span>'


def _list(items: Sequence[str]) -> str:  # items are HTML already
    return '<ul class="plain muted">' + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def _table(columns: Sequence[str], rows: Sequence[str]) -> str:
    head = "".join(f"<th>{escape(column)}</th>" for column in columns)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _section(title: str, content: str, anchor: str, *, wide: bool = False) -> str:
    css = ' class="wide"' if wide else ""
    return f'<section id="{anchor}"{css}><h2>{escape(title)}</h2>{content}</section>'


def _page(title: str, header: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>{header}</header>
<main>
{body}
</main>
<script>{_SCRIPT}</script>
</body>
</html>
"""
