"""The inference log as the monitor reads it: the gateway's key layout, window selection, the window frame; and
the monitor's S3 layout, window resolution, signal families and serving skew.

The alignment test writes records with the gateway's own sampler (serving/gateway/sampling.py) to a directory
and reads them back through the monitor's reader: if either side changes the layout or schema, it fails here.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.features import FeatureSpec
from pipelines.monitoring.inference_log import (
    InferenceLogError,
    date_prefixes,
    decode_parquet,
    encode_parquet,
    logged_rows,
    object_key,
    objects_in_window,
    parse_object_key,
    window_frame,
)
from pipelines.monitoring.monitor import (
    decision_log_key,
    last_request_time,
    monitor_keys,
    profile_key,
    request_log_key,
    resolve_window,
    serving_skew,
    signals_of,
    window_id,
)
from pipelines.monitoring.policy import Severity
from pipelines.monitoring.report import DriftReport, FeatureDrift, Finding

SPEC = FeatureSpec(numeric=["temp", "distance"], categorical=["carrier", "origin"])
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
END = START + timedelta(hours=1)


def features(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "temp": rng.normal(40, 10, rows),
            "distance": rng.integers(100, 2500, rows).astype(float),
            "carrier": rng.choice(["UA", "DL", "B6"], rows),
            "origin": rng.choice(["EWR", "JFK", "LGA"], rows),
        }
    )


# ----------------------------------------------------------------------------------------------- layout
def test_object_keys_round_trip_and_strays_are_ignored() -> None:
    flushed = datetime(2026, 3, 1, 9, 59, 58, tzinfo=UTC)
    key = object_key("gateway-samples", "flights-hgb", flushed, "r1", 7)
    assert key == "gateway-samples/flights-hgb/predictions/date=2026-03-01/095958-r1-000007.parquet"
    parsed = parse_object_key(key)
    assert parsed is not None
    assert (parsed.model, parsed.kind, parsed.flushed_at, parsed.replica, parsed.seq) == (
        "flights-hgb", "predictions", flushed, "r1", 7
    )  # fmt: skip
    for stray in (
        "gateway-samples/flights-hgb/predictions/README.md",
        "x/m/predictions/date=2026-13-01/000000-r-1.parquet",
    ):
        assert parse_object_key(stray) is None


def test_date_partitions_cover_the_flush_slack_across_midnight() -> None:
    start = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
    prefixes = date_prefixes("gateway-samples/", "m", start, start + timedelta(hours=1))
    assert prefixes == [
        "gateway-samples/m/predictions/date=2026-03-01/",
        "gateway-samples/m/predictions/date=2026-03-02/",
    ]
    assert len(date_prefixes("p", "m", START, END)) == 1
    with pytest.raises(ValueError, match="not before"):
        date_prefixes("p", "m", END, START)
    with pytest.raises(ValueError, match="timezone"):
        date_prefixes("p", "m", datetime(2026, 3, 1), END)


def test_objects_in_window_take_the_flush_slack_and_skip_shadow_batches() -> None:
    def key(minute: int, kind: str = "predictions") -> str:
        return object_key("p", "m", START + timedelta(minutes=minute), "r", minute + 100, kind)

    keys = [key(-1), key(0), key(59), key(74), key(75), key(30, "shadow"), "p/m/predictions/junk.txt"]
    chosen = [obj.key for obj in objects_in_window(keys, START, END)]
    assert chosen == [key(0), key(59), key(74)]  # [start, end + 15 min)


# ----------------------------------------------------------------------------------------------- window frame
def test_window_frame_keeps_rows_of_the_window_and_normalises_missing_categories() -> None:
    frame = features(6)
    frame.loc[0, "carrier"] = None
    stamps = [START - timedelta(seconds=1), START, START + timedelta(minutes=30), END - timedelta(seconds=1), END, END]
    logged = logged_rows(frame, SPEC, model="m", version=3, probabilities=np.linspace(0, 1, 6), timestamps=stamps)
    assert logged.loc[0, "carrier"] == ""  # what a client sends for a missing category
    window = window_frame([("k1", decode_parquet(encode_parquet(logged)))], SPEC, START, END)
    assert window.rows == 3
    assert list(window.inputs.columns) == SPEC.numeric + SPEC.categorical
    assert window.served_versions() == {"3": 3}
    assert window.served["probability"].tolist() == pytest.approx([0.2, 0.4, 0.6])
    pd.testing.assert_frame_equal(
        window.inputs.reset_index(drop=True), frame.iloc[1:4].reset_index(drop=True), check_dtype=False
    )


def test_missing_category_becomes_null_like_in_the_training_data() -> None:
    frame = features(3)
    frame.loc[1, "origin"] = None
    logged = logged_rows(frame, SPEC, model="m", version=1, probabilities=[0.1] * 3, timestamps=[START] * 3)
    window = window_frame([("k", logged)], SPEC, START, END)
    assert window.inputs["origin"].isna().tolist() == [False, True, False]


def test_unknown_inputs_stay_for_the_schema_check_and_missing_ones_stay_missing() -> None:
    logged = logged_rows(features(4), SPEC, model="m", version=1, probabilities=[0.5] * 4, timestamps=[START] * 4)
    logged = logged.drop(columns=["temp"]).assign(gate=["A1"] * 4)
    window = window_frame([("k", logged)], SPEC, START, END)
    assert "temp" not in window.inputs and "gate" in window.inputs
    assert not set(window.inputs.columns) & {"request_id", "timestamp", "version", "latency_ms", "probability"}


def test_empty_window_is_empty_not_an_error() -> None:
    logged = logged_rows(features(2), SPEC, model="m", version=1, probabilities=[0.5] * 2, timestamps=[END] * 2)
    for pieces in ([], [("k", logged)]):
        window = window_frame(pieces, SPEC, START, END)
        assert window.rows == 0
        assert list(window.inputs.columns) == SPEC.columns
        assert window.served_versions() == {}


def test_an_object_without_timestamps_is_named() -> None:
    with pytest.raises(InferenceLogError, match=r"logged object p/m/x\.parquet has no `timestamp` column"):
        window_frame([("p/m/x.parquet", features(2))], SPEC, START, END)


def test_logged_rows_refuses_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="3 feature rows, 2 probabilities"):
        logged_rows(features(3), SPEC, model="m", version=1, probabilities=[0.1, 0.2], timestamps=[START] * 3)


def test_the_gateways_own_sampler_writes_what_the_monitor_reads(tmp_path: Path) -> None:
    from serving.gateway.metrics import GatewayMetrics
    from serving.gateway.sampling import DirectorySink, PredictionRecord, RequestSampler

    frame = features(5)
    sampler = RequestSampler(
        DirectorySink(tmp_path), prefix="gateway-samples", share=1.0, replica_id="r1", metrics=GatewayMetrics()
    )
    now = datetime.now(UTC)
    for index, row in frame.iterrows():
        sampler.add_prediction(
            PredictionRecord(
                request_id=f"req-{index}", timestamp=now.timestamp(), model="flights-hgb", version=4, route="stable",
                pool="default", latency_ms=1.0, rows=1, inputs={name: [row[name]] for name in SPEC.columns},
                outputs={"probability": [0.25]},
            )
        )  # fmt: skip
    assert asyncio.run(sampler.flush()) == 5
    written = [path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*.parquet")]
    start = now.replace(minute=0, second=0, microsecond=0)
    chosen = objects_in_window(written, start, start + timedelta(hours=1))
    assert [obj.key for obj in chosen] == written
    assert all(obj.model == "flights-hgb" for obj in chosen)
    pieces = [(obj.key, decode_parquet((tmp_path / obj.key).read_bytes())) for obj in chosen]
    window = window_frame(pieces, SPEC, start, start + timedelta(hours=1))
    assert window.rows == 5
    assert window.served_versions() == {"4": 5}
    assert sorted(window.served["request_id"]) == [f"req-{i}" for i in range(5)]
    pd.testing.assert_frame_equal(window.inputs[SPEC.columns], frame, check_dtype=False)


# ----------------------------------------------------------------------------------------------- monitor layout
def test_monitor_layout_is_one_folder_per_model_and_window() -> None:
    keys = monitor_keys("flights", "flights-hgb", START, END)
    assert keys.prefix == "monitoring/flights/flights-hgb/drift/20260301T090000Z--20260301T100000Z"
    assert {keys.drift_report, keys.monitor, keys.evidently_html, keys.evidently_json, keys.alerts, keys.decision} == {
        f"{keys.prefix}/{name}"
        for name in ("drift_report.json", "monitor.json", "evidently.html", "evidently.json", "alerts.json",
                     "retraining_decision.json")
    }  # fmt: skip
    assert window_id(START.astimezone(), END) == window_id(START, END)
    assert profile_key("flights", "m", "3", "abc", 10) == "monitoring/flights/m/profiles/v3/abc-psi10.npz"
    assert decision_log_key("flights", "m", START, "run_1").endswith(
        "/retraining/decisions/20260301T090000Z-run_1.json"
    )


def test_last_request_time_ignores_the_runs_own_request() -> None:
    keys = [request_log_key("d", "m", START + timedelta(hours=h), f"run{h}") for h in (0, 5, 2)] + ["d/m/junk"]
    assert last_request_time(keys) == START + timedelta(hours=5)
    assert last_request_time(keys, excluding_run="run5") == START + timedelta(hours=2)
    assert last_request_time([]) is None


@pytest.mark.parametrize(
    ("params", "interval", "expected"),
    [
        (("2026-02-01T00:00:00Z", "2026-02-01T06:00:00+00:00"), (START, END), ("2026-02-01T00:00", "2026-02-01T06:00")),
        ((None, None), (START, END), ("2026-03-01T09:00", "2026-03-01T10:00")),
        ((None, None), (None, None), ("2026-03-01T11:00", "2026-03-01T12:00")),  # manual run: last whole hour
    ],
)
def test_window_comes_from_params_else_the_data_interval_else_the_last_hour(params, interval, expected) -> None:
    now = datetime(2026, 3, 1, 12, 34, tzinfo=UTC)
    start, end = resolve_window(*params, *interval, now)
    assert (start.strftime("%Y-%m-%dT%H:%M"), end.strftime("%Y-%m-%dT%H:%M")) == expected
    assert start.tzinfo is UTC


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (("2026-02-01T00:00:00Z", None), "give both bounds or neither"),
        (("2026-02-01T00:00:00", "2026-02-01T01:00:00Z"), "window_start: .* has no timezone"),
        (("yesterday", "2026-02-01T01:00:00Z"), "window_start: 'yesterday' is not an ISO 8601"),
        (("2026-02-01T01:00:00Z", "2026-02-01T01:00:00Z"), "is not before its end"),
    ],
)
def test_bad_window_params_are_named(params, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_window(*params, START, END, END)


# ----------------------------------------------------------------------------------------------- signals
def _drift_report(verdict: str, findings: list[Finding], prediction: FeatureDrift | None) -> DriftReport:
    return DriftReport(
        verdict=verdict, summary=f"{verdict}: test", window_rows=5000, reference_rows=9000, feature_spec_version="v",
        dataset_drift=False, drifted_share=0.0, drifted_features=[], features=[], schema_findings=[],
        prediction=prediction, findings=findings,
    )  # fmt: skip


SCORE = FeatureDrift(
    name="score", column_type="numeric", test="psi", statistic=0.05, threshold=0.2, drifted=False, psi=0.05,
    psi_level=Severity.OK, reference_null_share=0.0, current_null_share=0.0, null_surge=False,
)  # fmt: skip


def test_data_prediction_and_concept_are_named_separately() -> None:
    findings = [
        Finding(kind="feature_drift", severity=Severity.WARN, column="temp", message="temp drifted"),
        Finding(kind="missing_column", severity=Severity.ALERT, column="visib", message="visib missing"),
    ]
    signals = signals_of(_drift_report("alert", findings, SCORE))
    assert signals["data"].status == "alert"
    assert signals["data"].columns == ["temp", "visib"]
    assert signals["data"].finding_kinds == ["feature_drift", "missing_column"]
    assert signals["prediction"].status == "ok"
    assert "score PSI 0.050" in signals["prediction"].summary
    assert signals["concept"].status == "not_evaluated"
    drifted_score = SCORE.model_copy(update={"statistic": 0.4, "drifted": True})
    finding = Finding(kind="prediction_drift", severity=Severity.ALERT, column="score", message="score PSI 0.400")
    signals = signals_of(_drift_report("alert", [finding], drifted_score))
    assert (signals["data"].status, signals["prediction"].status) == ("ok", "alert")


def test_insufficient_data_and_missing_scores_are_not_a_verdict() -> None:
    idle = signals_of(_drift_report("insufficient_data", [], None))
    assert {signal.status for family, signal in idle.items() if family != "concept"} == {"insufficient_data"}
    assert signals_of(_drift_report("ok", [], None))["prediction"].status == "not_evaluated"


def test_serving_skew_compares_only_rows_the_reference_version_served() -> None:
    served = pd.DataFrame({"version": [3, 3, 4, 3], "probability": [0.10, 0.50, 0.90, np.nan]})
    rescored = np.array([0.10, 0.52, 0.10, 0.30])
    skew = serving_skew(served, rescored, "3")
    assert skew.rows_compared == 2
    assert skew.max_abs_diff == pytest.approx(0.02)
    assert serving_skew(served, rescored, "7").rows_compared == 0
    assert serving_skew(served.drop(columns="version"), rescored, "3").max_abs_diff is None


def test_airflows_pendulum_interval_bounds_work_like_stdlib_ones() -> None:
    import pendulum

    start, end = pendulum.datetime(2026, 3, 1, 9, tz="UTC"), pendulum.datetime(2026, 3, 1, 10, tz="UTC")
    key = object_key("p", "m", START + timedelta(minutes=20), "r", 1)
    assert [obj.key for obj in objects_in_window([key], start, end)] == [key]
    assert resolve_window(None, None, start, end, end) == (START, END)
