"""factory_drift end to end on the live stack, with real alert receivers.

One child process (bound to the live stack's metadata DB) trains `flights-logreg` on the spec's initial interval
(Q1 2013) with factory_train, logs hourly windows of real flights traffic in the gateway's layout, and runs the
drift DAG with dag.test() on them: a same-season window (reference = the candidate: no champion yet), then with
a champion and a rollback version, a window with injected drift (twice: the repeat must be deduplicated), two
summer windows (real seasonal drift: retraining requested, then blocked by the cooldown), an empty window and a
run whose reference does not exist (task failure alert through on_failure_callback).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from factory.airflow_api import AirflowClient
from factory.settings import PROJECT_ROOT
from factory.source_data import seed_source_database
from factory.stack import Stack, s3_client
from pipelines.monitoring.monitor import monitor_keys
from tests.integration.conftest import stack_subprocess_env
from tests.integration.drift_scenario import INJECTED_NEW_CARRIER, logical_date, window_bounds
from tests.integration.receivers import SmtpReceiver, WebhookReceiver

pytestmark = pytest.mark.services

MODEL = "flights-logreg"
BUCKET = "factory-data"
GATE_TASKS = "^(gate_candidate|route_gate_decision|approve_candidate|promote_challenger|record_gate_outcome)$"
DRIFT = {"model_name": MODEL}


def _drift(name: str, window: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "dag_id": "factory_drift", "conf": conf or DRIFT, "logical_date": logical_date(window)}


PLAN = [
    {"name": "train", "dag_id": "factory_train", "conf": {"trainer": "logreg", "owner": "tests"}, "skip": GATE_TASKS},
    {"name": "traffic", "call": "tests.integration.drift_scenario:write_traffic", "kwargs": {"model_name": MODEL}},
    _drift("same_season", "same_season"),
    {
        "name": "promote",
        "call": "tests.integration.drift_scenario:promote_for_rollback",
        "kwargs": {"model_name": MODEL},
    },
    _drift("injected", "injected"),
    _drift("injected_again", "injected"),
    _drift("summer", "summer"),
    _drift("summer_again", "summer_again"),
    _drift("empty", "empty"),
    _drift("failing", "failing", {"model_name": "no-such-model"}),
]

CHILD = f"""
import importlib, json, sys
from datetime import datetime
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(PROJECT_ROOT / "dags")!r})
assert not bag.import_errors, bag.import_errors
for step in json.loads(sys.argv[1]):
    if "call" in step:
        module, name = step["call"].split(":")
        getattr(importlib.import_module(module), name)(**step["kwargs"])
        print("STEP " + json.dumps({{"name": step["name"], "state": "success"}}), flush=True)
        continue
    kwargs = {{"run_conf": step["conf"], "mark_success_pattern": step.get("skip")}}
    if step.get("logical_date"):
        kwargs["logical_date"] = datetime.fromisoformat(step["logical_date"])
    run = bag.get_dag(step["dag_id"]).test(**kwargs)
    print("STEP " + json.dumps({{"name": step["name"], "state": str(run.state), "run_id": run.run_id}}), flush=True)
"""


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[WebhookReceiver, SmtpReceiver]]:
    webhook, smtp = WebhookReceiver(), SmtpReceiver()
    yield webhook, smtp
    webhook.close()
    smtp.close()


@pytest.fixture(scope="module")
def runs(live_stack: Stack, receivers) -> dict[str, dict[str, Any]]:
    seed_source_database(live_stack.settings)
    webhook, smtp = receivers
    env = stack_subprocess_env(live_stack) | {
        "AIRFLOW_CONN_FACTORY_WEBHOOK": webhook.connection(),
        "AIRFLOW_CONN_FACTORY_SMTP": smtp.connection(),
        "PYTHONPATH": f"{PROJECT_ROOT}:{PROJECT_ROOT / 'plugins'}",
    }
    result = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(PLAN)], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
        timeout=1500, check=False,
    )  # fmt: skip
    steps = {
        (step := json.loads(line.removeprefix("STEP ")))["name"]: step
        for line in result.stdout.splitlines()
        if line.startswith("STEP ")
    }
    assert set(steps) == {step["name"] for step in PLAN}, result.stdout[-4000:] + result.stderr[-4000:]
    errors = [line for line in result.stdout.splitlines() if "ERROR" in line or "Error" in line][-30:]
    for step in steps.values():
        step["errors"] = errors
    return steps


@pytest.fixture(scope="module")
def s3(live_stack: Stack):
    return s3_client(live_stack.settings, live_stack.credentials)


@pytest.fixture(scope="module")
def airflow(live_stack: Stack) -> Iterator[AirflowClient]:
    creds = live_stack.credentials
    client = AirflowClient(live_stack.settings.airflow_url, creds.airflow_admin_user, creds.airflow_admin_password)
    yield client
    client.close()


def stored(s3, window: str, name: str) -> dict[str, Any]:
    keys = monitor_keys("flights", MODEL, *window_bounds(window))
    return json.loads(s3.get_object(Bucket=BUCKET, Key=f"{keys.prefix}/{name}")["Body"].read())


def states(airflow: AirflowClient, run: dict[str, Any]) -> dict[str, str]:
    return {t.task_id: t.state for t in airflow.task_timings("factory_drift", run["run_id"])}


def webhook_alerts(webhook: WebhookReceiver, window: str) -> list[dict[str, Any]]:
    folder = monitor_keys("flights", MODEL, *window_bounds(window)).prefix
    return [p for p in webhook.payloads if folder in json.dumps(p.get("details", {}))]


def test_same_season_window_against_the_candidate_is_ok_and_alerts_nobody(runs, s3, airflow, receivers) -> None:
    assert runs["train"]["state"] == "success", runs["train"]["errors"]
    assert runs["same_season"]["state"] == "success", runs["same_season"]["errors"]
    timings = airflow.task_timings("factory_drift", runs["same_season"]["run_id"])  # incl. building the profile
    print("factory_drift (dag.test, first run):", ", ".join(f"{t.task_id} {t.duration_s:.1f} s" for t in timings))
    monitor = stored(s3, "same_season", "monitor.json")
    assert monitor["reference"]["alias"] == "candidate"  # no champion yet: the fallback, and it says so
    assert monitor["verdict"] == "ok", monitor["summary"]
    assert monitor["window_rows"] == 3000  # including the batch flushed 2 minutes after the hour
    assert {family: signal["status"] for family, signal in monitor["signals"].items()} == {
        "data": "ok", "prediction": "ok", "concept": "not_evaluated"
    }  # fmt: skip
    assert monitor["serving_skew"]["rows_compared"] == 3000
    assert monitor["serving_skew"]["max_abs_diff"] < 1e-6  # the logged scores are the reference model's own
    assert stored(s3, "same_season", "alerts.json")["alerts"] == []
    assert webhook_alerts(receivers[0], "same_season") == []
    decision = stored(s3, "same_season", "retraining_decision.json")
    assert decision["outcome"] == "no_drift"
    assert states(airflow, runs["same_season"])["request_retraining"] == "skipped"


def test_injected_drift_is_detected_named_alerted_and_deduplicated(runs, s3, receivers) -> None:
    webhook, smtp = receivers
    assert runs["injected"]["state"] == "success", runs["injected"]["errors"]
    monitor = stored(s3, "injected", "monitor.json")
    assert monitor["reference"]["alias"] == "champion"
    assert "temp" in monitor["drifted_features"]
    assert "pressure" in monitor["signals"]["data"]["columns"]
    report = stored(s3, "injected", "drift_report.json")
    assert "pressure" in [f["column"] for f in report["findings"] if f["kind"] == "null_surge"]
    carrier = next(feature for feature in report["features"] if feature["name"] == "carrier")
    assert carrier["new_categories"] == [INJECTED_NEW_CARRIER]
    assert "temp" in monitor["evidently_drifted_features"]  # Evidently, on its sample, agrees on the shift
    evidently = monitor["uris"]["evidently_html"].removeprefix(f"s3://{BUCKET}/")
    assert s3.head_object(Bucket=BUCKET, Key=evidently)["ContentLength"] > 10_000
    received = {payload["alert_type"]: payload for payload in webhook_alerts(webhook, "injected")}
    assert {"data_drift", "missing_values"} <= set(received)
    assert "temp" in received["data_drift"]["details"]["columns"]
    assert received["missing_values"]["severity"] == "critical"
    assert received["missing_values"]["runbook_url"] == "docs/runbook.md#missing-values"
    assert received["missing_values"]["report_uri"] == monitor["uris"]["evidently_html"]
    mails = [m for m in smtp.messages if "missing values on flights-logreg" in m["Subject"]]
    assert len(mails) == 1 and "Runbook: docs/runbook.md#missing-values" in mails[0].get_content()
    # The same window again (a re-run): everything is deduplicated.
    assert runs["injected_again"]["state"] == "success", runs["injected_again"]["errors"]
    deliveries = stored(s3, "injected", "alerts.json")["deliveries"]
    assert deliveries and {d["status"] for d in deliveries} == {"suppressed"}
    assert len(webhook_alerts(webhook, "injected")) == len(received)


def test_seasonal_drift_requests_retraining_once_then_the_cooldown_blocks(runs, s3, airflow, receivers) -> None:
    assert runs["summer"]["state"] == "success", runs["summer"]["errors"]
    monitor = stored(s3, "summer", "monitor.json")
    assert monitor["verdict"] == "alert" and "dataset_drift" in monitor["signals"]["data"]["finding_kinds"]
    decision = stored(s3, "summer", "retraining_decision.json")
    assert decision["outcome"] == "retrain", decision["summary"]
    assert all(check["passed"] for check in decision["checks"])
    assert decision["facts"]["rollback_version"] is not None
    assert decision["facts"]["new_labelled_rows"] > 200_000  # April-December 2013 in the seeded source
    assert states(airflow, runs["summer"])["request_retraining"] == "success"
    events = airflow.asset_events(source_dag_id="factory_drift")
    summer_events = [e for e in events if e["source_run_id"] == runs["summer"]["run_id"]]
    assert len(summer_events) == 1
    extra = summer_events[0]["extra"]
    assert summer_events[0]["uri"] == "factory://retraining/flights"
    assert extra["report_uri"] == monitor["uris"]["monitor"]
    assert set(extra["drifted_features"]) == set(monitor["drifted_features"])
    assert extra["interval_start"].startswith("2026-03-01T11:00")
    # The next hour drifts as much, but the cooldown holds: recorded, alerted (warning), no asset event.
    assert runs["summer_again"]["state"] == "success", runs["summer_again"]["errors"]
    again = stored(s3, "summer_again", "retraining_decision.json")
    assert (again["outcome"], again["blocked_by"]) == ("blocked", ["cooldown"])
    assert states(airflow, runs["summer_again"])["request_retraining"] == "skipped"
    blocked = [p for p in webhook_alerts(receivers[0], "summer_again") if p["alert_type"] == "retraining_blocked"]
    assert len(blocked) == 1 and "cooldown" in blocked[0]["summary"]
    events = airflow.asset_events(source_dag_id="factory_drift")
    assert not [e for e in events if e["source_run_id"] == runs["summer_again"]["run_id"]]


def test_empty_window_is_insufficient_data_not_an_error(runs, s3, airflow) -> None:
    assert runs["empty"]["state"] == "success", runs["empty"]["errors"]
    monitor = stored(s3, "empty", "monitor.json")
    assert (monitor["verdict"], monitor["window_rows"]) == ("insufficient_data", 0)
    assert monitor["signals"]["data"]["status"] == "insufficient_data"
    assert "evidently_html" not in monitor["uris"]
    assert stored(s3, "empty", "alerts.json")["alerts"] == []
    assert states(airflow, runs["empty"])["request_retraining"] == "skipped"


def test_a_failed_task_alerts_through_the_notifier_callbacks(runs, receivers) -> None:
    webhook, smtp = receivers
    assert runs["failing"]["state"] == "failed"
    failures = [p for p in webhook.payloads if p["alert_type"] == "task_failure"]
    assert [p["scope"] for p in failures] == ["factory_drift.resolve_reference"]
    assert "no-such-model" in failures[0]["summary"]
    assert failures[0]["runbook_url"] == "docs/runbook.md#task-failure"
    assert "/tasks/resolve_reference" in failures[0]["report_uri"]  # the task's log
    assert [m["Subject"] for m in smtp.messages if "task factory_drift" in m["Subject"]] == [
        "[factory CRITICAL] task factory_drift.resolve_reference failed"
    ]


@pytest.mark.scheduler
def test_retraining_asset_schedules_factory_train_through_the_scheduler(runs, airflow, tmp_path_factory) -> None:
    """The real consumer path (dag.test() runs no consumers): a drift run through the scheduler requests
    retraining, and the scheduler creates an asset-triggered factory_train run from the event. That run is then
    stopped: training itself is tested elsewhere."""
    import time

    import yaml

    from pipelines.monitoring.retraining import DEFAULT_RETRAINING_POLICY, REPOSITORY_ROOT

    policy = yaml.safe_load((REPOSITORY_ROOT / DEFAULT_RETRAINING_POLICY).read_text())
    path = tmp_path_factory.mktemp("policies") / "retraining.yaml"
    path.write_text(yaml.safe_dump(policy | {"cooldown_hours": 0.0001}))  # the dag.test() runs' request is recent
    start, end = window_bounds("summer")
    for dag_id in ("factory_drift", "factory_train"):
        airflow.wait_for_dag(dag_id)
        airflow.unpause(dag_id)
    try:
        run_id = airflow.trigger(
            "factory_drift", DRIFT | {"window_start": start.isoformat(), "window_end": end.isoformat(),
                                      "retraining_policy": str(path)},
        )  # fmt: skip
        run = airflow.wait_for_run("factory_drift", run_id, timeout=600)
        timings = airflow.task_timings("factory_drift", run_id)
        print("factory_drift via scheduler:", ", ".join(f"{t.task_id} {t.duration_s:.1f} s" for t in timings))
        assert run["state"] == "success", [(t.task_id, t.state) for t in timings]
        assert {t.task_id: t.state for t in timings}["request_retraining"] == "success"
        deadline, triggered = time.monotonic() + 120, []
        while not triggered and time.monotonic() < deadline:
            triggered = [r for r in airflow.dag_runs("factory_train") if r["run_type"] == "asset_triggered"]
            time.sleep(2)
        assert len(triggered) == 1, "the scheduler did not create an asset-triggered factory_train run"
        train_run = triggered[0]["dag_run_id"]
        events = airflow.upstream_asset_events("factory_train", train_run)
        # Every event since factory_train's previous run feeds this one (incl. the dag.test() request above).
        assert {e["uri"] for e in events} == {"factory://retraining/flights"}
        # The retraining learns from the latest labelled data: its snapshot ends just after the newest source row.
        deadline, extracted = time.monotonic() + 300, None
        while extracted is None and time.monotonic() < deadline:
            states = {t.task_id: t.state for t in airflow.task_timings("factory_train", train_run)}
            if states.get("extract_snapshot") in ("success", "failed", "upstream_failed"):
                extracted = states["extract_snapshot"]
            time.sleep(2)
        assert extracted == "success", airflow.task_log("factory_train", train_run, "extract_snapshot")[-3000:]
        interval = airflow.xcom("factory_train", train_run, "extract_snapshot")["interval"]
        assert interval["end"] == "2014-01-01T04:00:01+00:00"  # the seeded source's newest departure (UTC), + 1 s
        (mine,) = [e for e in events if e["source_run_id"] == run_id]
        assert mine["extra"]["model_name"] == MODEL
        assert mine["extra"]["report_uri"].endswith("/monitor.json")
    finally:
        for dag_id in ("factory_train", "factory_drift"):
            airflow.pause(dag_id)
        for stale in airflow.dag_runs("factory_train"):
            if stale["run_type"] == "asset_triggered" and stale["state"] in ("queued", "running"):
                airflow.set_run_state("factory_train", stale["dag_run_id"], "failed")
