"""The gate against the registry: fetch both registered artifacts, decide, store the evidence, tag the version.

`gate_registered_version` is everything the `gate_candidate` task does with MLflow, so the DAG stays wiring and
the benchmark times the same code path. The champion is whoever the alias log says holds `champion` (the
log, not MLflow's alias, is the control point); its ONNX file is downloaded from the registry and re-scored on
the challenger's evaluation rows. The report (JSON + HTML) and the model card (Markdown + HTML) become
artifacts of the challenger's MLflow run, and the version is tagged with the verdict. A rejected version is
only tagged: it stays registered, with its report, for whoever asks later why it never served.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from pydantic import BaseModel

from factory_providers.mlflow.aliases import AliasRegistry
from pipelines.alias_log import AliasMove
from pipelines.assembly import TrainingSummary
from pipelines.evaluation.report import EvaluationReport
from pipelines.gate.card import ModelCardConfig, gated_model_card
from pipelines.gate.decision import GateInputError
from pipelines.gate.outcome import APPROVE, GateOutcome, error_tags, gate_tags, review_reasons
from pipelines.gate.policy import GatePolicy
from pipelines.gate.render import render_gate_report_html
from pipelines.gate.report import GateReport
from pipelines.gate.rescoring import ModelArtifactError, RegisteredModel, judge_registered_models
from pipelines.lineage import RunRecord
from pipelines.model_card import render_model_card_html, render_model_card_markdown

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

GATE_FOLDER, CARD_FOLDER = "gate", "model_card"
ONNX_FILE = "model.onnx"
RecordT = TypeVar("RecordT", bound=BaseModel)


def gate_registered_version(
    registry: AliasRegistry,
    *,
    model_name: str,
    version: str,
    rows: pd.DataFrame,
    label: str,
    slice_columns: Sequence[str],
    policy: GatePolicy,
    card: ModelCardConfig,
) -> tuple[GateOutcome, GateReport]:
    """Gate `model_name` v`version` on `rows` (its own test rows) against the current champion.

    Raises GateInputError subclasses (missing/unreadable artifact, other signature, missing critical slice)
    after tagging the version `gate.decision=error` with the reason; nothing is promoted here in any case.
    """
    client = registry.mlflow
    run_id = _run_of(client, model_name, version)
    state = registry.current(model_name)
    champion_version = state.get("champion")
    try:
        if champion_version == version:
            raise GateInputError(f"{model_name} v{version} is already the champion: there is nothing to gate")
        challenger = RegisteredModel(f"{model_name} v{version}", fetch_version_onnx(client, model_name, version))
        champion = None
        if champion_version is not None:
            onnx_model = fetch_version_onnx(client, model_name, champion_version)
            champion = RegisteredModel(f"{model_name} v{champion_version} (champion)", onnx_model)
        report = judge_registered_models(
            rows, label=label, slice_columns=slice_columns, challenger=challenger, champion=champion, policy=policy
        )
    except GateInputError as error:
        set_version_tags(client, model_name, version, error_tags(str(error)))
        raise
    tracking = client.tracking_uri
    run_url = run_page_url(tracking, client.get_run(run_id).info.experiment_id, run_id)
    card_inputs = gated_model_card(
        model_name=model_name,
        version=version,
        config=card,
        training=download_record(client, run_id, "training/training.json", TrainingSummary),
        evaluation=download_record(client, run_id, "evaluation/evaluation.json", EvaluationReport),
        record=download_record(client, run_id, "run_record.json", RunRecord),
        gate=report,
        run_url=run_url,
    )
    files = {
        f"{GATE_FOLDER}/gate_report.json": report.model_dump_json(indent=2),
        f"{GATE_FOLDER}/gate_report.html": render_gate_report_html(report),
        f"{CARD_FOLDER}/model_card.md": render_model_card_markdown(card_inputs),
        f"{CARD_FOLDER}/model_card.html": render_model_card_html(card_inputs),
    }
    for path, text in files.items():  # evidence first, verdict tags last: a tagged version has its report
        client.log_text(run_id, text, path)
    report_uri = f"runs:/{run_id}/{GATE_FOLDER}/gate_report.html"
    set_version_tags(
        client, model_name, version, gate_tags(report, report_uri=report_uri, champion_version=champion_version)
    )
    outcome = GateOutcome(
        model_name=model_name,
        version=version,
        run_id=run_id,
        decision=report.decision,
        summary=report.summary,
        policy_name=report.policy_name,
        policy_version=report.policy_version,
        first_model=report.first_model,
        rows=report.rows,
        review=review_reasons(report),
        champion_version=champion_version,
        challenger_before=state.get("challenger"),
        report_uri=report_uri,
        report_url=artifact_url(tracking, run_id, f"{GATE_FOLDER}/gate_report.html"),
        report_json_uri=f"runs:/{run_id}/{GATE_FOLDER}/gate_report.json",
        model_card_url=artifact_url(tracking, run_id, f"{CARD_FOLDER}/model_card.html"),
        run_url=run_url,
        approval_timeout_s=policy.approval.response_timeout_hours * 3600,
    )
    return outcome, report


def promote_to_challenger(
    registry: AliasRegistry,
    outcome: GateOutcome,
    *,
    approval: Mapping[str, Any] | None,
    actor: str,
    request_id: str,
) -> AliasMove:
    """Move `challenger` to the gated version, compare-and-set against the state the gate judged.

    The move expects the challenger the gate saw and guards the champion it compared against: if either
    changed while the gate ran or a human deliberated, the verdict is stale and AliasConflictError is raised
    with nothing moved. A rejected version, or one needing approval without an "Approve", is refused.
    """
    approved_by = None
    if outcome.decision == "reject":
        raise GateInputError(f"{outcome.ref} was rejected by the gate: it cannot be promoted")
    if outcome.decision == "needs_approval":
        chosen = list((approval or {}).get("chosen_options") or [])
        if chosen != [APPROVE]:
            raise GateInputError(f"{outcome.ref} needs approval and the answer was {chosen or 'none'}: not promoted")
        user = (approval or {}).get("responded_by_user") or {}
        approved_by = str(user.get("name") or user.get("id") or "unknown user")
    reason = f"gate {outcome.decision} (policy {outcome.policy_name}@{outcome.policy_version}): {outcome.summary}"
    if approved_by:
        reason += f" Approved by {approved_by}."
    return registry.move_alias(
        outcome.model_name,
        "challenger",
        outcome.version,
        expected=outcome.challenger_before,
        guards={"champion": outcome.champion_version},
        actor=actor,
        reason=reason,
        report_uri=outcome.report_uri,
        request_id=request_id,
        details={"approved_by": approved_by} if approved_by else {},
    )


def fetch_version_onnx(client: MlflowClient, model_name: str, version: str) -> bytes | None:
    """The registered version's ONNX bytes, through the registry's own download URI; None if it has none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        source = client.get_model_version_download_uri(model_name, version)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ModelArtifactError(f"registered model {model_name!r} has no version {version}") from None
        raise
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{source.rstrip('/')}/{ONNX_FILE}", dst_path=tmp, tracking_uri=client.tracking_uri
            )
        except (MlflowException, OSError) as error:
            if _is_missing(error):
                return None
            raise
        path = Path(local)
        return path.read_bytes() if path.is_file() else None


def download_record(client: MlflowClient, run_id: str, path: str, model: type[RecordT]) -> RecordT:
    """A JSON record of the run, validated; a clear error naming the run and file if it is missing."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(client.download_artifacts(run_id, path, tmp))
        except (MlflowException, OSError) as error:
            if _is_missing(error):
                raise GateInputError(f"run {run_id} has no {path}: the model card cannot be written") from None
            raise
        return model.model_validate_json(local.read_text())


def set_version_tags(client: MlflowClient, model_name: str, version: str, tags: Mapping[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)


def read_gate_report(client: MlflowClient, run_id: str) -> GateReport:
    return download_record(client, run_id, f"{GATE_FOLDER}/gate_report.json", GateReport)


def run_page_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def artifact_url(tracking_uri: str, run_id: str, path: str) -> str:
    """A direct link to one artifact through the tracking server (artifacts are proxied: no S3 keys needed)."""
    return f"{tracking_uri.rstrip('/')}/get-artifact?{urlencode({'path': path, 'run_uuid': run_id})}"


def _run_of(client: MlflowClient, model_name: str, version: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_model_version(model_name, version)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise GateInputError(f"registered model {model_name!r} has no version {version}") from None
        raise
    if not found.run_id:
        raise GateInputError(f"{model_name} v{version} was not registered from a run: it has no evidence to gate")
    return found.run_id


def _is_missing(error: Exception) -> bool:
    code = getattr(error, "error_code", "")
    text = str(error)
    return (
        code == "RESOURCE_DOES_NOT_EXIST"
        or isinstance(error, FileNotFoundError)
        or "404" in text
        or ("No such file" in text)
    )


__all__ = ["fetch_version_onnx", "gate_registered_version", "promote_to_challenger", "read_gate_report"]
