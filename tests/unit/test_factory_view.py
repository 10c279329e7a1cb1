"""The factory view's pure part: parsing stored records, assembling the per-model summary, rendering HTML.

Records are made by the project's own code (alias moves planned by `plan_move`, drift reports by the fast path
on small frames, alerts by the rubric, retraining decisions by the guardrails, route tables by `plan_table`),
so the view is tested against what the factory really writes. The live plugin is tested in
tests/integration/test_factory_view.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.alias_log import UNCONDITIONAL, AliasMove, apply_changes, check_log, plan_move
from pipelines.factory_view.links import Link, Paths, RunRef, parse_actor, served_key
from pipelines.factory_view.records import (
    ALERTS,
    DECISION,
    DRIFT_REPORT,
    EVIDENTLY,
    MONITOR,
    DagRunRecord,
    FetchError,
    RecordError,
    RegistryRecord,
    StoredObject,
    TrafficRecord,
    VersionRecord,
    latest_rollout,
    newest_window,
    parse_drift_window,
    parse_step_records,
)
from pipelines.factory_view.render import render_index_page, render_message_page, render_model_page
from pipelines.factory_view.view import ModelView, assemble_index, assemble_model_view
from pipelines.monitoring import build_reference_profile, detect_drift, load_drift_policy
from pipelines.monitoring.alerts import drift_alerts, load_alert_policy
from pipelines.monitoring.monitor import MonitorReport, ReferenceModel, ServingSkew, signals_of, window_id
from pipelines.monitoring.retraining import RetrainingFacts, decide_retraining, load_retraining_policy
from pipelines.rollout.guardrails import GuardrailResult, StepVerdict
from pipelines.rollout.records import StepRecord, record_key
from serving.gateway.routing import Routes, plan_table

MODEL = "flights-hgb"
T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
POLICIES = Path(__file__).resolve().parents[2] / "pipelines" / "configs" / "policies"
TRAIN_RUN = "manual__2026-03-01T08:00:00+00:00"
ROLLOUT_RUN = "scheduled__2026-03-01T09:00:00+00:00"
PATHS = Paths(airflow_base="", app_base="/factory", mlflow_url="http://mlflow:5000")


# ----- records as the factory writes them -----------------------------------------------------------------------
def alias_log(*moves: tuple[str, str, str, str | None]) -> list[AliasMove]:
    """(alias, version, actor, report_uri) moves planned by the alias log's own rules, as consecutive records."""
    entries: list[AliasMove] = []
    state: dict[str, str] = {}
    for seq, (alias, version, actor, report_uri) in enumerate(moves, start=1):
        changes = plan_move(state, alias, version, expected=UNCONDITIONAL)
        state = apply_changes(state, changes)
        entries.append(
            AliasMove(
                model=MODEL, seq=seq, at=T0 + timedelta(minutes=seq), actor=actor, reason=f"move {seq}",
                report_uri=report_uri, request_id=f"request-{seq}", changes=changes, aliases=state,
            )
        )  # fmt: skip
    check_log(entries)
    return entries


def factory_log() -> list[AliasMove]:
    """v1 trained, promoted, rolled out; v2 the same (v1 -> previous); v3 trained and made challenger."""
    train = f"airflow:factory_train/{TRAIN_RUN}"
    return alias_log(
        ("candidate", "1", train, None),
        ("challenger", "1", f"{train}/promote_challenger", "runs:/run1/gate/gate_report.html"),
        ("champion", "1", f"airflow:factory_rollout/{ROLLOUT_RUN}", None),
        ("candidate", "2", train, None),
        ("challenger", "2", f"{train}/promote_challenger", "runs:/run2/gate/gate_report.html"),
        ("champion", "2", f"airflow:factory_rollout/{ROLLOUT_RUN}", f"s3://factory-data/rollouts/{MODEL}/r2/04-ramp.json"),
        ("candidate", "3", "tests", None),
        ("challenger", "3", "someone@example.com", None),
    )  # fmt: skip


def registry(**changes) -> RegistryRecord:
    versions = [
        VersionRecord(
            version="3", run_id="run3", created_at=T0, status="READY", experiment_id="7",
            tags={"gate.decision": "needs_approval", "gate.summary": "agreement 91 %", "gate.report": "runs:/run3/x"},
            run_tags={"airflow.dag_id": "factory_train", "airflow.run_id": TRAIN_RUN, "governance.owner": "ml"},
        ),
        VersionRecord(
            version="2", run_id="run2", experiment_id="7",
            tags={"gate.decision": "passed", "gate.summary": "better", "gate.champion_version": "1",
                  "gate.report": "runs:/run2/gate/gate_report.html", "rollout.outcome": "promoted", "rollout.id": "r2"},
        ),
        VersionRecord(version="1", run_id="run1", run_error="run run1 unreadable: RestException: gone"),
    ]  # fmt: skip
    base = {"versions": versions, "total_versions": 20, "mlflow_aliases": _state(factory_log()), "applied_seq": 8}
    return RegistryRecord(**(base | changes))


def _state(log: list[AliasMove]) -> dict[str, str]:
    return dict(log[-1].aliases)


def step(seq: int, name: str, action: str, *, rollout_id: str = "r2", passed: bool | None = None, detail: str = ""):
    verdict = None
    if passed is not None:
        result = GuardrailResult(name="error_rate", value=0.0 if passed else 0.2, limit=0.01, passed=passed, detail="d")
        verdict = StepVerdict(step=name, challenger_percent=5, enough_evidence=True, evidence="300 requests",
                              results=[result])  # fmt: skip
    started = T0 + timedelta(minutes=seq)
    return StepRecord(
        model=MODEL, rollout_id=rollout_id, seq=seq, step=name, action=action, started_at=started,
        ended_at=started + timedelta(seconds=30), champion=1, challenger=2, verdict=verdict, detail=detail,
        actor=f"airflow:factory_rollout/{ROLLOUT_RUN}",
    )  # fmt: skip


def promoted_rollout() -> list[StepRecord]:
    return [
        step(0, "plan", "planned"),
        step(3, "canary", "continued", passed=True),
        step(5, "promote", "promoted"),
        step(9, "outcome", "promoted", detail="promoted"),
    ]


def canary_traffic() -> TrafficRecord:
    first = plan_table(MODEL, None, Routes.single(2), now=T0)
    table = plan_table(MODEL, first, Routes.split(2, 3, 25).with_shadow(3, share=0.5), reason="canary", now=T0)
    return TrafficRecord(table=table, replicas={"gw-1": table.state_version, "gw-2": table.state_version - 1})


@pytest.fixture(scope="module")
def window_files() -> dict[str, bytes]:
    """The files factory_drift stores for one window, made by the fast path, the rubric and the guardrails on
    small frames whose `x` moved and whose `c` gained a category."""
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 3000), "c": rng.choice(["a", "b"], 3000)})
    window = pd.DataFrame({"x": rng.normal(1.5, 1, 3000), "c": rng.choice(["a", "b", "z"], 3000)})
    policy = load_drift_policy(POLICIES / "drift.yaml")
    columns = {"x": "numeric", "c": "categorical"}
    report = detect_drift(build_reference_profile(reference, columns, policy), window, policy)
    alerts = drift_alerts(
        report, load_alert_policy(POLICIES / "alerts.yaml"), scope=MODEL, raised_at=NOW,
        report_uri=f"s3://factory-data/monitoring/flights/{MODEL}/drift/w/evidently.html",
    )  # fmt: skip
    facts = RetrainingFacts(
        dataset="flights", model_name=MODEL, reference_alias="champion", reference_version="2",
        drift_verdict=report.verdict, finding_kinds=sorted({f.kind for f in report.findings}),
        drifted_features=report.drifted_features, report_feature_spec_version=report.feature_spec_version,
        champion_feature_spec_version=report.feature_spec_version, rollback_version="2", running_trainings=0,
        last_retrain_requested_at=None, new_labelled_rows=10, labelled_since=T0, now=NOW,
    )  # fmt: skip
    decision = decide_retraining(facts, load_retraining_policy(POLICIES / "retraining.yaml"))
    monitor = MonitorReport(
        dataset="flights",
        reference=ReferenceModel(
            model_name=MODEL, alias="champion", version="2", run_id="run2", snapshot_id="s", feature_spec_version=None,
            interval_start=T0 - timedelta(days=60), interval_end=T0, rows=3000, profile_uri="s3://factory-data/p",
        ),
        interval_start=T0, interval_end=T0 + timedelta(hours=1), window_rows=3000, served_versions={"2": 3000},
        verdict=report.verdict, summary=report.summary, drifted_features=report.drifted_features,
        signals=signals_of(report), serving_skew=ServingSkew(rows_compared=0, max_abs_diff=None),
        evidently_drifted_features=["x"], uris={},
    )  # fmt: skip
    deliveries = [{"alert_key": a.key, "channel": "webhook", "status": "sent", "detail": ""} for a in alerts]
    return {
        DRIFT_REPORT: report.model_dump_json().encode(),
        MONITOR: monitor.model_dump_json().encode(),
        ALERTS: json.dumps({"alerts": [a.model_dump(mode="json") for a in alerts], "deliveries": deliveries}).encode(),
        DECISION: decision.model_dump_json().encode(),
        EVIDENTLY: b"present",
    }


WINDOW = window_id(T0, T0 + timedelta(hours=1))
PREFIX = f"monitoring/flights/{MODEL}/drift/{WINDOW}"


def full_view(window_files: dict[str, bytes], **overrides) -> ModelView:
    sources = {
        "alias_log": factory_log(),
        "registry": registry(),
        "rollout": promoted_rollout(),
        "traffic": canary_traffic(),
        "drift": parse_drift_window("flights", WINDOW, PREFIX, window_files),
        "runs": [
            DagRunRecord(dag_id="factory_smoke", run_id="s1", state="success", run_after=T0),
            DagRunRecord(dag_id="factory_train", run_id="t1", state="failed", run_after=T0),
            DagRunRecord(dag_id="factory_train", run_id="t2", state="running", run_after=T0 + timedelta(hours=1)),
        ],
    }
    return assemble_model_view(MODEL, **(sources | overrides), paths=PATHS, now=NOW)


# ----- links -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("actor", "expected"),
    [
        (f"airflow:factory_train/{TRAIN_RUN}", RunRef("factory_train", TRAIN_RUN)),
        (f"airflow:factory_train/{TRAIN_RUN}/promote", RunRef("factory_train", TRAIN_RUN, "promote")),
        ("airflow:factory_rollback/manual__x", RunRef("factory_rollback", "manual__x")),
        ("tests", None),
        ("someone@example.com", None),
        ("airflow:", None),
        ("airflow:factory_train", None),
        ("airflow:bad dag/run", None),
    ],
)  # fmt: skip
def test_actor_names_the_dag_run_it_was(actor: str, expected: RunRef | None):
    assert parse_actor(actor) == expected


def test_dag_run_links_are_quoted_under_the_airflow_base_and_leave_the_frame():
    link = Paths(airflow_base="/airflow").dag_run(RunRef("factory_train", TRAIN_RUN, "promote_challenger"))
    assert (
        link.href
        == "/airflow/dags/factory_train/runs/manual__2026-03-01T08%3A00%3A00%2B00%3A00/tasks/promote_challenger"
    )
    assert link.target == "top"
    assert Paths().mlflow_run("1", "abc") is None  # no MLflow URL known: no dead link
    assert PATHS.mlflow_run("1", "abc") == Link(label="MLflow run", href="http://mlflow:5000/#/experiments/1/runs/abc",
                                                target="tab")  # fmt: skip


@pytest.mark.parametrize(
    "key",
    [
        "registry/alias-log/m/0000000001.json",  # not a report
        "snapshots/flights/abc/data.parquet",
        "monitoring/flights/m/drift/w/profile.npz",  # a report folder, not a report file
        "monitoring/../registry/x.json",
        "/monitoring/x.json",
        "monitoring//x.json",
    ],
)
def test_the_report_route_serves_reports_only(key: str):
    with pytest.raises(ValueError):
        served_key(key)
    assert PATHS.report_of_uri(f"s3://factory-data/{key}") is None


def test_report_links_only_for_the_data_bucket():
    key = "monitoring/flights/m/drift/w/evidently.html"
    assert served_key(key) == key
    assert PATHS.report_of_uri(f"s3://factory-data/{key}") == Link(
        label="evidently.html", href=f"/factory/reports/{key}"
    )
    assert PATHS.report_of_uri(f"s3://other-bucket/{key}") is None
    assert PATHS.report_of_uri(None) is None


# ----- records -----------------------------------------------------------------------------------------------------
def test_the_latest_rollout_is_the_one_written_last_whatever_its_id():
    at = T0
    prefix = f"rollouts/{MODEL}/"
    objects = [
        StoredObject(key=f"{prefix}scheduled__b/00-plan.json", last_modified=at),
        StoredObject(key=f"{prefix}scheduled__b/09-outcome.json", last_modified=at + timedelta(minutes=5)),
        StoredObject(key=f"{prefix}manual__a/00-plan.json", last_modified=at + timedelta(minutes=1)),
        StoredObject(key=f"{prefix}rollback-manual__c/00-rollback.json", last_modified=at + timedelta(minutes=9)),
        StoredObject(key=f"{prefix}manual__d/notes.txt", last_modified=at + timedelta(hours=1)),
        StoredObject(key=f"rollouts/{MODEL}-other/x/00-plan.json", last_modified=at + timedelta(hours=2)),
    ]
    assert latest_rollout(objects, MODEL) == "rollback-manual__c"
    assert latest_rollout(objects[:3], MODEL) == "scheduled__b"
    assert latest_rollout([], MODEL) is None


def test_step_records_parse_in_step_order_and_a_bad_one_is_named():
    records = promoted_rollout()
    blobs = {record_key(MODEL, "r2", r.seq, r.step): r.model_dump_json().encode() for r in reversed(records)}
    assert [r.seq for r in parse_step_records(blobs)] == [0, 3, 5, 9]
    bad_key = record_key(MODEL, "r2", 4, "ramp")
    with pytest.raises(RecordError, match=r"04-ramp\.json is not a StepRecord"):
        parse_step_records(blobs | {bad_key: b'{"model": "m"}'})
    with pytest.raises(RecordError, match="is not JSON"):
        parse_step_records({bad_key: b"<html>"})


def test_the_newest_window_sorts_by_time_and_ignores_other_folders():
    windows = [window_id(T0 + timedelta(hours=h), T0 + timedelta(hours=h + 1)) for h in (3, 11, 2)]
    assert newest_window([*windows, "profiles", "zzz"]) == windows[1]
    assert newest_window(["profiles"]) is None


def test_a_window_parses_each_file_on_its_own(window_files: dict[str, bytes]):
    window = parse_drift_window("flights", WINDOW, PREFIX, window_files)
    assert window.drift_report is not None and window.drift_report.verdict == "alert"
    assert window.monitor is not None and window.decision is not None and window.evidently_html
    assert window.alerts and len(window.deliveries) == len(window.alerts)
    assert (window.start, window.end) == (T0, T0 + timedelta(hours=1))
    assert window.missing == [] and window.problems == {}

    damaged = window_files | {DRIFT_REPORT: b'{"verdict": "maybe"}', ALERTS: b"[]", EVIDENTLY: None, DECISION: None}
    damaged[MONITOR] = FetchError(f"s3://factory-data/{PREFIX}/monitor.json", "ClientError: AccessDenied")
    partial = parse_drift_window("flights", WINDOW, PREFIX, damaged)
    assert partial.drift_report is None and partial.alerts is None and partial.monitor is None
    assert "drift_report.json is not a DriftReport" in partial.problems[DRIFT_REPORT]
    assert "holds no 'alerts' list" in partial.problems[ALERTS]
    assert partial.problems[MONITOR].endswith("monitor.json: ClientError: AccessDenied")
    assert partial.missing == [DECISION, EVIDENTLY]


# ----- the view ----------------------------------------------------------------------------------------------------
def test_aliases_history_and_versions(window_files: dict[str, bytes]):
    view = full_view(window_files)
    holders = {h.alias: h for h in view.aliases.holders}
    assert [h.alias for h in view.aliases.holders] == ["champion", "challenger", "candidate", "previous"]
    assert {alias: h.version for alias, h in holders.items()} == {
        "champion": "2", "challenger": "3", "candidate": "3", "previous": "1",
    }  # fmt: skip
    assert holders["champion"].since_seq == 6 and holders["champion"].actor_link is not None
    assert holders["challenger"].actor_link is None  # a person, not a DAG run
    assert view.aliases.in_sync is True and view.aliases.latest_seq == 8

    history = view.history.rows
    assert [row.seq for row in history] == [8, 7, 6, 5, 4, 3, 2, 1]
    promotion = history[2]
    assert promotion.changes == ["champion: v1 → v2", "previous: — → v1"]
    assert promotion.actor_link is not None and promotion.actor_link.href.startswith("/dags/factory_rollout/runs/")
    assert promotion.report == Link(label="04-ramp.json", href=f"/factory/reports/rollouts/{MODEL}/r2/04-ramp.json")
    assert history[3].report == Link(label="gate report", href=f"/factory/models/{MODEL}/versions/2/gate-report")
    assert history[3].actor_link is not None and history[3].actor_link.href.endswith("/tasks/promote_challenger")

    rows = {row.version: row for row in view.versions.rows}
    assert list(rows) == ["3", "2", "1"] and view.versions.total == 20
    assert rows["3"].roles == ["challenger", "candidate"] and rows["2"].roles == ["champion"]
    assert rows["3"].gate is not None and rows["3"].gate.decision == "needs_approval"
    assert rows["3"].trained_by is not None and rows["3"].trained_by.label == f"factory_train / {TRAIN_RUN}"
    assert rows["2"].rollout == {"id": "r2", "outcome": "promoted"}
    assert [link.label for link in rows["2"].links] == ["gate report", "model card", "MLflow run"]
    assert rows["1"].gate is None and rows["1"].links == [] and rows["1"].problem is not None


def test_mlflow_lagging_the_log_is_said_and_the_log_wins(window_files: dict[str, bytes]):
    lagging = registry(mlflow_aliases={"champion": "1", "challenger": "2"}, applied_seq=5)
    view = full_view(window_files, registry=lagging)
    assert view.aliases.in_sync is False and view.aliases.version_of("champion") == "2"
    assert "lag the alias log (applied #5, log at #8)" in render_model_page(view, app_base="/factory")


def test_rollout_traffic_drift_and_runs(window_files: dict[str, bytes]):
    view = full_view(window_files)
    rollout = view.rollout
    assert (rollout.rollout_id, rollout.kind, rollout.status, rollout.outcome) == (
        "r2",
        "rollout",
        "promoted",
        "promoted",
    )
    assert [s.step for s in rollout.steps] == ["plan", "canary", "promote", "outcome"]
    assert rollout.steps[1].passed is True and rollout.steps[1].seconds == 30
    assert rollout.steps[1].record.href == f"/factory/reports/rollouts/{MODEL}/r2/03-canary.json"

    traffic = view.traffic
    assert [(r.version, r.percent, r.share, r.roles) for r in traffic.routes] == [
        (2, 75.0, 0.75, ["champion"]), (3, 25.0, 0.25, ["challenger", "candidate"]),
    ]  # fmt: skip
    assert traffic.shadow == "v3 gets a copy of 50% of requests" and traffic.reason == "canary"
    assert traffic.applied_everywhere is False  # gw-2 still serves the previous table

    drift = view.drift
    assert drift.window == WINDOW and drift.verdict == "alert" and "x" in drift.drifted_features
    assert drift.reference == "champion v2" and {s.family for s in drift.signals} == {"data", "prediction", "concept"}
    assert drift.alerts and all(a.deliveries == ["webhook: sent"] for a in drift.alerts)
    assert drift.alerts[0].report == Link(
        label="evidently.html", href=f"/factory/reports/monitoring/flights/{MODEL}/drift/w/evidently.html"
    )
    assert drift.decision in {"blocked", "retrain"} and drift.links[0].label == "Evidently report"
    assert drift.links[0].href == f"/factory/reports/{PREFIX}/evidently.html"

    assert [(r.dag_id, r.run_id) for r in view.runs.rows] == [
        ("factory_train", "t2"), ("factory_train", "t1"), ("factory_smoke", "s1"),
    ]  # fmt: skip
    assert view.runs.rows[0].link.href == "/dags/factory_train/runs/t2"


@pytest.mark.parametrize(
    ("steps", "status", "outcome"),
    [
        ([step(0, "plan", "planned"), step(3, "canary", "rolled_back", passed=False, detail="error rate")],
         "rolled_back", "rolled back at canary: error rate"),
        ([step(0, "plan", "planned"), step(1, "deploy", "failed", detail="host down")], "failed",
         "failed at deploy: host down"),
        ([step(0, "plan", "planned"), step(2, "shadow", "continued", passed=True)], "in_progress",
         "in progress: last step shadow (continued)"),
        ([step(0, "plan", "planned"), step(9, "outcome", "failed", detail="stopped at canary")], "stopped",
         "stopped at canary"),
        ([step(0, "rollback", "rolled_back", rollout_id="rollback-manual__x", detail="v1 serves 100 %")], "rollback",
         "v1 serves 100 %"),
    ],
)  # fmt: skip
def test_a_rollout_says_how_it_ended(steps, status: str, outcome: str, window_files: dict[str, bytes]):
    rollout = full_view(window_files, rollout=steps).rollout
    assert (rollout.status, rollout.outcome) == (status, outcome)


def test_nothing_yet_is_content_and_every_failed_source_is_named_on_its_panel(window_files: dict[str, bytes]):
    empty = assemble_model_view(
        MODEL, alias_log=[], registry=registry(versions=[], total_versions=0, mlflow_aliases={}, applied_seq=None),
        rollout=[], traffic=TrafficRecord(table=None), drift=None, runs=[], paths=PATHS, now=NOW,
    )  # fmt: skip
    assert empty.rollout.rollout_id is None and empty.drift.window is None and not empty.traffic.has_routes
    assert all(h.version is None for h in empty.aliases.holders) and empty.aliases.latest_seq is None
    html = render_model_page(empty, app_base="/factory")
    assert html.count("none yet") >= 7 and 'class="error"' not in html

    failures = {
        name: FetchError(f"source of {name}", f"ConnectionError: {name} is down")
        for name in ("alias_log", "registry", "rollout", "traffic", "drift", "runs")
    }
    broken = assemble_model_view(MODEL, **failures, paths=PATHS, now=NOW)
    panels = [
        broken.aliases,
        broken.history,
        broken.versions,
        broken.rollout,
        broken.traffic,
        broken.drift,
        broken.runs,
    ]
    assert all(panel.error for panel in panels)
    assert broken.rollout.error == "source of rollout: ConnectionError: rollout is down"
    html = render_model_page(broken, app_base="/factory")
    for name in failures:
        assert f"{name} is down" in html


def test_values_are_escaped_in_the_page(window_files: dict[str, bytes]):
    hostile = alias_log(("candidate", "1", 'airflow:factory_train/run"><script>alert(1)<', None))
    view = full_view(window_files, alias_log=hostile, rollout=[], registry=registry(versions=[
        VersionRecord(version="1", tags={"gate.decision": "<b>passed</b>", "gate.summary": "<img src=x onerror=1>"})
    ]))  # fmt: skip
    html = render_model_page(view, app_base="/factory")
    assert "<script>alert(1)" not in html and "<img src=x" not in html and "<b>passed" not in html
    assert "run&quot;&gt;&lt;script&gt;alert(1)&lt;" in html and "&lt;img src=x onerror=1&gt;" in html
    assert "%3Cscript%3E" in html  # in the link to the run: quoted in the path


def test_the_page_marks_what_the_browser_test_and_users_look_for(window_files: dict[str, bytes]):
    html = render_model_page(full_view(window_files), app_base="/factory")
    assert '<div class="card" data-alias="champion" data-version="2">' in html
    assert html.count('class="history-row"') == 8
    assert '<span class="badge bad" id="drift-verdict">alert</span>' in html
    assert 'id="rollout-status">promoted</span>' in html
    assert 'href="/dags/factory_train/runs/t2" data-nav="top"' in html
    assert 'href="http://mlflow:5000/#/experiments/7/runs/run3" data-nav="tab" target="_blank" rel="noopener"' in html
    assert "window.top.document" in html  # framed links are handed to the top window


def test_index_lists_models_and_names_a_registry_failure():
    runs = [DagRunRecord(dag_id="factory_drift", run_id="d1", state="queued")]
    index = assemble_index(
        [("b-model", {"previous": "1", "champion": "2"}, "2"), ("a-model", {}, None)], runs, PATHS, NOW
    )
    assert [m.name for m in index.models] == ["a-model", "b-model"]
    assert list(index.models[1].aliases) == ["champion", "previous"]
    assert index.models[1].link.href == "/factory/models/b-model"
    html = render_index_page(index)
    assert 'data-model="a-model"' in html and "d1" in html
    failed = assemble_index(FetchError("MLflow registry", "MlflowUnavailableError: down"), runs, PATHS, NOW)
    assert "MLflow registry: MlflowUnavailableError: down" in render_index_page(failed)
    assert "d1" in render_index_page(failed)


def test_message_page_escapes_and_links_back():
    html = render_message_page("Not found", "no model '<x>'", app_base="/factory", status=404)
    assert "no model &#x27;&lt;x&gt;&#x27;" in html and 'href="/factory/"' in html
