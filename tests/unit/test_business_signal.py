"""Business signal family: the spec's proxy on served traffic vs the reference, and its validation."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from pipelines.datasets.spec import DatasetSpecError, load_dataset_spec
from pipelines.monitoring.alerts import AlertType, load_alert_policy
from pipelines.monitoring.business import business_alerts, business_signal, proxy_value
from tests.unit.conftest import FLIGHTS_YAML


def scored(mean: float, rows: int = 2000) -> pd.DataFrame:
    return pd.DataFrame({"score": np.full(rows, mean), "distance": np.full(rows, 500.0)})


def test_the_flights_proxy_is_expected_cost_per_thousand_flights(flights_spec) -> None:
    proxy = flights_spec.business_proxy
    assert proxy is not None
    assert proxy_value(proxy, scored(0.2)) == pytest.approx(0.2 * 75 * 1000)


def test_levels_follow_the_relative_change(flights_spec) -> None:
    proxy = flights_spec.business_proxy
    reference = scored(0.20)
    assert business_signal(proxy, scored(0.21), reference, min_rows=1000).status == "ok"
    warn = business_signal(proxy, scored(0.24), reference, min_rows=1000)
    assert warn.status == "warn" and warn.relative_change == pytest.approx(0.2)
    alert = business_signal(proxy, scored(0.30), reference, min_rows=1000)
    assert alert.status == "alert" and "+50.0%" in alert.summary
    raised = business_alerts(alert, load_alert_policy(), scope="m", report_uri="s3://x", raised_at=datetime.now(UTC))
    assert raised[0].alert_type == AlertType.BUSINESS_METRIC and raised[0].runbook_url.endswith("#business-metric")


def test_small_or_unscored_windows_are_not_judged(flights_spec) -> None:
    proxy = flights_spec.business_proxy
    assert business_signal(proxy, scored(0.3, rows=10), scored(0.2), min_rows=1000).status == "insufficient_data"
    unscored = business_signal(proxy, scored(0.3).drop(columns=["score"]), scored(0.2), min_rows=1000)
    assert unscored.status == "not_evaluated" and "score" in unscored.summary


def test_a_proxy_on_an_unknown_column_is_refused(tmp_path) -> None:
    text = FLIGHTS_YAML.read_text().replace("expression: score * 75", "expression: arr_delay * 75")
    path = tmp_path / "flights.yaml"
    path.write_text(text)
    with pytest.raises(DatasetSpecError, match=r"business_proxy: \['arr_delay'\] are neither features nor 'score'"):
        load_dataset_spec(path)
