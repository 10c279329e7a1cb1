"""`factory registry history <model>`: which version held which alias when, who moved it and why, in one call.

Reads the alias log (the registry's control point, see plugins/factory_providers/mlflow/aliases.py) with plain
S3 and MLflow clients of the local stack, so no Airflow is needed, and says whether MLflow's aliases are in
step with the log.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from factory.settings import PROJECT_ROOT
from factory.stack import Stack, s3_client
from pipelines.alias_log import ALIASES, AliasChange, AliasHolding, AliasMove, holdings

if TYPE_CHECKING:
    from factory_providers.mlflow.aliases import AliasRegistry


def alias_registry(stack: Stack) -> AliasRegistry:
    """The stack's alias registry on plain clients (plugins/ joins sys.path, as Airflow does for its plugins)."""
    plugins = str(PROJECT_ROOT / "plugins")
    if plugins not in sys.path:
        sys.path.insert(0, plugins)
    from factory_providers.mlflow.aliases import AliasRegistry
    from mlflow import MlflowClient

    settings = stack.settings
    return AliasRegistry(
        s3_client(settings, stack.credentials), MlflowClient(settings.mlflow_url), bucket=settings.data_bucket
    )


def print_history(stack: Stack, model: str, *, as_json: bool = False) -> int:
    registry = alias_registry(stack)
    entries = registry.alias_history(model)
    if not entries:
        print(f"no alias moves recorded for {model!r} (s3://{registry.bucket}/{registry.prefix}/{model}/)")
        return 1
    applied = _applied_seq(registry, model)
    if as_json:
        payload = {
            "model": model,
            "moves": [entry.model_dump(mode="json") for entry in entries],
            "holdings": [span.model_dump(mode="json") for span in holdings(entries)],
            "mlflow_applied_seq": applied,
        }
        print(json.dumps(payload, indent=2))
        return 0
    print("\n".join(format_history(model, entries, applied)))
    return 0


def format_history(model: str, entries: Sequence[AliasMove], applied_seq: int | None) -> list[str]:
    """The moves in order, then the holdings (version x alias x time span), then the state now."""
    lines = [f"{model}: {len(entries)} alias move(s)", "", f"{'seq':>4}  {'at (UTC)':<19}  {'moves':<40}  actor"]
    for entry in entries:
        moves = "; ".join(_change_text(change) for change in entry.changes)
        lines.append(f"{entry.seq:>4}  {_time(entry.at)}  {moves:<40}  {entry.actor}")
        lines.append(f"{'':>4}  {'':<19}  why: {entry.reason}")
        if entry.report_uri:
            lines.append(f"{'':>4}  {'':<19}  report: {entry.report_uri}")
        if entry.details:
            lines.append(f"{'':>4}  {'':<19}  " + ", ".join(f"{k}: {v}" for k, v in sorted(entry.details.items())))
    lines += ["", "Which version held which alias when:"]
    for span in holdings(entries):
        lines.append(_holding_text(span))
    now = entries[-1].aliases
    state = " ".join(f"{alias}=v{now[alias]}" for alias in ALIASES if alias in now) or "no alias held"
    last = entries[-1].seq
    if applied_seq == last:
        sync = f"MLflow aliases applied up to record {applied_seq} (in step)"
    else:
        sync = f"MLflow aliases applied up to record {applied_seq}, the log is at {last}: a move or sync heals"
    lines += ["", f"Now: {state}", sync]
    return lines


def _applied_seq(registry: AliasRegistry, model: str) -> int | None:
    from factory_providers.mlflow.aliases import APPLIED_SEQ_TAG
    from mlflow.exceptions import MlflowException

    try:
        tag = registry.mlflow.get_registered_model(model).tags.get(APPLIED_SEQ_TAG)
    except MlflowException:
        return None
    return int(tag) if tag and tag.isdigit() else None


def _change_text(change: AliasChange) -> str:
    def name(version: str | None) -> str:
        return "-" if version is None else f"v{version}"

    return f"{change.alias}: {name(change.from_version)} -> {name(change.to_version)}"


def _holding_text(span: AliasHolding) -> str:
    until = "now" if span.until is None else _time(span.until)
    records = f"records {span.since_seq}-{span.until_seq}" if span.until_seq else f"record {span.since_seq}-"
    return f"  {span.alias:<10} v{span.version:<5} {_time(span.since)} -> {until:<19}  ({records})"


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")
