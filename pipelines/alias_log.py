"""The registry's alias log: every alias move of a model as an append-only sequence of records (pure logic).

MLflow 3 aliases (`candidate`, `challenger`, `champion`, `previous`) say which version holds which role *now*,
but MLflow keeps no history of them and offers no compare-and-set: two promotions racing each other would both
"win", the last write silently undoing the first. So the factory keeps the truth in a log of moves, one record
per move, numbered 1, 2, 3... The adapter (plugins/factory_providers/mlflow/aliases.py) writes record N with a
create-only PUT: exactly one writer can create N, which makes the log the serialisation point. Each record
carries the whole alias state after the move, so the current state is the last record, and the history of
which version held which alias when is the log read in order.

This module decides what a move changes and checks its preconditions; it does no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

AliasName = Literal["candidate", "challenger", "champion", "previous"]
ALIASES: tuple[AliasName, ...] = get_args(AliasName)
# `previous` is the champion that was replaced, kept for rollback: it only ever moves as part of a promotion.
DERIVED_ALIASES: frozenset[str] = frozenset({"previous"})
_VERSION = re.compile(r"^[1-9][0-9]*$")


class _Unconditional:
    """Sentinel for `expected`: move whatever holds the alias (used for `candidate`, where the newest wins)."""

    def __repr__(self) -> str:
        return "UNCONDITIONAL"


UNCONDITIONAL: Final = _Unconditional()
Expected = str | None | _Unconditional


class AliasMoveError(ValueError):
    """A move that can never be made (unknown alias, malformed version, a derived alias moved directly)."""


class AliasConflictError(RuntimeError):
    """The registry is not in the state the move expected: another move won. Nothing was changed."""


class AliasChange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    alias: AliasName
    from_version: str | None
    to_version: str | None


class AliasMove(BaseModel):
    """One record of the log: what moved, who moved it, when, why, and the whole alias state afterwards."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    seq: int = Field(ge=1)
    at: AwareDatetime
    actor: str = Field(min_length=1)  # e.g. "airflow:factory_train/<run id>/promote_challenger"
    reason: str = Field(min_length=1)
    report_uri: str | None = None  # the gate report that justified the move
    request_id: str = Field(min_length=1)  # makes a retried move recognisable as the same request
    details: dict[str, str] = Field(default_factory=dict)  # e.g. approved_by
    changes: list[AliasChange] = Field(min_length=1)
    aliases: dict[AliasName, str]  # state after this move

    def change_of(self, alias: str) -> AliasChange | None:
        return next((change for change in self.changes if change.alias == alias), None)


class AliasHolding(BaseModel):
    """One version holding one alias for a time span (`until` None: it still does)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alias: AliasName
    version: str
    since: AwareDatetime
    until: AwareDatetime | None
    since_seq: int
    until_seq: int | None
    actor: str
    reason: str
    report_uri: str | None


def check_version(version: str | None, what: str = "version") -> None:
    if version is not None and not _VERSION.match(str(version)):
        raise AliasMoveError(f"{what} {version!r} is not a model version number (1, 2, 3...)")


def check_alias(alias: str) -> None:
    if alias not in ALIASES:
        raise AliasMoveError(f"unknown alias {alias!r}: the registry manages {', '.join(ALIASES)}")


def plan_move(
    state: Mapping[str, str],
    alias: str,
    version: str,
    *,
    expected: Expected,
    guards: Mapping[str, str | None] | None = None,
) -> list[AliasChange]:
    """The changes that move `alias` to `version` from `state`, or AliasConflictError if a precondition fails.

    `expected` is the version the caller believes holds `alias` (None: nobody), or UNCONDITIONAL.
    `guards` are other aliases that must hold the given versions for the move to make sense (the gate
    compared against a champion; if the champion has changed since, its verdict is stale).
    Promoting a new champion moves the old one to `previous` in the same step. Moving an alias to the
    version that already holds it changes nothing (returns []).
    """
    check_alias(alias)
    if alias in DERIVED_ALIASES:
        raise AliasMoveError(f"{alias!r} moves only when a champion is replaced; it is not moved directly")
    check_version(version)
    if not isinstance(expected, _Unconditional):
        check_version(expected, "expected version")
    for name, guarded in (guards or {}).items():
        check_alias(name)
        check_version(guarded, f"guard version of {name}")
        if state.get(name) != guarded:
            raise AliasConflictError(
                f"{name} is held by {_holder(state.get(name))}, not {_holder(guarded)} as this move requires"
            )
    current = state.get(alias)
    if not isinstance(expected, _Unconditional) and current != expected:
        raise AliasConflictError(
            f"{alias} is held by {_holder(current)}, not {_holder(expected)} as expected: another move won"
        )
    if current == version:
        return []
    changes = [AliasChange(alias=alias, from_version=current, to_version=version)]  # type: ignore[arg-type]
    if alias == "champion" and current is not None:
        changes.append(AliasChange(alias="previous", from_version=state.get("previous"), to_version=current))
    return changes


def apply_changes(state: Mapping[str, str], changes: Sequence[AliasChange]) -> dict[str, str]:
    """The alias state after `changes` (an alias moved to None is removed)."""
    after = dict(state)
    for change in changes:
        if change.to_version is None:
            after.pop(change.alias, None)
        else:
            after[change.alias] = change.to_version
    return {alias: after[alias] for alias in ALIASES if alias in after}


def check_log(entries: Sequence[AliasMove]) -> None:
    """A log is gap-free from 1 and each record's state follows from its predecessor's (else it was tampered)."""
    state: dict[str, str] = {}
    for number, entry in enumerate(entries, start=1):
        if entry.seq != number:
            raise ValueError(f"alias log of {entry.model}: record {entry.seq} found where {number} was expected")
        for change in entry.changes:
            if state.get(change.alias) != change.from_version:
                raise ValueError(
                    f"alias log of {entry.model}: record {entry.seq} moves {change.alias} from "
                    f"{_holder(change.from_version)}, but the log had it at {_holder(state.get(change.alias))}"
                )
        state = apply_changes(state, entry.changes)
        if state != dict(entry.aliases):
            raise ValueError(f"alias log of {entry.model}: record {entry.seq} states {entry.aliases}, expected {state}")


def holdings(entries: Sequence[AliasMove]) -> list[AliasHolding]:
    """Which version held which alias, from when until when, in the order the holdings began."""
    open_spans: dict[str, tuple[str, AliasMove]] = {}
    spans: list[AliasHolding] = []

    def close(alias: str, until: AliasMove | None) -> None:
        version, began = open_spans.pop(alias)
        spans.append(
            AliasHolding(
                alias=alias,  # type: ignore[arg-type]
                version=version,
                since=began.at,
                until=None if until is None else until.at,
                since_seq=began.seq,
                until_seq=None if until is None else until.seq,
                actor=began.actor,
                reason=began.reason,
                report_uri=began.report_uri,
            )
        )

    for entry in entries:
        for change in entry.changes:
            if change.alias in open_spans:
                close(change.alias, entry)
            if change.to_version is not None:
                open_spans[change.alias] = (change.to_version, entry)
    for alias in list(open_spans):
        close(alias, None)
    return sorted(spans, key=lambda span: (span.since_seq, ALIASES.index(span.alias)))


def holder_at(entries: Sequence[AliasMove], alias: str, moment: datetime) -> str | None:
    """The version that held `alias` at `moment` (None: nobody), e.g. which model served an incident."""
    check_alias(alias)
    held: str | None = None
    for entry in entries:
        if entry.at > moment:
            break
        held = entry.aliases.get(alias)  # type: ignore[call-overload]
    return held


def log_key(prefix: str, model: str, seq: int) -> str:
    """Zero-padded, so the store lists records in log order."""
    return f"{log_prefix(prefix, model)}{seq:010d}.json"


def log_prefix(prefix: str, model: str) -> str:
    if not model or "/" in model or model.strip() != model:
        raise AliasMoveError(f"model name {model!r} cannot name an alias log (empty, '/', or surrounding spaces)")
    return f"{prefix.rstrip('/')}/{model}/"


def seq_of_key(key: str) -> int:
    name = key.rsplit("/", 1)[-1].removesuffix(".json")
    if not name.isdigit():
        raise ValueError(f"{key!r} is not an alias log record")
    return int(name)


def _holder(version: str | None) -> str:
    return "nobody" if version is None else f"version {version}"
