"""The business signal family (pure): the dataset spec's `business_proxy` on a window of served traffic vs
on the reference model's training rows, and the alert it raises.

Why a proxy: the business number people feel (e.g. the share of delayed flights) needs labels, which arrive
late (factory_feedback computes it then). A proxy from features and the model's score (expected delay cost per
1,000 flights) moves the hour the traffic moves, so a change is visible before the outcome is known.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Literal

import pandas as pd

from pipelines.config_loading import StrictModel
from pipelines.datasets.spec import BusinessProxySpec
from pipelines.monitoring.alerts import Alert, AlertPolicy, AlertType, make_alert


class BusinessSignal(StrictModel):
    family: Literal["business"] = "business"
    name: str
    status: Literal["ok", "warn", "alert", "insufficient_data", "not_evaluated"]
    summary: str
    value: float | None
    reference_value: float | None
    relative_change: float | None


def proxy_value(proxy: BusinessProxySpec, frame: pd.DataFrame) -> float:
    """The proxy on one frame: the spec's aggregate times its scale (KeyError naming missing columns)."""
    return proxy.evaluate(frame) * proxy.scale


def business_signal(
    proxy: BusinessProxySpec, window: pd.DataFrame, reference: pd.DataFrame, *, min_rows: int
) -> BusinessSignal:
    """The proxy on the window vs the reference rows; the relative change decides the level."""
    if len(window) < min_rows:
        return BusinessSignal(
            name=proxy.name, status="insufficient_data", summary=f"{len(window)} rows, fewer than {min_rows}",
            value=None, reference_value=None, relative_change=None,
        )  # fmt: skip
    try:
        value, base = proxy_value(proxy, window), proxy_value(proxy, reference)
    except KeyError as error:  # e.g. no score: the window could not be scored
        return BusinessSignal(name=proxy.name, status="not_evaluated", summary=str(error), value=None,
                              reference_value=None, relative_change=None)  # fmt: skip
    change = (value - base) / abs(base) if base and math.isfinite(base) else None
    size = abs(change) if change is not None else 0.0
    status = "alert" if size >= proxy.alert_relative_change else "warn" if size >= proxy.warn_relative_change else "ok"
    shown = "n/a" if change is None else f"{change:+.1%}"
    summary = f"{proxy.name} {value:.4g} vs {base:.4g} on the reference ({shown})"
    return BusinessSignal(name=proxy.name, status=status, summary=summary, value=value, reference_value=base,
                          relative_change=change)  # fmt: skip


def business_alerts(
    signal: BusinessSignal, policy: AlertPolicy, *, scope: str, report_uri: str, raised_at: datetime
) -> list[Alert]:
    if signal.status not in ("warn", "alert"):
        return []
    return [
        make_alert(
            policy,
            AlertType.BUSINESS_METRIC,
            level=signal.status,
            scope=scope,
            title=f"business metric {signal.name} on {scope}",
            summary=signal.summary,
            report_uri=report_uri,
            raised_at=raised_at,
            details=signal.model_dump(mode="json"),
        )
    ]
