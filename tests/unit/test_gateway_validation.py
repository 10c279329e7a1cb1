"""Gateway request validation against the serving signature, and the KServe binary encoding (pure)."""

from __future__ import annotations

import json
import math
import struct

import pytest

from pipelines.export.signature import ModelSignature, TensorSpec, signature_for
from pipelines.features import FeatureSpec
from serving.gateway.kserve import InferenceError, decode_response, encode_request
from serving.gateway.validation import InputSchema, RequestError, signature_from_triton_config
from serving.model_repository.config import RepositoryConfig, build_model_config

SPEC = FeatureSpec(numeric=["dep_delay", "distance"], categorical=["carrier", "origin"])
SIGNATURE = signature_for(SPEC)
SCHEMA = InputSchema.from_signature(SIGNATURE, max_rows=4)
ROW = {"dep_delay": 3.0, "distance": 1_000, "carrier": "UA", "origin": "JFK"}


def refused(body: object) -> RequestError:
    with pytest.raises(RequestError) as caught:
        SCHEMA.parse(body)
    return caught.value


def test_rows_and_columns_give_the_same_columns() -> None:
    second = {**ROW, "dep_delay": None, "carrier": None}
    by_rows = SCHEMA.parse({"rows": [ROW, second]})
    by_columns = SCHEMA.parse({"columns": {name: [ROW[name], second[name]] for name in ROW}})

    for parsed in (by_rows, by_columns):
        assert parsed.rows == 2
        assert parsed.columns["distance"] == [1000.0, 1000.0]
        assert parsed.columns["carrier"] == ["UA", ""]  # null category -> the missing-category token
        assert parsed.columns["dep_delay"][0] == 3.0 and math.isnan(parsed.columns["dep_delay"][1])


def test_a_one_element_list_is_a_valid_single_value() -> None:
    parsed = SCHEMA.parse({"rows": [{**ROW, "distance": [5.5]}]})

    assert parsed.columns["distance"] == [5.5]


def test_routing_key_is_read_and_must_be_a_string() -> None:
    assert SCHEMA.parse({"rows": [ROW], "routing_key": "customer-7"}).routing_key == "customer-7"
    assert refused({"rows": [ROW], "routing_key": 7}).field == "routing_key"


@pytest.mark.parametrize(
    ("body", "status", "field", "message"),
    [
        ([ROW], 400, None, "must be a JSON object, got a list"),
        ({"rows": [ROW], "columns": {}}, 422, None, "exactly one of 'rows'"),
        ({}, 422, None, "exactly one of 'rows'"),
        ({"rows": [ROW], "extra": 1}, 422, "extra", "unknown top-level field"),
        ({"rows": ROW}, 422, "rows", "'rows' must be a list of objects, got an object"),
        ({"rows": []}, 422, "rows", "is empty"),
        ({"rows": [ROW] * 5}, 413, "rows", "5 rows exceed the model's limit of 4"),
        ({"rows": ["x"]}, 422, "rows", "rows[0] must be an object, got a string"),
        ({"rows": [{k: v for k, v in ROW.items() if k != "origin"}]}, 422, "origin", "rows[0] lacks field 'origin'"),
        ({"rows": [{**ROW, "arr_delay": 1.0}]}, 422, "arr_delay", "does not take"),
        ({"rows": [ROW, {**ROW, "dep_delay": "3"}]}, 422, "dep_delay",
         "(row 1) must be a number (FP32) or null, got a string"),
        ({"rows": [{**ROW, "dep_delay": True}]}, 422, "dep_delay", "got a boolean"),
        ({"rows": [{**ROW, "carrier": 7}]}, 422, "carrier", "must be a string (BYTES) or null, got a number"),
        ({"rows": [{**ROW, "distance": [1.0, 2.0]}]}, 422, "distance",
         "wrong shape: expected a single value, got a list of 2"),
        ({"rows": [{**ROW, "carrier": [["UA"]]}]}, 422, "carrier", "wrong shape"),
        ({"rows": [{**ROW, "distance": 1e39}]}, 422, "distance", "outside the FP32 range"),
        ({"columns": {**{k: [v] for k, v in ROW.items()}, "carrier": ["UA", "AA"]}}, 422, None, "different lengths"),
        ({"columns": {**{k: [v] for k, v in ROW.items()}, "carrier": "UA"}}, 422, "carrier", "must be a list"),
        ({"columns": {k: [v] for k, v in ROW.items() if k != "distance"}}, 422, "distance", "columns lacks field"),
        ({"columns": [1]}, 422, "columns", "'columns' must be an object of lists"),
    ],
)  # fmt: skip
def test_bad_requests_are_refused_naming_the_field(body: object, status: int, field: str | None, message: str) -> None:
    error = refused(body)

    assert error.status == status
    assert message in error.message
    if field is not None:
        assert error.field == field


def test_multi_value_inputs_need_their_exact_shape() -> None:
    signature = ModelSignature(
        inputs=[TensorSpec(name="embedding", dtype="FP32", dims=[3])],
        outputs=[TensorSpec(name="probability", dtype="FP32", dims=[1])],
    )
    schema = InputSchema.from_signature(signature, max_rows=8)

    assert schema.parse({"rows": [{"embedding": [1, 2, 3]}]}).columns["embedding"] == [1.0, 2.0, 3.0]
    with pytest.raises(RequestError, match="expected a list of shape \\[3\\], got a list of 2"):
        schema.parse({"rows": [{"embedding": [1, 2]}]})
    with pytest.raises(RequestError, match="got a number"):
        schema.parse({"rows": [{"embedding": 1}]})


def test_the_signature_is_read_back_from_the_generated_triton_config() -> None:
    """What the gateway reads from Triton is what the repository builder generated from the signature."""
    from google.protobuf import json_format

    config = build_model_config("flights", SIGNATURE, [1], "cpu-local", RepositoryConfig(max_batch_size=64))
    as_served = json.loads(json_format.MessageToJson(config, preserving_proto_field_name=True))

    signature, max_batch_size = signature_from_triton_config(as_served, "flights")

    assert signature == SIGNATURE
    assert max_batch_size == 64


def test_a_config_outside_the_contract_is_refused() -> None:
    config = {"max_batch_size": 8, "input": [{"name": "x", "data_type": "TYPE_INT64", "dims": [1]}],
              "output": [{"name": "p", "data_type": "TYPE_FP32", "dims": [1]}]}  # fmt: skip
    with pytest.raises(ValueError, match="'x' has type TYPE_INT64"):
        signature_from_triton_config(config, "m")
    with pytest.raises(ValueError, match="needs a batching model"):
        signature_from_triton_config({**config, "input": config["output"], "max_batch_size": 0}, "m")


# ----- KServe binary encoding ------------------------------------------------------------------------------------
def test_a_request_is_encoded_as_a_json_header_and_binary_tensors() -> None:
    parsed = SCHEMA.parse({"rows": [ROW, {**ROW, "dep_delay": None, "origin": "ÉWR"}]})

    encoded = encode_request(SCHEMA.inputs, SCHEMA.outputs, parsed.columns, parsed.rows)

    header = json.loads(encoded.body[: encoded.header_length])
    tensors = {tensor["name"]: tensor for tensor in header["inputs"]}
    assert [t["name"] for t in header["inputs"]] == ["dep_delay", "distance", "carrier", "origin"]
    assert tensors["dep_delay"]["shape"] == [2, 1] and tensors["dep_delay"]["datatype"] == "FP32"
    assert header["outputs"] == [{"name": "probability", "parameters": {"binary_data": True}}]
    data = encoded.body[encoded.header_length :]
    dep_delay = struct.unpack("<2f", data[:8])
    assert dep_delay[0] == 3.0 and math.isnan(dep_delay[1])  # NaN travels, which JSON tensors cannot do
    sizes = [tensor["parameters"]["binary_data_size"] for tensor in header["inputs"]]
    origin = data[sum(sizes[:3]) :]
    assert origin == struct.pack("<I", 3) + b"JFK" + struct.pack("<I", 4) + "ÉWR".encode()
    assert len(data) == sum(sizes)


def test_a_binary_response_is_decoded_row_by_row() -> None:
    values = struct.pack("<3f", 0.25, 0.5, 0.75)
    output = {"name": "probability", "datatype": "FP32", "shape": [3, 1], "parameters": {"binary_data_size": 12}}
    header = json.dumps({"model_name": "m", "outputs": [output]}).encode()

    outputs = decode_response(header + values, len(header), SCHEMA.outputs)

    assert outputs == {"probability": [0.25, 0.5, 0.75]}


def test_a_json_response_and_a_missing_output_are_handled() -> None:
    body = json.dumps({"outputs": [{"name": "probability", "datatype": "FP32", "shape": [2, 1], "data": [0.1, 0.2]}]})

    assert decode_response(body.encode(), None, SCHEMA.outputs) == {"probability": [0.1, 0.2]}
    with pytest.raises(InferenceError, match="lacks output 'probability'"):
        decode_response(b'{"outputs": []}', None, SCHEMA.outputs)
    with pytest.raises(InferenceError, match="unreadable"):
        decode_response(b"<html>", None, SCHEMA.outputs)
