"""The registry as a control point: compare-and-set alias moves with an audit log, mirrored into MLflow aliases.

MLflow has no compare-and-set on aliases (`set_registered_model_alias` overwrites), so the serialisation point
is elsewhere: an append-only log per model in S3 (`s3://factory-data/registry/alias-log/<model>/<seq>.json`).
A move reads the last record N, checks its preconditions against the state recorded there, and writes record
N+1 with a create-only PUT (`If-None-Match: *`). Exactly one writer can create N+1; a loser re-reads and
re-checks: if its expectation still holds (another alias moved) it tries N+2, otherwise it fails with
AliasConflictError and changes nothing. The record is the claim; the MLflow aliases are then set from the log
(idempotent, so a retry or `sync` re-applies them and a crash between the two steps heals on the next move).

SeaweedFS 4.48 honours `If-None-Match: *` on single-part PUTs under its per-object write lock (tested here
with racing threads and processes: one winner per round); records are small JSON, never multipart uploads.

Reading code uses `models:/<name>@<alias>` as usual; moving code goes through `AliasRegistry.move_alias`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipelines.alias_log import (
    ALIASES,
    UNCONDITIONAL,
    AliasConflictError,
    AliasHolding,
    AliasMove,
    AliasMoveError,
    Expected,
    apply_changes,
    check_log,
    check_version,
    holdings,
    log_key,
    log_prefix,
    plan_move,
    seq_of_key,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

DEFAULT_BUCKET = "factory-data"
LOG_PREFIX = "registry/alias-log"
# Registered-model tag naming the last log record applied to MLflow's aliases (lag shows as a smaller number).
APPLIED_SEQ_TAG = "factory.alias_log.seq"
_LOST_RACE_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


class AliasRegistry:
    """Alias moves of registered models: compare-and-set through the S3 log, then applied to MLflow.

    `s3` is a boto3 S3 client, `mlflow_client` an `mlflow.MlflowClient` of the tracking server; both plain
    clients, so the CLI and tests use it without Airflow. In tasks, use `AliasRegistry.connect()`.
    """

    def __init__(
        self,
        s3: Any,
        mlflow_client: MlflowClient,
        *,
        bucket: str = DEFAULT_BUCKET,
        prefix: str = LOG_PREFIX,
        max_attempts: int = 50,
    ) -> None:
        self._s3 = s3
        self._mlflow = mlflow_client
        self.bucket = bucket
        self.prefix = prefix
        self.max_attempts = max_attempts

    @classmethod
    @contextmanager
    def connect(
        cls, *, s3_conn_id: str = "factory_s3", mlflow_conn_id: str = "factory_mlflow", bucket: str = DEFAULT_BUCKET
    ) -> Iterator[AliasRegistry]:
        """A registry on the factory's Airflow Connections (hooks are built here, at run time)."""
        from factory_providers.mlflow.hooks import MlflowHook
        from factory_providers.s3.hooks import FactoryS3Hook

        with MlflowHook(mlflow_conn_id).tracking() as client:
            yield cls(FactoryS3Hook(s3_conn_id).get_conn(), client, bucket=bucket)

    @property
    def mlflow(self) -> MlflowClient:
        """The tracking client the aliases are applied with (the gate reads versions through it too)."""
        return self._mlflow

    # ----- reading ------------------------------------------------------------------------------------------
    def alias_history(self, model: str) -> list[AliasMove]:
        """Every move of `model`'s aliases, oldest first, checked for gaps and consistency."""
        entries = [self._read(key) for key in self._keys(model)]
        check_log(entries)
        return entries

    def timeline(self, model: str) -> list[AliasHolding]:
        """Which version held which alias from when until when (one listing of the log)."""
        return holdings(self.alias_history(model))

    def current(self, model: str) -> dict[str, str]:
        """The alias state the log says is true now (alias -> version)."""
        latest = self._latest(model)
        return {} if latest is None else dict(latest.aliases)

    # ----- moving -------------------------------------------------------------------------------------------
    def move_alias(
        self,
        model: str,
        alias: str,
        version: str,
        *,
        expected: Expected,
        actor: str,
        reason: str,
        report_uri: str | None = None,
        request_id: str | None = None,
        guards: Mapping[str, str | None] | None = None,
        details: Mapping[str, str] | None = None,
    ) -> AliasMove:
        """Move `alias` of `model` to `version` if it is held by `expected` (None: by nobody), and record it.

        Raises AliasConflictError if the log says otherwise (nothing is written), AliasMoveError for a move
        that can never be made. Returns the record of the move; if `version` already holds `alias`, the
        record that put it there. `request_id` (default: a fresh one) makes a retry of the same request
        return its first record instead of a conflict. Promotion to `champion` moves the old champion to
        `previous` in the same record.
        """
        version = str(version)
        request_id = request_id or uuid.uuid4().hex
        check_version(version)
        self._require_version_exists(model, version)
        for _ in range(self.max_attempts):
            latest = self._latest(model)
            state = {} if latest is None else dict(latest.aliases)
            try:
                changes = plan_move(state, alias, version, expected=expected, guards=guards)
            except AliasConflictError:
                if (earlier := self._find_request(model, request_id)) is not None:
                    self.sync(model)
                    return earlier
                raise
            if not changes:  # already there: report the record that put it there
                self.sync(model)
                return self._record_setting(model, alias, version)
            entry = AliasMove(
                model=model,
                seq=1 if latest is None else latest.seq + 1,
                at=datetime.now(UTC),
                actor=actor,
                reason=reason,
                report_uri=report_uri,
                request_id=request_id,
                details=dict(details or {}),
                changes=changes,
                aliases=apply_changes(state, changes),  # type: ignore[arg-type]
            )
            if self._claim(entry):
                self.sync(model)
                return entry
        raise AliasConflictError(
            f"could not record a move of {model}@{alias} after {self.max_attempts} attempts: the log is too busy"
        )

    def sync(self, model: str) -> AliasMove | None:
        """Make MLflow's aliases of `model` equal to the log's latest state (idempotent; safe to race).

        Every writer re-reads the log after applying, so the last one to finish applies the newest state.
        MLflow's alias write is read-then-insert, so two writers setting the same alias at once can make one
        of them fail on the unique key (SQL stores); that writer re-reads and tries again.
        """
        from mlflow.exceptions import MlflowException

        last_error: MlflowException | None = None
        for _ in range(self.max_attempts):
            latest = self._latest(model)
            if latest is None:
                return None
            try:
                self._apply_to_mlflow(model, latest)
            except MlflowException as error:  # lost a write race inside MLflow: re-read and re-apply
                last_error = error
                continue
            newest = self._latest(model)
            if newest is not None and newest.seq == latest.seq:
                return latest
        raise AliasConflictError(
            f"MLflow aliases of {model} could not catch up with the alias log"
            + (f" (last MLflow error: {last_error.message})" if last_error is not None else "")
        )

    def _apply_to_mlflow(self, model: str, latest: AliasMove) -> None:
        """Set MLflow's aliases of `model` to the state of record `latest` and tag the record applied."""
        present = dict(self._mlflow.get_registered_model(model).aliases)
        for alias in ALIASES:
            wanted = latest.aliases.get(alias)  # type: ignore[call-overload]
            if present.get(alias) == wanted:
                continue
            if wanted is None:
                self._mlflow.delete_registered_model_alias(model, alias)
            else:
                self._mlflow.set_registered_model_alias(model, alias, wanted)
        self._mlflow.set_registered_model_tag(model, APPLIED_SEQ_TAG, str(latest.seq))

    # ----- storage ------------------------------------------------------------------------------------------
    def _claim(self, entry: AliasMove) -> bool:
        """Create record `entry.seq`; False if another writer created it first (the only serialisation point)."""
        from botocore.exceptions import ClientError

        key = log_key(self.prefix, entry.model, entry.seq)
        try:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=entry.model_dump_json(indent=2).encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in _LOST_RACE_CODES or status in _LOST_RACE_CODES:
                return False
            raise
        return True

    def _keys(self, model: str) -> list[str]:
        prefix = log_prefix(self.prefix, model)
        keys: list[str] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents", []) if item["Key"].endswith(".json")]
        return sorted(keys, key=seq_of_key)

    def _latest(self, model: str) -> AliasMove | None:
        keys = self._keys(model)
        return self._read(keys[-1]) if keys else None

    def _read(self, key: str) -> AliasMove:
        body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return AliasMove.model_validate_json(body)

    def _find_request(self, model: str, request_id: str) -> AliasMove | None:
        """The record written by this request (a retry after a lost response, or a retried task)."""
        return next((entry for entry in reversed(self.alias_history(model)) if entry.request_id == request_id), None)

    def _record_setting(self, model: str, alias: str, version: str) -> AliasMove:
        for entry in reversed(self.alias_history(model)):
            change = entry.change_of(alias)
            if change is not None and change.to_version == version:
                return entry
        raise AliasConflictError(f"{model}@{alias} is at version {version} but no log record put it there")

    def _require_version_exists(self, model: str, version: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._mlflow.get_model_version(model, version)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise AliasMoveError(f"registered model {model!r} has no version {version}") from None
            raise


def record_registration(
    client: MlflowClient, model_name: str, alias: str, version: str, *, attempt_key: str, run_id: str
) -> AliasMove:
    """Point `alias` (`candidate`) at a version just registered, through the log.

    Unconditional: the newest registration is the candidate, whoever held it before; the move is still
    recorded. The attempt key makes a retried registration task land on its first record.
    """
    from factory_providers.s3.hooks import FactoryS3Hook

    return AliasRegistry(FactoryS3Hook().get_conn(), client).move_alias(
        model_name,
        alias,
        version,
        expected=UNCONDITIONAL,
        actor=f"airflow:{attempt_key}",
        reason=f"version {version} registered from MLflow run {run_id}",
        request_id=f"{attempt_key}/register",
    )


__all__ = ["AliasConflictError", "AliasMoveError", "AliasRegistry", "record_registration"]
