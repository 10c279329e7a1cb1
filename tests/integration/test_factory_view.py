"""The factory view (Airflow plugin) on the live stack: real state in MLflow, S3 and Redis, read through the
API server's plugin app, as JSON, as anonymous requests, and in a real headless Chromium.

The state is made the way the factory makes it, cheaply: registered versions from small MLflow runs (tags
as factory_train and the gate write them, gate report and model card as run artifacts), alias moves through
the alias log, rollout step records through the rollout's own `StepRecorder`, gateway routes through the
`RouteStore`, and one monitoring window computed by the drift fast path, the Evidently adapter, the alert
rubric and the retraining guardrails on real flights rows, stored under `monitor_keys` as factory_drift does.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from factory.stack import Stack, s3_client
from factory.view_screenshot import capture_factory_view, headless_chromium, open_model_directly
from pipelines.alias_log import UNCONDITIONAL
from tests.integration.rollout_support import connections_of

pytestmark = pytest.mark.services

DATASET = "flights"
WINDOW_START = datetime(2026, 3, 2, 9, tzinfo=UTC)
WINDOW_END = WINDOW_START + timedelta(hours=1)
TRAINING_RUNS = [f"manual__2026-03-0{i}T08:00:00+00:00" for i in (1, 2, 3)]
ROLLOUT_RUN = "manual__2026-03-02T08:30:00+00:00"
ROLLOUT_ID = "manual__2026-03-02T08_30_00_00_00"
GATE_TAGS = {  # what the gate (and a human, for v3) left on the versions
    "2": {"gate.decision": "passed", "gate.summary": "v2 beats v1 on AUC", "gate.champion_version": "1",
          "gate.policy": "default@1.1.0"},
    "3": {"gate.decision": "approved", "gate.summary": "needs a human: drift", "gate.champion_version": "2",
          "gate.approval": "approved by admin"},
}  # fmt: skip


@dataclass(frozen=True)
class ViewState:
    model: str
    runs: dict[str, str]  # version -> MLflow run id
    smoke_run: str  # a real Airflow run, the actor of the promotion to champion of v1
    drift_verdict: str
    drifted_features: list[str]
    alerts: int
    decision: str


# ----- state, made as the factory makes it ----------------------------------------------------------------------
def register_versions(stack: Stack, model: str, count: int) -> dict[str, str]:
    """`count` registered versions of a fresh model, each from a small run tagged like factory_train's."""
    from mlflow import MlflowClient

    client = MlflowClient(stack.settings.mlflow_url)
    experiment = client.get_experiment_by_name("factory/view-tests")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("factory/view-tests")
    client.create_registered_model(model)
    runs = {}
    for index in range(count):
        tags = {
            "airflow.dag_id": "factory_train",
            "airflow.run_id": TRAINING_RUNS[index % len(TRAINING_RUNS)],
            "governance.owner": "tests",
            "data.snapshot_id": f"snapshot-{index}",
        }
        run_id = client.create_run(experiment_id, tags=tags).info.run_id
        client.log_text(run_id, "placeholder", "model/README.txt")
        client.set_terminated(run_id)
        version = client.create_model_version(model, f"runs:/{run_id}/model", run_id).version
        runs[str(version)] = run_id
    return runs


def gate_version(stack: Stack, model: str, version: str, run_id: str, tags: dict[str, str]) -> None:
    """The gate's evidence on the run (report and card as HTML artifacts), then its verdict tags on the version."""
    from mlflow import MlflowClient

    client = MlflowClient(stack.settings.mlflow_url)
    for title, path in (("Gate report", "gate/gate_report.html"), ("Model card", "model_card/model_card.html")):
        client.log_text(run_id, f"<html><body><h1>{title} of {model} v{version}</h1></body></html>", path)
    for key, value in {**tags, "gate.report": f"runs:/{run_id}/gate/gate_report.html"}.items():
        client.set_model_version_tag(model, version, key, value)


def move_aliases(stack: Stack, model: str, runs: dict[str, str], smoke_run: str) -> None:
    """v1 registered, gated, rolled out; v2 the same (v1 -> previous); v3 registered and approved as challenger."""
    from factory_providers.mlflow.aliases import AliasRegistry
    from mlflow import MlflowClient

    registry = AliasRegistry(s3_client(stack.settings, stack.credentials), MlflowClient(stack.settings.mlflow_url))
    train = [f"airflow:factory_train/{run}" for run in TRAINING_RUNS]
    gate_uri = {version: f"runs:/{run}/gate/gate_report.html" for version, run in runs.items()}
    ramp_record = f"s3://factory-data/rollouts/{model}/{ROLLOUT_ID}/04-ramp.json"
    moves = [
        ("candidate", "1", UNCONDITIONAL, train[0], "version 1 registered", None, {}),
        ("challenger", "1", None, f"{train[0]}/promote_challenger", "gate promote: first model", None, {}),
        ("champion", "1", None, f"airflow:factory_smoke/{smoke_run}", "first rollout", None, {}),
        ("candidate", "2", UNCONDITIONAL, train[1], "version 2 registered", None, {}),
        ("challenger", "2", "1", f"{train[1]}/promote_challenger", "gate promote: v2 beats v1", gate_uri["2"], {}),
        ("champion", "2", "1", f"airflow:factory_rollout/{ROLLOUT_RUN}", f"rollout {ROLLOUT_ID}: guardrails held",
         ramp_record, {}),
        ("candidate", "3", UNCONDITIONAL, train[2], "version 3 registered", None, {}),
        ("challenger", "3", "2", f"{train[2]}/promote_challenger", "gate needs_approval: approved", gate_uri["3"],
         {"approved_by": "admin"}),
    ]  # fmt: skip
    for alias, version, expected, actor, reason, report_uri, details in moves:
        registry.move_alias(
            model, alias, version, expected=expected, actor=actor, reason=reason, report_uri=report_uri,
            details=details,
        )  # fmt: skip


def write_rollout(stack: Stack, model: str) -> None:
    """The records of a promoted rollout of v2 over v1, written by the rollout's StepRecorder, and the routes
    of a later canary of v3 (25 %) in the gateway's RouteStore."""
    from factory_providers.gateway.hooks import GatewayHook
    from factory_providers.rollout.operations import Rollout, StepRecorder

    from pipelines.rollout.guardrails import GuardrailResult, StepVerdict
    from pipelines.rollout.policy import DEFAULT_ROLLOUT_POLICY, load_rollout_policy
    from serving.gateway.routing import Routes

    plan = Rollout(
        model=model, rollout_id=ROLLOUT_ID, champion=1, challenger=2, pool="default", target_pool="default",
        policy_path=DEFAULT_ROLLOUT_POLICY, policy=load_rollout_policy(),
        actor=f"airflow:factory_rollout/{ROLLOUT_RUN}",
    )  # fmt: skip
    held = [GuardrailResult(name="error_rate", value=0.0, limit=0.01, passed=True, detail="0 errors in 240 requests")]
    steps = [
        (0, "plan", "planned", None, "roll out v2 over champion v1 in pool default"),
        (1, "deploy", "deployed", None, "v1, v2 live on 1 host"),
        (2, "shadow", "continued", StepVerdict(step="shadow", challenger_percent=0, enough_evidence=True,
                                               evidence="240 requests", results=held), ""),
        (3, "canary", "continued", StepVerdict(step="canary", challenger_percent=5, enough_evidence=True,
                                               evidence="230 requests", results=held), ""),
        (4, "ramp", "continued", StepVerdict(step="ramp", challenger_percent=50, enough_evidence=True,
                                             evidence="260 requests", results=held), ""),
        (5, "promote", "promoted", None, "v2 is champion; 100 % of traffic"),
        (6, "bake", "continued", None, "bake held"),
        (7, "unload", "unloaded", None, "v1 unloaded; v2 alone is live"),
        (9, "outcome", "promoted", None, "promoted"),
    ]  # fmt: skip
    with connections_of(stack):
        recorder = StepRecorder(plan, stack.settings.data_bucket)
        for seq, step, action, verdict, detail in steps:
            recorder.write(seq, step, action, datetime.now(UTC), verdict=verdict, detail=detail)
        with GatewayHook().route_store() as store:
            store.set_routes(model, Routes.split(2, 3, 25), 0, reason="test: canary of v3 at 25 %")
    from mlflow import MlflowClient  # the outcome on the version, as record_rollout tags it

    outcome = {"rollout.id": ROLLOUT_ID, "rollout.outcome": "promoted", "rollout.record": recorder.uri(9, "outcome")}
    for key, value in outcome.items():
        MlflowClient(stack.settings.mlflow_url).set_model_version_tag(model, "2", key, value)


def write_drift_window(stack: Stack, model: str) -> tuple[str, list[str], int, str]:
    """One monitoring window of the model: Q1 2013 flights as reference, July-August as the window (real
    seasonal drift), through the fast path, Evidently, the alert rubric and the retraining guardrails."""
    import tempfile

    from pipelines.monitoring import build_reference_profile, detect_drift, load_drift_policy
    from pipelines.monitoring.alerts import drift_alerts, load_alert_policy
    from pipelines.monitoring.demo_data import FLIGHT_DRIFT_FEATURES, load_flights_with_weather
    from pipelines.monitoring.evidently_adapter import evidently_report
    from pipelines.monitoring.monitor import MonitorReport, ReferenceModel, ServingSkew, monitor_keys, signals_of
    from pipelines.monitoring.retraining import RetrainingFacts, decide_retraining, load_retraining_policy

    root = Path(__file__).resolve().parents[2] / "pipelines" / "configs" / "policies"
    flights = load_flights_with_weather()
    reference = flights[flights["month"].isin([1, 2, 3])].sample(2000, random_state=1)
    window = flights[flights["month"].isin([7, 8])].sample(2000, random_state=2)
    policy = load_drift_policy(root / "drift.yaml")
    report = detect_drift(build_reference_profile(reference, FLIGHT_DRIFT_FEATURES, policy), window, policy)
    keys = monitor_keys(DATASET, model, WINDOW_START, WINDOW_END)
    bucket = stack.settings.data_bucket
    uri = {name: f"s3://{bucket}/{key}" for name, key in (("html", keys.evidently_html), ("report", keys.drift_report))}
    now = datetime.now(UTC)
    alerts = drift_alerts(report, load_alert_policy(root / "alerts.yaml"), scope=model, report_uri=uri["html"],
                          raised_at=now)  # fmt: skip
    facts = RetrainingFacts(
        dataset=DATASET, model_name=model, reference_alias="champion", reference_version="2",
        drift_verdict=report.verdict, finding_kinds=sorted({f.kind for f in report.findings if f.severity != "ok"}),
        drifted_features=report.drifted_features, report_feature_spec_version=report.feature_spec_version,
        champion_feature_spec_version=report.feature_spec_version, rollback_version="1", running_trainings=0,
        last_retrain_requested_at=None, new_labelled_rows=100, labelled_since=WINDOW_START, now=now,
    )  # fmt: skip
    decision = decide_retraining(facts, load_retraining_policy(root / "retraining.yaml"))
    monitor = MonitorReport(
        dataset=DATASET,
        reference=ReferenceModel(
            model_name=model, alias="champion", version="2", run_id=None, snapshot_id="snapshot-1",
            feature_spec_version=report.feature_spec_version, interval_start=WINDOW_START - timedelta(days=90),
            interval_end=WINDOW_START - timedelta(days=1), rows=len(reference), profile_uri="s3://factory-data/p.npz",
        ),
        interval_start=WINDOW_START, interval_end=WINDOW_END, window_rows=report.window_rows,
        served_versions={"2": report.window_rows}, verdict=report.verdict, summary=report.summary,
        drifted_features=report.drifted_features, signals=signals_of(report),
        serving_skew=ServingSkew(rows_compared=0, max_abs_diff=None), evidently_drifted_features=None,
        uris={"drift_report": uri["report"], "evidently_html": uri["html"]},
    )  # fmt: skip
    s3 = s3_client(stack.settings, stack.credentials)
    with tempfile.TemporaryDirectory() as tmp:
        html, _ = evidently_report(reference, window, FLIGHT_DRIFT_FEATURES, html_path=Path(tmp) / "e.html",
                                   sample_size=500)  # fmt: skip
        s3.put_object(Bucket=bucket, Key=keys.evidently_html, Body=html.read_bytes(), ContentType="text/html")
    alerts_record = {
        "alerts": [alert.model_dump(mode="json") for alert in alerts],
        "deliveries": [{"alert_key": a.key, "channel": "webhook", "status": "not_configured", "detail": "tests"}
                       for a in alerts],
    }  # fmt: skip
    for key, body in (
        (keys.drift_report, report.model_dump_json(indent=2)),
        (keys.monitor, monitor.model_dump_json(indent=2)),
        (keys.alerts, json.dumps(alerts_record, indent=2)),
        (keys.decision, decision.model_dump_json(indent=2)),
    ):
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json")
    return report.verdict, report.drifted_features, len(alerts), decision.outcome


def seed_view_state(stack: Stack, model: str) -> ViewState:
    runs = register_versions(stack, model, 3)
    for version, tags in GATE_TAGS.items():
        gate_version(stack, model, version, runs[version], tags)
    airflow = stack.airflow_client()
    try:
        airflow.wait_for_dag("factory_smoke")
        smoke_run = airflow.trigger("factory_smoke")
        airflow.set_run_state("factory_smoke", smoke_run, "failed")  # a real run to link to; nothing to execute
    finally:
        airflow.close()
    move_aliases(stack, model, runs, smoke_run)
    write_rollout(stack, model)
    verdict, drifted, alerts, decision = write_drift_window(stack, model)
    return ViewState(model, runs, smoke_run, verdict, drifted, alerts, decision)  # fmt: skip


# ----- fixtures -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def state(live_stack: Stack) -> ViewState:
    return seed_view_state(live_stack, f"view-test-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def api(live_stack: Stack) -> httpx.Client:
    """An HTTP client of the API server with the admin's bearer token (what the UI's cookie carries)."""
    url = live_stack.settings.airflow_url
    creds = live_stack.credentials
    token = httpx.post(
        f"{url}/auth/token", json={"username": creds.airflow_admin_user, "password": creds.airflow_admin_password}
    ).json()["access_token"]
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        yield client


# ----- (a) the JSON endpoint with an authenticated session --------------------------------------------------------
def test_json_shows_aliases_history_versions_rollout_traffic_drift_and_runs(api: httpx.Client, state: ViewState):
    response = api.get(f"/factory/api/models/{state.model}")
    assert response.status_code == 200, response.text
    view = response.json()

    holders = {holder["alias"]: holder["version"] for holder in view["aliases"]["holders"]}
    assert holders == {"champion": "2", "challenger": "3", "candidate": "3", "previous": "1"}
    assert view["aliases"]["in_sync"] is True and view["aliases"]["latest_seq"] == 8

    history = view["history"]["rows"]
    assert [row["seq"] for row in history] == list(range(8, 0, -1))
    assert history[0]["changes"] == ["challenger: v2 → v3"] and history[0]["details"] == {"approved_by": "admin"}
    promotion = next(row for row in history if row["seq"] == 6)
    assert promotion["changes"] == ["champion: v1 → v2", "previous: — → v1"]
    assert promotion["actor_link"]["href"] == f"/dags/factory_rollout/runs/{quote(ROLLOUT_RUN, safe='')}"
    assert promotion["report"]["href"] == f"/factory/reports/rollouts/{state.model}/{ROLLOUT_ID}/04-ramp.json"
    first_champion = next(row for row in history if row["seq"] == 3)
    assert first_champion["actor_link"] == {
        "label": f"factory_smoke / {state.smoke_run}",
        "href": f"/dags/factory_smoke/runs/{quote(state.smoke_run, safe='')}",
        "target": "top",
    }
    gated = next(row for row in history if row["seq"] == 5)
    assert gated["actor_link"]["href"].endswith("/tasks/promote_challenger")
    assert gated["report"]["href"] == f"/factory/models/{state.model}/versions/2/gate-report"

    versions = {row["version"]: row for row in view["versions"]["rows"]}
    assert list(versions) == ["3", "2", "1"] and view["versions"]["total"] == 3
    assert versions["2"]["roles"] == ["champion"] and versions["3"]["roles"] == ["challenger", "candidate"]
    assert versions["2"]["gate"]["decision"] == "passed" and versions["2"]["gate"]["champion_version"] == "1"
    assert versions["3"]["gate"]["approval"] == "approved by admin"
    assert versions["1"]["gate"] is None and versions["1"]["links"][-1]["label"] == "MLflow run"
    assert versions["2"]["trained_by"]["href"] == f"/dags/factory_train/runs/{quote(TRAINING_RUNS[1], safe='')}"
    assert [link["label"] for link in versions["2"]["links"]] == ["gate report", "model card", "MLflow run"]
    assert versions["2"]["rollout"]["outcome"] == "promoted" and versions["2"]["rollout"]["id"] == ROLLOUT_ID

    rollout = view["rollout"]
    assert (rollout["rollout_id"], rollout["kind"], rollout["status"]) == (ROLLOUT_ID, "rollout", "promoted")
    assert [step["step"] for step in rollout["steps"]] == [
        "plan", "deploy", "shadow", "canary", "ramp", "promote", "bake", "unload", "outcome",
    ]  # fmt: skip
    assert rollout["steps"][2]["passed"] is True and "guardrails held" in rollout["steps"][2]["verdict"]

    traffic = view["traffic"]
    assert traffic["has_routes"] and traffic["reason"] == "test: canary of v3 at 25 %"
    assert [(r["version"], r["percent"], r["share"], r["roles"]) for r in traffic["routes"]] == [
        (2, 75.0, 0.75, ["champion"]),
        (3, 25.0, 0.25, ["challenger", "candidate"]),
    ]

    drift = view["drift"]
    assert drift["window"] == "20260302T090000Z--20260302T100000Z" and drift["dataset"] == DATASET
    assert drift["verdict"] == state.drift_verdict and drift["drifted_features"] == state.drifted_features
    assert drift["reference"] == "champion v2" and {s["family"] for s in drift["signals"]} >= {"data", "prediction"}
    assert len(drift["alerts"]) == state.alerts > 0 and drift["decision"] == state.decision
    assert drift["missing"] == [] and drift["problems"] == {}
    assert drift["links"][0]["label"] == "Evidently report"

    smoke = [row for row in view["runs"]["rows"] if row["run_id"] == state.smoke_run]
    assert smoke and smoke[0]["state"] == "failed" and smoke[0]["dag_id"] == "factory_smoke"


def test_reports_and_artifacts_are_served_sandboxed(api: httpx.Client, state: ViewState):
    view = api.get(f"/factory/api/models/{state.model}").json()
    evidently = api.get(view["drift"]["links"][0]["href"])
    assert evidently.status_code == 200 and evidently.headers["content-type"].startswith("text/html")
    assert "sandbox" in evidently.headers["content-security-policy"]
    assert len(evidently.content) > 100_000  # the real Evidently report, scripts inline
    gate = api.get(f"/factory/models/{state.model}/versions/2/gate-report")
    assert gate.status_code == 200 and f"Gate report of {state.model} v2" in gate.text
    card = api.get(f"/factory/models/{state.model}/versions/3/model-card")
    assert card.status_code == 200 and f"Model card of {state.model} v3" in card.text
    record = api.get(f"/factory/reports/rollouts/{state.model}/{ROLLOUT_ID}/09-outcome.json")
    assert record.status_code == 200 and record.json()["action"] == "promoted"
    assert api.get(f"/factory/models/{state.model}/versions/1/gate-report").status_code == 404  # never gated
    assert api.get("/factory/reports/registry/alias-log/x/0000000001.json").status_code == 404  # not a report
    assert api.get("/factory/reports/monitoring/..%2Fsecrets.json").status_code == 404


def test_missing_pieces_render_as_none_yet_and_broken_records_as_named_errors(
    api: httpx.Client, live_stack: Stack, state: ViewState
):
    """A model with one version and nothing else: every panel says "none yet"; a window whose drift report is
    not a DriftReport names the file on its panel; the page is never a 500."""
    model = f"view-bare-{uuid.uuid4().hex[:8]}"
    register_versions(live_stack, model, 1)
    view = api.get(f"/factory/api/models/{model}").json()
    assert view["rollout"]["rollout_id"] is None and view["rollout"]["error"] is None
    assert view["drift"]["window"] is None and view["drift"]["error"] is None
    assert view["traffic"]["has_routes"] is False and view["traffic"]["error"] is None
    assert view["history"]["rows"] == [] and view["aliases"]["latest_seq"] is None
    page = api.get(f"/factory/models/{model}")
    assert page.status_code == 200 and page.text.count("none yet") >= 4

    from pipelines.monitoring.monitor import monitor_keys

    keys = monitor_keys(DATASET, model, WINDOW_START, WINDOW_END)
    s3 = s3_client(live_stack.settings, live_stack.credentials)
    s3.put_object(Bucket=live_stack.settings.data_bucket, Key=keys.drift_report, Body=b'{"verdict": "maybe"}')
    drift = api.get(f"/factory/api/models/{model}").json()["drift"]
    assert drift["verdict"] is None and "drift_report.json" in drift["problems"]
    assert "is not a DriftReport" in drift["problems"]["drift_report.json"]
    assert set(drift["missing"]) == {"monitor.json", "alerts.json", "retraining_decision.json", "evidently.html"}
    assert api.get(f"/factory/models/{model}").status_code == 200

    missing = api.get("/factory/api/models/no-such-model")
    assert missing.status_code == 404 and "no registered model" in missing.json()["detail"]


# ----- (b) anonymous requests ------------------------------------------------------------------------------------
def test_anonymous_requests_are_refused_or_sent_to_the_login_page(live_stack: Stack, state: ViewState):
    url = live_stack.settings.airflow_url
    with httpx.Client(base_url=url, timeout=30) as anonymous:
        page = anonymous.get(f"/factory/models/{state.model}", headers={"Accept": "text/html"})
        assert page.status_code == 303
        assert page.headers["location"].startswith("/auth/login?next=")  # the auth manager's login page
        assert quote(f"{url}/factory/models/{state.model}", safe="") in page.headers["location"]
        for path in (f"/factory/api/models/{state.model}", "/factory/api/models",
                     f"/factory/reports/rollouts/{state.model}/{ROLLOUT_ID}/09-outcome.json",
                     f"/factory/models/{state.model}/versions/2/gate-report"):  # fmt: skip
            refused = anonymous.get(path, headers={"Accept": "application/json"})
            assert refused.status_code in (401, 303), path
            assert state.model not in refused.text
        forged = anonymous.get("/factory/api/models", cookies={"_token": "not-a-jwt"})
        assert forged.status_code in (401, 403)
        assert anonymous.get("/factory/docs").status_code in (401, 404)


# ----- (c) in a real headless Chromium ---------------------------------------------------------------------------
@pytest.mark.browser
def test_the_view_in_headless_chromium(live_stack: Stack, state: ViewState, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url = live_stack.settings.airflow_url
    creds = live_stack.credentials
    with headless_chromium() as browser:
        # Log in on Airflow's login page, click "Factory" on the navigation bar (the view in the UI's frame), open
        # the model, save the screenshot: the steps that make docs/factory-view.png.
        shot = tmp_path / "factory-view.png"
        user, password = creds.airflow_admin_user, creds.airflow_admin_password
        assert capture_factory_view(browser, url, user, password, shot, model=state.model) == state.model
        assert shot.stat().st_size > 50_000
        assert f"/plugin/factory/factory/models/{state.model}" in browser.current_url  # the UI follows the frame

        browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe[title='Factory']"))
        cards = {c.get_attribute("data-alias"): c for c in browser.find_elements(By.CSS_SELECTOR, "#aliases .card")}
        assert cards["champion"].get_attribute("data-version") == "2" and "v2" in cards["champion"].text
        assert cards["challenger"].get_attribute("data-version") == "3" and "v3" in cards["challenger"].text
        assert cards["previous"].find_element(By.CLASS_NAME, "version").text == "v1"
        history = browser.find_elements(By.CSS_SELECTOR, "#history tr.history-row")
        assert [row.get_attribute("data-seq") for row in history] == [str(seq) for seq in range(8, 0, -1)]
        assert "champion: v1 → v2" in history[2].text
        assert browser.find_element(By.ID, "drift-verdict").text == state.drift_verdict
        assert browser.find_element(By.ID, "rollout-status").text == "promoted"
        assert "75%" in browser.find_element(By.CSS_SELECTOR, "#traffic .bar").text

        # A DAG run in the alias history opens as the Airflow UI's own page, not inside the frame.
        browser.find_element(By.CSS_SELECTOR, "#history tr[data-seq='3'] a[data-nav='top']").click()
        browser.switch_to.default_content()
        run_path = f"/dags/factory_smoke/runs/{quote(state.smoke_run, safe='')}"
        WebDriverWait(browser, 60).until(lambda b: b.current_url.startswith(f"{url}{run_path}"))

        # Opened directly (a bookmark, a link in an alert): the same page, without the UI around it.
        open_model_directly(browser, url, state.model)
        assert browser.find_element(By.CSS_SELECTOR, "#aliases .card[data-alias='champion']").text.count("v2")
        evidently = browser.find_element(By.LINK_TEXT, "Evidently report")
        evidently.click()
        WebDriverWait(browser, 60).until(lambda b: "/factory/reports/monitoring/" in b.current_url)
        WebDriverWait(browser, 60).until(lambda b: b.execute_script("return document.readyState") == "complete")
        browser.save_screenshot(str(tmp_path / "evidently.png"))
