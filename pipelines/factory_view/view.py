"""The per-model summary the factory view shows, assembled from already-fetched records (pure).

Each panel carries either its content or `error`, the named reason it has none (a source that could not be
read, a record of another schema): one broken source never takes the page down. "Nothing yet" (no rollout,
no monitoring window) is content, not an error. The models here are what the JSON endpoint returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.alias_log import AliasMove, holdings
from pipelines.factory_view.links import FACTORY_DAGS, Link, Paths, RunRef, parse_actor
from pipelines.factory_view.records import (
    ALERTS,
    DECISION,
    DRIFT_REPORT,
    MONITOR,
    DagRunRecord,
    DriftWindow,
    Fetched,
    FetchError,
    RegistryRecord,
    TrafficRecord,
    VersionRecord,
)
from pipelines.rollout.records import StepRecord

# Display order: who serves, who is next, who was just registered, who to roll back to.
ROLES: tuple[str, ...] = ("champion", "challenger", "candidate", "previous")
GATE_TAGS = ("decision", "summary", "policy", "champion_version", "approval", "error", "promoted_to", "promotion")
RolloutStatus = Literal["none", "in_progress", "promoted", "stopped", "rolled_back", "failed", "rollback"]


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ----- panels ------------------------------------------------------------------------------------------------
class AliasHolder(_View):
    alias: str
    version: str | None  # None: nobody holds it
    since: datetime | None = None
    since_seq: int | None = None
    actor: str | None = None
    actor_link: Link | None = None
    reason: str | None = None


class AliasPanel(_View):
    error: str | None = None
    holders: list[AliasHolder] = Field(default_factory=list)
    latest_seq: int | None = None  # None: no alias move recorded yet
    mlflow_aliases: dict[str, str] | None = None  # None: MLflow could not be read
    applied_seq: int | None = None
    in_sync: bool | None = None  # MLflow's aliases equal the log's state

    def version_of(self, alias: str) -> str | None:
        return next((holder.version for holder in self.holders if holder.alias == alias), None)


class HistoryRow(_View):
    seq: int
    at: datetime
    actor: str
    actor_link: Link | None
    reason: str
    changes: list[str]
    report: Link | None
    report_uri: str | None
    details: dict[str, str]


class HistoryPanel(_View):
    error: str | None = None
    rows: list[HistoryRow] = Field(default_factory=list)  # newest first


class GateView(_View):
    decision: str | None = None  # passed | needs_approval | rejected | approved | error
    summary: str | None = None
    policy: str | None = None
    champion_version: str | None = None
    approval: str | None = None
    error: str | None = None
    promoted_to: str | None = None
    promotion: str | None = None
    report_uri: str | None = None


class VersionRow(_View):
    version: str
    roles: list[str]
    created_at: datetime | None
    status: str | None
    run_id: str | None
    trained_by: Link | None
    owner: str | None
    snapshot_id: str | None
    gate: GateView | None  # None: never gated
    rollout: dict[str, str]  # rollout.* tags without the prefix
    rollback: dict[str, str]  # rollback.* tags without the prefix
    links: list[Link]
    problem: str | None = None


class VersionsPanel(_View):
    error: str | None = None
    rows: list[VersionRow] = Field(default_factory=list)  # newest first
    total: int = 0  # versions registered (the panel shows the newest ones and every alias holder)


class StepRow(_View):
    seq: int
    step: str
    action: str
    started_at: datetime
    ended_at: datetime
    seconds: float
    detail: str
    verdict: str | None
    passed: bool | None
    record: Link


class RolloutPanel(_View):
    error: str | None = None
    rollout_id: str | None = None  # None: no rollout yet
    kind: Literal["rollout", "rollback"] | None = None
    status: RolloutStatus = "none"
    outcome: str = "none yet"
    champion: int | None = None
    challenger: int | None = None  # for a rollback: the version restored
    actor_link: Link | None = None
    policy: str | None = None  # <policy file>@<version> the steps were judged by (records that name it)
    steps: list[StepRow] = Field(default_factory=list)


class RouteRow(_View):
    version: int
    label: str
    percent: float
    share: float  # of the 10,000 routing buckets, 0..1
    roles: list[str]


class TrafficPanel(_View):
    error: str | None = None
    has_routes: bool = False
    state_version: int | None = None
    updated_at: str | None = None
    reason: str | None = None
    pool: str | None = None
    routes: list[RouteRow] = Field(default_factory=list)
    shadow: str | None = None
    replicas: dict[str, int] = Field(default_factory=dict)
    applied_everywhere: bool | None = None  # None: no live replica reports


class SignalRow(_View):
    family: str
    status: str
    summary: str


class AlertRow(_View):
    alert_type: str
    severity: str
    level: str
    title: str
    summary: str
    raised_at: datetime
    report: Link | None
    deliveries: list[str]


class DriftPanel(_View):
    error: str | None = None
    window: str | None = None  # None: no monitoring window yet
    dataset: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    verdict: str | None = None
    summary: str | None = None
    window_rows: int | None = None
    reference: str | None = None
    drifted_features: list[str] = Field(default_factory=list)
    evidently_drifted_features: list[str] | None = None
    signals: list[SignalRow] = Field(default_factory=list)
    alerts: list[AlertRow] | None = None  # None: alerts.json not written (yet)
    decision: str | None = None  # retrain | no_drift | blocked
    decision_summary: str | None = None
    blocked_by: list[str] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    problems: dict[str, str] = Field(default_factory=dict)


class RunRow(_View):
    dag_id: str
    run_id: str
    state: str | None
    run_type: str | None
    run_after: datetime | None
    start_date: datetime | None
    end_date: datetime | None
    link: Link


class RunsPanel(_View):
    error: str | None = None
    rows: list[RunRow] = Field(default_factory=list)
    dags: list[Link] = Field(default_factory=list)


class ModelView(_View):
    model: str
    generated_at: datetime
    links: list[Link]
    aliases: AliasPanel
    history: HistoryPanel
    versions: VersionsPanel
    rollout: RolloutPanel
    traffic: TrafficPanel
    drift: DriftPanel
    runs: RunsPanel


class ModelSummary(_View):
    name: str
    aliases: dict[str, str]
    latest_version: str | None
    link: Link


class IndexView(_View):
    generated_at: datetime
    error: str | None = None
    models: list[ModelSummary] = Field(default_factory=list)
    runs: RunsPanel


# ----- assembly ----------------------------------------------------------------------------------------------
def assemble_model_view(
    model: str,
    *,
    alias_log: Fetched[list[AliasMove]],
    registry: Fetched[RegistryRecord],
    rollout: Fetched[list[StepRecord]],
    traffic: Fetched[TrafficRecord],
    drift: Fetched[DriftWindow | None],
    runs: Fetched[list[DagRunRecord]],
    paths: Paths,
    now: datetime,
) -> ModelView:
    """The model's page from its records; each argument is the record or the FetchError that replaced it."""
    aliases = alias_panel(alias_log, registry, paths)
    links = [Link(label="JSON", href=paths.model_json(model))]
    if (mlflow := paths.mlflow_model(model)) is not None:
        links.append(mlflow)
    return ModelView(
        model=model,
        generated_at=now,
        links=links,
        aliases=aliases,
        history=history_panel(model, alias_log, paths),
        versions=versions_panel(model, registry, aliases, paths),
        rollout=rollout_panel(rollout, paths),
        traffic=traffic_panel(traffic, aliases),
        drift=drift_panel(drift, paths),
        runs=runs_panel(runs, paths),
    )


def assemble_index(
    models: Fetched[list[tuple[str, dict[str, str], str | None]]],
    runs: Fetched[list[DagRunRecord]],
    paths: Paths,
    now: datetime,
) -> IndexView:
    """The landing page: every registered model (name, MLflow aliases, latest version) and the latest runs."""
    if isinstance(models, FetchError):
        return IndexView(generated_at=now, error=str(models), runs=runs_panel(runs, paths))
    summaries = [
        ModelSummary(
            name=name, aliases=_ordered(aliases), latest_version=latest,
            link=Link(label=name, href=paths.model_page(name)),
        )
        for name, aliases, latest in sorted(models)
    ]  # fmt: skip
    return IndexView(generated_at=now, models=summaries, runs=runs_panel(runs, paths))


def alias_panel(alias_log: Fetched[list[AliasMove]], registry: Fetched[RegistryRecord], paths: Paths) -> AliasPanel:
    mlflow = None if isinstance(registry, FetchError) else _ordered(registry.mlflow_aliases)
    applied = None if isinstance(registry, FetchError) else registry.applied_seq
    if isinstance(alias_log, FetchError):
        return AliasPanel(error=str(alias_log), mlflow_aliases=mlflow, applied_seq=applied)
    open_spans = {span.alias: span for span in holdings(alias_log) if span.until is None}
    holders = []
    for alias in ROLES:
        span = open_spans.get(alias)  # type: ignore[call-overload]
        if span is None:
            holders.append(AliasHolder(alias=alias, version=None))
            continue
        holders.append(
            AliasHolder(
                alias=alias, version=span.version, since=span.since, since_seq=span.since_seq, actor=span.actor,
                actor_link=_actor_link(span.actor, paths), reason=span.reason,
            )
        )  # fmt: skip
    state = dict(alias_log[-1].aliases) if alias_log else {}
    return AliasPanel(
        holders=holders,
        latest_seq=alias_log[-1].seq if alias_log else None,
        mlflow_aliases=mlflow,
        applied_seq=applied,
        in_sync=None if mlflow is None else mlflow == _ordered(state),
    )


def history_panel(model: str, alias_log: Fetched[list[AliasMove]], paths: Paths) -> HistoryPanel:
    if isinstance(alias_log, FetchError):
        return HistoryPanel(error=str(alias_log))
    rows = [
        HistoryRow(
            seq=entry.seq, at=entry.at, actor=entry.actor, actor_link=_actor_link(entry.actor, paths),
            reason=entry.reason, changes=[_change_text(c.alias, c.from_version, c.to_version) for c in entry.changes],
            report=_report_link(model, entry, paths), report_uri=entry.report_uri, details=dict(entry.details),
        )
        for entry in reversed(alias_log)
    ]  # fmt: skip
    return HistoryPanel(rows=rows)


def versions_panel(model: str, registry: Fetched[RegistryRecord], aliases: AliasPanel, paths: Paths) -> VersionsPanel:
    if isinstance(registry, FetchError):
        return VersionsPanel(error=str(registry))
    roles: dict[str, list[str]] = {}
    for holder in aliases.holders:
        if holder.version is not None:
            roles.setdefault(holder.version, []).append(holder.alias)
    rows = [_version_row(model, record, roles.get(record.version, []), paths) for record in registry.versions]
    rows.sort(key=lambda row: _version_number(row.version), reverse=True)
    return VersionsPanel(rows=rows, total=registry.total_versions)


def rollout_panel(steps: Fetched[list[StepRecord]], paths: Paths) -> RolloutPanel:
    if isinstance(steps, FetchError):
        return RolloutPanel(error=str(steps))
    if not steps:
        return RolloutPanel()
    ordered = sorted(steps, key=lambda record: record.seq)
    first, last = ordered[0], ordered[-1]
    kind: Literal["rollout", "rollback"] = (
        "rollback" if first.step == "rollback" or first.rollout_id.startswith("rollback-") else "rollout"
    )
    status, outcome = _rollout_outcome(kind, ordered)
    rows = [
        StepRow(
            seq=record.seq, step=record.step, action=record.action, started_at=record.started_at,
            ended_at=record.ended_at, seconds=round((record.ended_at - record.started_at).total_seconds(), 1),
            detail=record.detail, verdict=record.verdict.summary if record.verdict else None,
            passed=record.verdict.passed if record.verdict else None,
            record=paths.report(f"rollouts/{record.model}/{record.rollout_id}/{record.seq:02d}-{record.step}.json",
                                f"{record.seq:02d}-{record.step}.json"),
        )
        for record in ordered
    ]  # fmt: skip
    return RolloutPanel(
        rollout_id=last.rollout_id,
        kind=kind,
        status=status,
        outcome=outcome,
        champion=first.champion,
        challenger=first.challenger,
        actor_link=_actor_link(first.actor, paths) if first.actor else None,
        policy=getattr(first, "policy", "") or None,  # older records do not name their policy
        steps=rows,
    )


def traffic_panel(traffic: Fetched[TrafficRecord], aliases: AliasPanel) -> TrafficPanel:
    if isinstance(traffic, FetchError):
        return TrafficPanel(error=str(traffic))
    table = traffic.table
    if table is None:
        return TrafficPanel(replicas=dict(traffic.replicas))
    roles: dict[str, list[str]] = {}
    for holder in aliases.holders:
        if holder.version is not None:
            roles.setdefault(holder.version, []).append(holder.alias)
    routes = [
        RouteRow(
            version=route.version, label=route.label, percent=route.percent,
            share=round(table.share_of(route.version), 4), roles=roles.get(str(route.version), []),
        )
        for route in table.routes.routes
    ]  # fmt: skip
    shadow = table.routes.shadow
    shadow_text = None
    if shadow is not None:
        shadow_text = f"v{shadow.version} gets a copy of {shadow.share:.0%} of requests" + (
            f" (pool {shadow.pool})" if shadow.pool else ""
        )
    replicas = dict(traffic.replicas)
    return TrafficPanel(
        has_routes=True,
        state_version=table.state_version,
        updated_at=table.updated_at,
        reason=table.reason,
        pool=table.routes.pool,
        routes=routes,
        shadow=shadow_text,
        replicas=replicas,
        applied_everywhere=all(v >= table.state_version for v in replicas.values()) if replicas else None,
    )


def drift_panel(drift: Fetched[DriftWindow | None], paths: Paths) -> DriftPanel:
    if isinstance(drift, FetchError):
        return DriftPanel(error=str(drift))
    if drift is None:
        return DriftPanel()
    report, monitor, decision = drift.drift_report, drift.monitor, drift.decision
    links = []
    if drift.evidently_html:
        links.append(paths.report(drift.key("evidently.html"), "Evidently report"))
    present = [name for name in (DRIFT_REPORT, MONITOR, DECISION, ALERTS) if name not in drift.missing]
    links += [paths.report(drift.key(name), name) for name in present]
    reference = None
    if monitor is not None:
        reference = f"{monitor.reference.alias} v{monitor.reference.version}"
    return DriftPanel(
        window=drift.window,
        dataset=drift.dataset,
        start=drift.start,
        end=drift.end,
        verdict=report.verdict if report else (monitor.verdict if monitor else None),
        summary=report.summary if report else (monitor.summary if monitor else None),
        window_rows=report.window_rows if report else (monitor.window_rows if monitor else None),
        reference=reference,
        drifted_features=list(report.drifted_features if report else monitor.drifted_features if monitor else []),
        evidently_drifted_features=monitor.evidently_drifted_features if monitor else None,
        signals=[
            SignalRow(family=family, status=signal.status, summary=signal.summary)
            for family, signal in (monitor.signals.items() if monitor else [])
        ],
        alerts=None if drift.alerts is None else _alert_rows(drift, paths),
        decision=decision.outcome if decision else None,
        decision_summary=decision.summary if decision else None,
        blocked_by=list(decision.blocked_by) if decision else [],
        links=links,
        missing=list(drift.missing),
        problems=dict(drift.problems),
    )


def runs_panel(runs: Fetched[list[DagRunRecord]], paths: Paths) -> RunsPanel:
    dags = [paths.dag(dag_id) for dag_id in FACTORY_DAGS]
    if isinstance(runs, FetchError):
        return RunsPanel(error=str(runs), dags=dags)
    order = {dag_id: index for index, dag_id in enumerate(FACTORY_DAGS)}
    rows = [
        RunRow(
            dag_id=run.dag_id, run_id=run.run_id, state=run.state, run_type=run.run_type, run_after=run.run_after,
            start_date=run.start_date, end_date=run.end_date, link=paths.dag_run(RunRef(run.dag_id, run.run_id)),
        )
        for run in sorted(runs, key=lambda r: (order.get(r.dag_id, len(order)), -_timestamp(r.run_after)))
    ]  # fmt: skip
    return RunsPanel(rows=rows, dags=dags)


# ----- helpers -----------------------------------------------------------------------------------------------
def _version_row(model: str, record: VersionRecord, roles: list[str], paths: Paths) -> VersionRow:
    tags = record.tags
    gate = None
    if any(key.startswith("gate.") for key in tags):
        values = {name: tags.get(f"gate.{name}") for name in GATE_TAGS}
        gate = GateView(**values, report_uri=tags.get("gate.report"))
    links = []
    if "gate.report" in tags:  # the gate wrote the report and the card before it tagged the version
        links.append(paths.artifact(model, record.version, "gate-report", "gate report"))
        links.append(paths.artifact(model, record.version, "model-card", "model card"))
    if record.run_id and record.experiment_id and (run_link := paths.mlflow_run(record.experiment_id, record.run_id)):
        links.append(run_link)
    trained_by = None
    if record.run_tags.get("airflow.dag_id") and record.run_tags.get("airflow.run_id"):
        trained_by = paths.dag_run(RunRef(record.run_tags["airflow.dag_id"], record.run_tags["airflow.run_id"]))
    return VersionRow(
        version=record.version,
        roles=[role for role in ROLES if role in roles],
        created_at=record.created_at,
        status=record.status,
        run_id=record.run_id,
        trained_by=trained_by,
        owner=record.run_tags.get("governance.owner"),
        snapshot_id=record.run_tags.get("data.snapshot_id"),
        gate=gate,
        rollout=_prefixed(tags, "rollout."),
        rollback=_prefixed(tags, "rollback."),
        links=links,
        problem=record.run_error,
    )


def _rollout_outcome(kind: str, steps: Sequence[StepRecord]) -> tuple[RolloutStatus, str]:
    last = steps[-1]
    if kind == "rollback":
        return "rollback", last.detail or f"v{last.challenger} restored"
    final = next((step for step in steps if step.step == "outcome"), None)
    if final is not None:
        return ("promoted" if final.action == "promoted" else "stopped"), final.detail or final.action
    rolled_back = next((step for step in steps if step.action == "rolled_back"), None)
    if rolled_back is not None:
        return "rolled_back", f"rolled back at {rolled_back.step}: {rolled_back.detail}"
    failed = next((step for step in steps if step.action == "failed"), None)
    if failed is not None:
        return "failed", f"failed at {failed.step}: {failed.detail}"
    return "in_progress", f"in progress: last step {last.step} ({last.action})"


def _alert_rows(drift: DriftWindow, paths: Paths) -> list[AlertRow]:
    deliveries: dict[str, list[str]] = {}
    for item in drift.deliveries:
        text = f"{item.get('channel', '?')}: {item.get('status', '?')}"
        if item.get("detail"):
            text += f" ({item['detail']})"
        deliveries.setdefault(str(item.get("alert_key", "")), []).append(text)
    rows = []
    for alert in drift.alerts or []:
        report = paths.report_of_uri(alert.report_uri)
        rows.append(
            AlertRow(
                alert_type=alert.alert_type.value, severity=alert.severity.value, level=alert.level,
                title=alert.title, summary=alert.summary, raised_at=alert.raised_at, report=report,
                deliveries=deliveries.get(alert.key, []),
            )
        )  # fmt: skip
    return rows


def _report_link(model: str, entry: AliasMove, paths: Paths) -> Link | None:
    """The evidence a move cites: the gate report of the version it moved (an MLflow run artifact, served by
    the plugin), or a rollout step record in S3."""
    uri = entry.report_uri
    if not uri:
        return None
    moved = entry.changes[0].to_version
    if uri.startswith("runs:/") and uri.endswith("/gate/gate_report.html") and moved:
        return paths.artifact(model, moved, "gate-report", "gate report")
    return paths.report_of_uri(uri)


def _actor_link(actor: str, paths: Paths) -> Link | None:
    run = parse_actor(actor)
    return None if run is None else paths.dag_run(run)


def _change_text(alias: str, before: str | None, after: str | None) -> str:
    return f"{alias}: {'v' + before if before else '—'} → {'v' + after if after else '—'}"


def _ordered(aliases: Mapping[str, str]) -> dict[str, str]:
    """Aliases in display order (the factory's roles first, any other alias after them)."""
    known = {alias: aliases[alias] for alias in ROLES if alias in aliases}
    return known | {alias: version for alias, version in sorted(aliases.items()) if alias not in known}


def _prefixed(tags: Mapping[str, str], prefix: str) -> dict[str, str]:
    return {key.removeprefix(prefix): value for key, value in sorted(tags.items()) if key.startswith(prefix)}


def _version_number(version: str) -> int:
    return int(version) if version.isdigit() else 0


def _timestamp(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else 0.0
