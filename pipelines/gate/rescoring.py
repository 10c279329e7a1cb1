"""Champion and challenger as the gate sees them: each registered ONNX artifact scored on the same rows.

The champion's quality is never taken from numbers remembered in its old run: those were measured on another
window, by possibly other code. Its registered artifact (the bytes that serve traffic) is scored on the
challenger's evaluation rows, in the same process and with the same runtime as the challenger, and both
models' single-row latency is measured side by side, so every difference in the report is the models'.

Kept apart from `decision` (which is pure arithmetic on scores) because this imports onnxruntime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from google.protobuf.message import DecodeError

from pipelines.evaluation.report import measure_onnx_latency
from pipelines.export.runtime import onnx_predict_proba
from pipelines.export.signature import ModelSignature, SignatureError, onnx_inputs_from_frame, read_onnx_signature
from pipelines.gate.decision import Candidate, GateInputError, ServingFacts, decide_promotion, require_same_signature
from pipelines.gate.policy import GatePolicy
from pipelines.gate.report import GateReport

LATENCY_ROWS = 1000  # as in evaluation: enough distinct rows that single-row timing is not one cached input


class ModelArtifactError(GateInputError):
    """A registered version's model artifact is missing or is not a usable ONNX model: nothing is promoted."""


@dataclass(frozen=True)
class RegisteredModel:
    """One registered version's ONNX bytes (None: the registry has no model file for it) and its name."""

    ref: str  # "flights-hgb v3", for messages
    onnx_model: bytes | None


def judge_registered_models(
    rows: pd.DataFrame,
    *,
    label: str,
    slice_columns: Sequence[str],
    challenger: RegisteredModel,
    champion: RegisteredModel | None,
    policy: GatePolicy,
) -> GateReport:
    """Score both registered artifacts on `rows` (the challenger's test rows) and decide.

    `champion` None means there is none (first model). Raises ModelArtifactError for a missing or unreadable
    artifact and SignatureMismatchError when the champion's contract differs, before anything is scored.
    """
    if label not in rows:
        raise GateInputError(f"the evaluation rows have no label column {label!r}")
    if missing := [column for column in slice_columns if column not in rows]:
        raise GateInputError(f"the evaluation rows lack slice columns {missing}")
    if rows.empty:
        raise GateInputError("the evaluation rows are empty")
    challenger_signature = artifact_signature(challenger, role="challenger")
    champion_signature = None
    if champion is not None:
        champion_signature = artifact_signature(champion, role="champion")
        require_same_signature(challenger_signature, champion_signature)
    new = score_registered(challenger, challenger_signature, rows)
    old = (
        None if champion is None or champion_signature is None else score_registered(champion, champion_signature, rows)
    )
    return decide_promotion(
        rows[label].to_numpy(),
        new,
        old,
        {column: rows[column].to_numpy() for column in slice_columns},
        policy,
    )


def artifact_signature(model: RegisteredModel, *, role: str) -> ModelSignature:
    """The serving contract the artifact declares; a clear error if there is no artifact or it is not ONNX."""
    if model.onnx_model is None:
        raise ModelArtifactError(
            f"the {role} {model.ref} has no ONNX model artifact in the registry (model/model.onnx): it cannot be "
            "scored on the evaluation rows, so nothing is promoted"
        )
    try:
        return read_onnx_signature(model.onnx_model)
    except (SignatureError, DecodeError, ValueError) as error:
        raise ModelArtifactError(
            f"the {role} {model.ref}'s registered model artifact is not a usable ONNX model ({error}): "
            "nothing is promoted"
        ) from None


def score_registered(model: RegisteredModel, signature: ModelSignature, rows: pd.DataFrame) -> Candidate:
    """Scores on `rows` plus the artifact's own single-row latency and size, measured now."""
    onnx_model = model.onnx_model
    if onnx_model is None:  # checked by artifact_signature; kept for the type checker
        raise ModelArtifactError(f"{model.ref} has no ONNX model artifact")
    scores = onnx_predict_proba(onnx_model, rows)
    feeds = onnx_inputs_from_frame(rows.head(LATENCY_ROWS), signature)
    latency = measure_onnx_latency(onnx_model, feeds)
    serving = ServingFacts(
        p50_ms=latency.single_row_p50_ms, p99_ms=latency.single_row_p99_ms, size_bytes=len(onnx_model)
    )
    return Candidate(scores, serving, signature)
