"""Check a prediction request against the model's serving signature; pure, no I/O.

The body is JSON in one of two shapes, with one field per signature input (pipelines/export/signature.py):

    {"rows": [{"dep_delay": 3.0, "carrier": "UA", ...}, ...]}          one object per row
    {"columns": {"dep_delay": [3.0, ...], "carrier": ["UA", ...], ...}}  one list per input, equal lengths

plus an optional "routing_key" (string: requests with the same key reach the same model version). FP32 inputs
take JSON numbers, BYTES inputs take strings; null is a missing value (NaN for FP32, "" for BYTES, the encodings
training used). Each per-row value is a scalar when the input's dims are [1], else a (nested) list of exactly
that shape. Anything else is refused with a `RequestError` that names the field, the row and the problem;
nothing is coerced silently (a "3" for a number, true for a number, 7 for a category are errors), because a
silently coerced feature is a wrong prediction nobody notices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.export.signature import ModelSignature

FP32_MAX = 3.4028234663852886e38


class RequestError(ValueError):
    """The request is unusable; `status` is the HTTP code, `field` the offending field (None for the body)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class InputSpec:
    name: str
    dtype: str  # "FP32" | "BYTES"
    dims: tuple[int, ...]

    @property
    def per_row(self) -> int:
        return math.prod(self.dims)


@dataclass(frozen=True, slots=True)
class OutputSpec:
    name: str
    dtype: str
    dims: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A valid request: per input, the flat row-major values (floats or str), and the row count."""

    columns: dict[str, list[Any]]
    rows: int
    routing_key: str | None


@dataclass(frozen=True)
class InputSchema:
    """The validation view of a signature, built once per model and reused for every request."""

    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    max_rows: int

    @classmethod
    def from_signature(cls, signature: ModelSignature, max_rows: int) -> InputSchema:
        if max_rows < 1:
            raise ValueError(f"max_rows must be positive, got {max_rows}")
        return cls(
            inputs=tuple(InputSpec(t.name, t.dtype, tuple(t.dims)) for t in signature.inputs),
            outputs=tuple(OutputSpec(t.name, t.dtype, tuple(t.dims)) for t in signature.outputs),
            max_rows=max_rows,
        )

    @property
    def names(self) -> frozenset[str]:
        return frozenset(spec.name for spec in self.inputs)

    def parse(self, body: object) -> ParsedRequest:
        """Validate a decoded JSON body; raises RequestError (400/413/422) naming what is wrong."""
        if not isinstance(body, dict):
            raise RequestError(400, f"body must be a JSON object, got {_json_type(body)}")
        unknown = sorted(set(body) - {"rows", "columns", "routing_key"})
        if unknown:
            raise RequestError(422, f"unknown top-level field(s) {unknown}; expected 'rows' or 'columns'", unknown[0])
        routing_key = body.get("routing_key")
        if routing_key is not None and not isinstance(routing_key, str):
            raise RequestError(422, f"routing_key must be a string, got {_json_type(routing_key)}", "routing_key")
        if ("rows" in body) == ("columns" in body):
            raise RequestError(422, "send exactly one of 'rows' (list of objects) or 'columns' (object of lists)")
        if "rows" in body:
            columns, rows = self._from_rows(body["rows"])
        else:
            columns, rows = self._from_columns(body["columns"])
        return ParsedRequest(columns, rows, routing_key)

    # ----- the two body shapes --------------------------------------------------------------------------------
    def _from_rows(self, rows: object) -> tuple[dict[str, list[Any]], int]:
        if not isinstance(rows, list):
            raise RequestError(422, f"'rows' must be a list of objects, got {_json_type(rows)}", "rows")
        self._check_count(len(rows), "rows")
        names = self.names
        columns: dict[str, list[Any]] = {spec.name: [] for spec in self.inputs}
        # (spec, column, FP32?, one value per row?): the common case (a float or a str in a [1]-shaped input)
        # is checked inline; everything else, errors included, goes through `_append`.
        plan = [(spec, columns[spec.name], spec.dtype == "FP32", spec.dims == (1,)) for spec in self.inputs]
        for index, row in enumerate(rows):
            if type(row) is not dict:
                raise RequestError(422, f"rows[{index}] must be an object, got {_json_type(row)}", "rows")
            if row.keys() != names:
                self._raise_field_mismatch(row.keys(), f"rows[{index}]")
            for spec, column, fp32, scalar in plan:
                value = row[spec.name]
                kind = type(value)
                plain = (kind is float and -FP32_MAX <= value <= FP32_MAX) if fp32 else kind is str
                if scalar and plain:
                    column.append(value)
                else:
                    _append(column, spec, value, index)
        return columns, len(rows)

    def _from_columns(self, given: object) -> tuple[dict[str, list[Any]], int]:
        if not isinstance(given, dict):
            raise RequestError(422, f"'columns' must be an object of lists, got {_json_type(given)}", "columns")
        if given.keys() != self.names:
            self._raise_field_mismatch(given.keys(), "columns")
        lengths: dict[str, int] = {}
        for spec in self.inputs:
            values = given[spec.name]
            if not isinstance(values, list):
                raise RequestError(
                    422, f"columns.{spec.name} must be a list (one value per row), got {_json_type(values)}", spec.name
                )
            lengths[spec.name] = len(values)
        counts = set(lengths.values())
        if len(counts) != 1:
            raise RequestError(422, f"columns have different lengths {lengths}", min(lengths, key=lengths.__getitem__))
        rows = counts.pop()
        self._check_count(rows, "columns")
        columns: dict[str, list[Any]] = {}
        for spec in self.inputs:
            column: list[Any] = []
            for index, value in enumerate(given[spec.name]):
                _append(column, spec, value, index)
            columns[spec.name] = column
        return columns, rows

    def _check_count(self, rows: int, field: str) -> None:
        if rows == 0:
            raise RequestError(422, f"'{field}' is empty: send at least one row", field)
        if rows > self.max_rows:
            raise RequestError(413, f"{rows} rows exceed the model's limit of {self.max_rows} per request", field)

    def _raise_field_mismatch(self, keys: Any, where: str) -> None:
        missing = sorted(self.names - set(keys))
        if missing:
            raise RequestError(422, f"{where} lacks field {missing[0]!r} (missing: {missing})", missing[0])
        extra = sorted(set(keys) - self.names)
        raise RequestError(
            422, f"{where} has field {extra[0]!r} that the model does not take (extra: {extra})", extra[0]
        )


def _append(column: list[Any], spec: InputSpec, value: object, row: int) -> None:
    """Append one row's value(s) of `spec` to `column`, checking shape and dtype."""
    if spec.dims == (1,):
        if type(value) is list:  # a one-element list is the same [1]-shaped row
            if len(value) != 1:
                raise _shape_error(spec, row, f"a list of {len(value)}")
            value = value[0]
        column.append(_scalar(spec, value, row))
        return
    flat: list[Any] = []
    _flatten(spec, value, spec.dims, row, flat)
    column.extend(flat)


def _flatten(spec: InputSpec, value: object, dims: Sequence[int], row: int, out: list[Any]) -> None:
    if not dims:
        if type(value) is list:
            raise _shape_error(spec, row, "a deeper nested list")
        out.append(_scalar(spec, value, row))
        return
    if type(value) is not list or len(value) != dims[0]:
        got = f"a list of {len(value)}" if type(value) is list else _json_type(value)
        raise _shape_error(spec, row, got)
    for item in value:
        _flatten(spec, item, dims[1:], row, out)


def _scalar(spec: InputSpec, value: object, row: int) -> Any:
    kind = type(value)
    if spec.dtype == "FP32":
        if kind is float or kind is int:
            if abs(value) > FP32_MAX:  # type: ignore[arg-type]
                raise RequestError(
                    422, f"field {spec.name!r} (row {row}): {value} is outside the FP32 range", spec.name
                )
            return float(value)  # type: ignore[arg-type]
        if value is None:
            return math.nan
        if kind is list:
            raise _shape_error(spec, row, "a list")
        raise RequestError(
            422, f"field {spec.name!r} (row {row}) must be a number (FP32) or null, got {_json_type(value)}", spec.name
        )
    if kind is str:
        return value
    if value is None:
        return ""
    if kind is list:
        raise _shape_error(spec, row, "a list")
    raise RequestError(
        422, f"field {spec.name!r} (row {row}) must be a string (BYTES) or null, got {_json_type(value)}", spec.name
    )


def _shape_error(spec: InputSpec, row: int, got: str) -> RequestError:
    expected = "a single value" if spec.dims == (1,) else f"a list of shape {list(spec.dims)}"
    return RequestError(
        422, f"field {spec.name!r} (row {row}) has the wrong shape: expected {expected}, got {got}", spec.name
    )


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def signature_from_triton_config(config: Mapping[str, Any], model: str) -> tuple[ModelSignature, int]:
    """(signature, max_batch_size) from Triton's JSON model config (GET /v2/models/<model>/config).

    The config.pbtxt Triton serves was generated from the signature (serving/model_repository/config.py), so
    reading it back gives the contract the served versions share; a dtype outside the factory's contract is
    an error naming the tensor.
    """
    dtypes = {"TYPE_FP32": "FP32", "TYPE_STRING": "BYTES"}

    def tensors(key: str) -> list[dict[str, Any]]:
        result = []
        for tensor in config.get(key, []):
            dtype = dtypes.get(tensor.get("data_type"))
            if dtype is None:
                raise ValueError(f"{model}: {key} {tensor.get('name')!r} has type {tensor.get('data_type')}, "
                                 "outside the factory contract (FP32, BYTES)")  # fmt: skip
            result.append({"name": tensor["name"], "dtype": dtype, "dims": [int(d) for d in tensor.get("dims", [])]})
        return result

    signature = ModelSignature(inputs=tensors("input"), outputs=tensors("output"))
    if not signature.inputs or not signature.outputs:
        raise ValueError(f"{model}: Triton config declares no inputs or no outputs")
    max_batch_size = int(config.get("max_batch_size", 0))
    if max_batch_size < 1:
        raise ValueError(f"{model}: max_batch_size is {max_batch_size}; the gateway needs a batching model (>= 1)")
    return signature, max_batch_size
