"""KServe v2 inference requests and responses with Triton's binary tensor extension; pure, no I/O.

Binary rather than JSON tensors because JSON cannot carry the NaN that encodes a missing numeric feature, and
because packing floats with `array` is cheaper than formatting them as text. Layout (Triton HTTP protocol,
binary data extension): a JSON header whose length is sent in `Inference-Header-Content-Length`, followed by
each input's raw bytes in header order. FP32 is little-endian float32; BYTES elements are a 4-byte
little-endian length followed by the UTF-8 bytes. Outputs are requested in binary too.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from serving.gateway.validation import InputSpec, OutputSpec

HEADER_LENGTH = "inference-header-content-length"
_LITTLE_ENDIAN = sys.byteorder == "little"
_LENGTH = struct.Struct("<I")
_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


class InferenceError(RuntimeError):
    """Triton refused or answered an unusable response; `status` is what the gateway returns."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class EncodedRequest:
    body: bytes
    header_length: int


def _fp32_bytes(values: Sequence[float]) -> bytes:
    packed = array("f", values)
    if not _LITTLE_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def _bytes_elements(values: Sequence[str]) -> bytes:
    parts = []
    for value in values:
        encoded = value.encode()
        parts.append(_LENGTH.pack(len(encoded)))
        parts.append(encoded)
    return b"".join(parts)


class RequestEncoder:
    """Encodes validated columns for one model's inputs and outputs; the JSON header is assembled from pieces
    prepared once (only the row count and the byte sizes change between requests)."""

    def __init__(self, inputs: Sequence[InputSpec], outputs: Sequence[OutputSpec]) -> None:
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self._heads = []
        for spec in self.inputs:
            dims = b"".join(b",%d" % dim for dim in spec.dims)
            self._heads.append(
                (
                    b'{"name":' + _json_encode(spec.name) + b',"shape":[',
                    dims + b'],"datatype":"' + spec.dtype.encode() + b'","parameters":{"binary_data_size":',
                    spec.dtype == "FP32",
                )
            )
        requested = [{"name": spec.name, "parameters": {"binary_data": True}} for spec in self.outputs]
        self._tail = b'],"outputs":' + _json_encode(requested) + b"}"

    def encode(self, columns: Mapping[str, Sequence[Any]], rows: int) -> EncodedRequest:
        """The body of POST /v2/models/<model>[/versions/<v>]/infer for validated `columns`."""
        parts = []
        blobs = []
        for spec, (head, middle, fp32) in zip(self.inputs, self._heads, strict=True):
            blob = _fp32_bytes(columns[spec.name]) if fp32 else _bytes_elements(columns[spec.name])
            parts.append(b"%s%d%s%d}}" % (head, rows, middle, len(blob)))
            blobs.append(blob)
        header = b'{"inputs":[' + b",".join(parts) + self._tail
        return EncodedRequest(header + b"".join(blobs), len(header))


def encode_request(
    inputs: Sequence[InputSpec], outputs: Sequence[OutputSpec], columns: Mapping[str, Sequence[Any]], rows: int
) -> EncodedRequest:
    """One-off form of `RequestEncoder(inputs, outputs).encode(columns, rows)`."""
    return RequestEncoder(inputs, outputs).encode(columns, rows)


def decode_response(body: bytes, header_length: int | None, outputs: Sequence[OutputSpec]) -> dict[str, list[Any]]:
    """Triton's response -> {output name: one value per row (scalar for dims [1], else a nested list)}."""
    try:
        header = _json_decode(body if header_length is None else body[:header_length])
    except msgspec.DecodeError as error:
        raise InferenceError(502, f"Triton answered an unreadable response: {error}") from None
    by_name = {tensor.get("name"): tensor for tensor in header.get("outputs", [])}
    offset = len(body) if header_length is None else header_length
    result: dict[str, list[Any]] = {}
    # Binary outputs follow the header in the order of the header's `outputs` list.
    for tensor in header.get("outputs", []):
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is None:
            values = tensor.get("data", [])
        else:
            values = _decode_binary(tensor, body[offset : offset + size])
            offset += size
        by_name[tensor["name"]] = {**tensor, "values": values}
    for spec in outputs:
        tensor = by_name.get(spec.name)
        if tensor is None:
            raise InferenceError(502, f"Triton's response lacks output {spec.name!r}")
        result[spec.name] = _per_row(tensor["values"], tensor.get("shape", []))
    return result


def _decode_binary(tensor: Mapping[str, Any], data: bytes) -> list[Any]:
    datatype = tensor.get("datatype")
    if datatype == "FP32":
        values = array("f")
        values.frombytes(data)
        if not _LITTLE_ENDIAN:
            values.byteswap()
        return values.tolist()
    if datatype == "BYTES":
        items, position = [], 0
        while position < len(data):
            (length,) = _LENGTH.unpack_from(data, position)
            position += 4
            items.append(data[position : position + length].decode(errors="replace"))
            position += length
        return items
    raise InferenceError(502, f"output {tensor.get('name')!r} has datatype {datatype}, which the gateway cannot read")


def _per_row(values: list[Any], shape: Sequence[int]) -> list[Any]:
    """Flat row-major values -> one entry per row: scalars when each row holds one value, else nested lists."""
    if len(shape) < 1:
        return values
    rows = shape[0]
    per_row = len(values) // rows if rows else 0
    if per_row == 1:
        return values
    inner = list(shape[1:])
    return [_nest(values[row * per_row : (row + 1) * per_row], inner) for row in range(rows)]


def _nest(values: list[Any], shape: list[int]) -> list[Any]:
    if len(shape) <= 1:
        return values
    step = len(values) // shape[0]
    return [_nest(values[index * step : (index + 1) * step], shape[1:]) for index in range(shape[0])]


def triton_error_message(body: bytes) -> str:
    """The `error` field of a Triton error response, or the raw text."""
    try:
        decoded = _json_decode(body)
        if isinstance(decoded, dict) and "error" in decoded:
            return str(decoded["error"])
    except msgspec.DecodeError:
        pass
    return body[:500].decode(errors="replace")
