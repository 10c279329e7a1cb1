"""Loading a YAML config file into a pydantic model, with errors a person can act on.

Every config of the factory (dataset spec, training config, gate policy, drift policy) is read the same way:
parse the YAML, insist on a mapping at the top level, validate it against a strict model. Whatever goes wrong
is raised as the config's own error class, with a one-line message that names the file and each offending
field (`gate.yaml: invalid gate policy: changes[0].metric: Input should be ...`) instead of a yaml or
pydantic traceback. One loader keeps that promise identical across the configs; `StrictModel` is the base
their models share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

ConfigT = TypeVar("ConfigT")


class StrictModel(BaseModel):
    """Base of every config model: an unknown key is an error (a typo must not silently become a default),
    and a loaded config is immutable, so no stage can change what the next one reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Locate = Callable[[ErrorDetails], Sequence[str | int]]
"""Maps one pydantic problem to the field path the user wrote (a hook for discriminated-union tags)."""


def load_yaml_model(
    path: str | Path,
    schema: type[ConfigT] | TypeAdapter[ConfigT],
    error_cls: type[Exception],
    what: str,
    *,
    not_a_mapping: str | None = None,
    locate: Locate | None = None,
) -> ConfigT:
    """Read `path` and validate it against `schema` (a pydantic model class or a `TypeAdapter`).

    `what` names the config in messages ("gate policy"). `not_a_mapping` replaces the default
    "a <what> must be a mapping" sentence; `locate` is passed to `format_validation_error`.
    Raises `error_cls` for an unreadable file, invalid YAML, a non-mapping top level or invalid fields.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error_cls(f"{path}: cannot read {what}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise error_cls(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        sentence = not_a_mapping or f"a {what} must be a mapping"
        raise error_cls(f"{path}: {sentence}, got {type(raw).__name__}")
    adapter = schema if isinstance(schema, TypeAdapter) else TypeAdapter(schema)
    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        raise error_cls(f"{path}: invalid {what}: {format_validation_error(exc, locate=locate)}") from None


def format_validation_error(error: ValidationError, *, locate: Locate | None = None) -> str:
    """Every problem as `field: reason`, on one line; several are counted first ("2 problem(s): a; b")."""
    locate = locate or _as_written
    problems = [f"{field_path(locate(problem))}: {problem['msg']}" for problem in error.errors(include_url=False)]
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problem(s): " + "; ".join(problems)


def field_path(location: Sequence[str | int]) -> str:
    """('changes', 0, 'metric') -> 'changes[0].metric'; pydantic's '[key]' marker names a bad mapping key."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]":
            text += " (key)"
        else:
            text += f".{part}" if text else part
    return text or "<top level>"


def _as_written(problem: ErrorDetails) -> Sequence[str | int]:
    return problem["loc"]
