"""The protobuf face's tensors: ``ModelInferRequest`` to arrays exactly as the HTTP face's binary
extension gives them, outputs to ``ModelInferResponse`` bit for bit, every problem a
``ServiceError`` naming its field."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pytest
import torch

from app.core.errors import InvalidRequest, ServiceError, TooLarge
from app.core.limits import MAX_PARAM_STRING, TensorLimits
from app.protocols.oip.grpc.contents import FIELD_OF
from app.protocols.oip.grpc.infer import (
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    Parameters,
    decode_infer_request,
    encode_infer_response,
    model_named,
    serialize_infer_response,
)
from app.protocols.oip.grpc.messages import InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse
from app.protocols.oip.grpc.wire import split_raw_contents
from app.protocols.oip.inference import OutputTensor
from app.protocols.oip.tensors import DATATYPES, from_bytes

LIMITS = TensorLimits(max_elements=1000, max_rank=4)
MAX_TOTAL = 1500
Tensor = ModelInferRequest.InferInputTensor

WIRE: dict[str, str] = {
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "BF16": "<u2",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
}
FLOAT_EDGES = [0.0, -0.0, math.inf, -math.inf, math.nan, 1.5, -2.25, 3e-41, 1e-300, -65504.0]


def sample(datatype: str) -> np.ndarray:
    """Values of ``datatype`` as they lie on the wire (BF16: its bits), with its extremes."""
    wire = np.dtype(WIRE[datatype])
    if datatype == "BF16":
        bits = torch.tensor([0.0, -0.0, math.inf, -math.inf, 1.5, -2.25, 3e38, 1e-40]).to(torch.bfloat16)
        return bits.view(torch.int16).numpy().view(np.uint16).astype(wire)
    if wire.kind == "f":
        with np.errstate(over="ignore"):
            return np.array(FLOAT_EDGES, dtype=np.float64).astype(wire)
    info = np.iinfo(wire)
    top = min(int(info.max), int(np.iinfo(np.int64).max))  # UINT64 past int64 is refused
    return np.array([info.min, 0, 1, top, top - 1, max(int(info.min), -7)], dtype=wire)


def decode(request: ModelInferRequest) -> Any:
    return decode_infer_request(request, LIMITS, MAX_TOTAL)


def raw_request(*tensors: tuple[str, str, list[int], bytes]) -> ModelInferRequest:
    return ModelInferRequest(
        model_name="relu",
        inputs=[Tensor(name=name, datatype=datatype, shape=shape) for name, datatype, shape, _ in tensors],
        raw_input_contents=[data for *_, data in tensors],
    )


def typed_request(name: str, datatype: str, shape: list[int], field: str, values: list[Any]) -> ModelInferRequest:
    tensor = Tensor(name=name, datatype=datatype, shape=shape)
    getattr(tensor.contents, field).extend(values)
    return ModelInferRequest(model_name="relu", inputs=[tensor])


@pytest.mark.parametrize("datatype", DATATYPES)
def test_raw_contents_decode_to_the_arrays_of_the_binary_extension(datatype: str) -> None:
    values = sample(datatype).reshape(2, 3) if sample(datatype).size == 6 else sample(datatype)
    data = values.tobytes()
    decoded = decode(raw_request(("input", datatype, list(values.shape), data)))
    (tensor,) = decoded.inputs
    expected = from_bytes(memoryview(bytearray(data)), list(values.shape), datatype, ("x",))
    assert decoded.raw
    assert (tensor.name, tensor.datatype, tensor.shape) == ("input", datatype, list(values.shape))
    assert tensor.array.dtype == expected.dtype
    assert tensor.array.shape == expected.shape
    assert tensor.array.tobytes() == expected.tobytes()
    assert tensor.array.flags.writeable  # torch takes it without copying or warning
    torch.from_numpy(tensor.array)


@pytest.mark.parametrize("datatype", list(FIELD_OF))
def test_typed_contents_decode_exactly_as_the_same_raw_bytes(datatype: str) -> None:
    values = sample(datatype)
    typed = decode(typed_request("input", datatype, [values.size], FIELD_OF[datatype], values.tolist()))
    raw = decode(raw_request(("input", datatype, [values.size], values.tobytes())))
    assert not typed.raw
    assert typed.inputs[0].array.dtype == raw.inputs[0].array.dtype
    assert typed.inputs[0].array.tobytes() == raw.inputs[0].array.tobytes()
    assert typed.inputs[0].array.flags.writeable


def test_fp32_contents_decode_alike_packed_unpacked_and_beside_unknown_fields() -> None:
    values = np.array(FLOAT_EDGES, dtype=np.float32)
    unpacked = b"".join(b"\x35" + struct.pack("<f", value) for value in values)  # field 6, fixed32, one by one
    unknown = b"\x48\x01"  # field 9, a varint this protocol does not define
    for wire in (unpacked, unpacked + unknown):
        tensor = Tensor(name="input", datatype="FP32", shape=[values.size])
        tensor.contents.MergeFromString(wire)
        (decoded,) = decode(ModelInferRequest(inputs=[tensor])).inputs
        assert decoded.array.tobytes() == values.tobytes()


def test_bf16_and_fp16_in_raw_form_hold_torchs_numbers() -> None:
    source = torch.tensor([[0.1, -3.7, 1e-3], [65504.0, -0.0, 2.5e-8]])
    bf16, fp16 = source.to(torch.bfloat16), source.to(torch.float16)
    decoded = decode(
        raw_request(
            ("input", "BF16", [2, 3], bf16.view(torch.int16).numpy().tobytes()),
            ("target", "FP16", [2, 3], fp16.numpy().tobytes()),
        )
    )
    bf16_array, fp16_array = (tensor.array for tensor in decoded.inputs)
    assert bf16_array.dtype == np.float32
    assert bf16_array.tobytes() == bf16.float().numpy().tobytes()
    assert fp16_array.dtype == np.float16
    assert fp16_array.tobytes() == fp16.numpy().tobytes()


def test_empty_tensors_decode_in_either_form() -> None:
    typed = decode(ModelInferRequest(inputs=[Tensor(name="input", datatype="FP32", shape=[0, 3])]))
    raw = decode(raw_request(("input", "FP32", [0, 3], b"")))
    for decoded in (typed, raw):
        assert decoded.inputs[0].array.shape == (0, 3)
        assert decoded.inputs[0].array.dtype == np.float32


def test_the_request_names_its_model_id_parameters_and_outputs_in_plain_values() -> None:
    request = raw_request(("input", "FP32", [1], b"\x00\x00\x80\x3f"))
    request.model_version = "1"
    request.id = "call-9"
    request.parameters["grad"].bool_param = True
    request.parameters["dim"].int64_param = -1
    request.parameters["beta"].double_param = 0.5
    request.parameters["reduction"].string_param = "sum"
    request.parameters["seed"].uint64_param = 2**64 - 1
    output = request.outputs.add(name="grad_input")
    output.parameters["binary_data"].bool_param = True
    request.outputs.add(name="output")
    decoded = decode(request)
    assert (decoded.model_name, decoded.model_version, decoded.id) == ("relu", "1", "call-9")
    assert decoded.parameters == {"beta": 0.5, "dim": -1, "grad": True, "reduction": "sum", "seed": 2**64 - 1}
    assert [type(value) for value in decoded.parameters.values()] == [float, int, bool, str, int]
    assert list(decoded.parameters) == sorted(decoded.parameters)
    assert decoded.outputs is not None
    assert [(output.name, output.parameters) for output in decoded.outputs] == [
        ("grad_input", {"binary_data": True}),
        ("output", {}),
    ]
    bare = decode(raw_request(("input", "FP32", [1], b"\x00\x00\x80\x3f")))
    assert (bare.id, bare.outputs, bare.parameters, bare.model_version) == (None, None, {}, None)


def test_input_parameters_besides_binary_data_size_are_passed_on_for_the_protocols_rule() -> None:
    request = raw_request(("input", "FP32", [2], bytes(8)))
    request.inputs[0].parameters["binary_data_size"].int64_param = 8
    request.inputs[0].parameters["shared_memory_region"].string_param = "r"
    (tensor,) = decode(request).inputs
    assert tensor.parameters == {"shared_memory_region": "r"}


def test_the_model_and_version_named_are_bounded_as_names() -> None:
    assert model_named(ModelInferRequest(model_name="relu")) == ("relu", None)
    assert model_named(ModelInferRequest(model_name="relu", model_version="1")) == ("relu", "1")
    long = "m" * (MAX_NAME_LENGTH + 1)
    for request, field in (
        (ModelInferRequest(model_name=long), "model_name"),
        (ModelInferRequest(model_version=long), "model_version"),
    ):
        with pytest.raises(InvalidRequest) as raised:
            model_named(request)
        assert [(p.loc, p.type) for p in raised.value.problems] == [((field,), "string_too_long")]


def test_kserves_binary_data_size_is_checked_against_the_tensor() -> None:
    request = raw_request(("input", "FP32", [2], bytes(8)))
    request.inputs[0].parameters["binary_data_size"].int64_param = 8
    assert decode(request).inputs[0].array.tolist() == [0.0, 0.0]


def _with_parameter(request: ModelInferRequest, name: str, parameter: InferParameter) -> ModelInferRequest:
    request.inputs[0].parameters[name].CopyFrom(parameter)
    return request


def _unset_parameter() -> ModelInferRequest:
    request = raw_request(("input", "FP32", [1], bytes(4)))
    request.parameters["grad"].SetInParent()
    return request


def _output_named(name: str) -> ModelInferRequest:
    request = raw_request(("input", "FP32", [1], bytes(4)))
    request.outputs.add(name=name)
    return request


def _mixed() -> ModelInferRequest:
    request = raw_request(("input", "FP32", [1], bytes(4)), ("target", "FP32", [1], bytes(4)))
    request.inputs[1].contents.fp32_contents.append(1.0)
    return request


BAD_REQUESTS: dict[str, tuple[ModelInferRequest, type[ServiceError], tuple[Any, ...], str]] = {
    "FP16 has no typed field": (
        typed_request("x", "FP16", [1], "fp32_contents", [1.0]),
        InvalidRequest,
        ("inputs", "x", "contents"),
        "invalid_data",
    ),
    "FP32 values in another field": (
        typed_request("x", "FP32", [1], "fp64_contents", [1.0]),
        InvalidRequest,
        ("inputs", "x", "contents", "fp64_contents"),
        "invalid_data",
    ),
    "typed values short of the shape": (
        typed_request("x", "FP32", [3], "fp32_contents", [1.0, 2.0]),
        InvalidRequest,
        ("inputs", "x", "contents", "fp32_contents"),
        "size_mismatch",
    ),
    "no values for a non-empty shape": (
        ModelInferRequest(inputs=[Tensor(name="x", datatype="INT64", shape=[2])]),
        InvalidRequest,
        ("inputs", "x", "contents", "int64_contents"),
        "size_mismatch",
    ),
    "raw bytes short of the shape": (
        raw_request(("x", "FP32", [3], bytes(8))),
        InvalidRequest,
        ("inputs", "x", "raw_input_contents"),
        "size_mismatch",
    ),
    "fewer raw tensors than inputs": (
        ModelInferRequest(inputs=[Tensor(name="x", datatype="FP32", shape=[1])] * 2, raw_input_contents=[bytes(4)]),
        InvalidRequest,
        ("raw_input_contents",),
        "size_mismatch",
    ),
    "raw and typed in one request": (_mixed(), InvalidRequest, ("inputs", "target", "contents"), "invalid_data"),
    "BOOL": (
        typed_request("x", "BOOL", [1], "bool_contents", [True]),
        InvalidRequest,
        ("inputs", "x", "datatype"),
        "invalid_datatype",
    ),
    "BYTES": (
        raw_request(("x", "BYTES", [1], b"\x01\x00\x00\x00a")),
        InvalidRequest,
        ("inputs", "x", "datatype"),
        "invalid_datatype",
    ),
    "an unknown datatype": (
        raw_request(("x", "FLOAT", [1], bytes(4))),
        InvalidRequest,
        ("inputs", "x", "datatype"),
        "invalid_datatype",
    ),
    "a negative dimension": (
        raw_request(("x", "FP32", [-1], b"")),
        InvalidRequest,
        ("inputs", "x", "shape"),
        "invalid_shape",
    ),
    "a rank past the limit": (
        raw_request(("x", "FP32", [1] * 5, bytes(4))),
        InvalidRequest,
        ("inputs", "x", "shape"),
        "rank_limit",
    ),
    "a tensor past the element limit": (
        raw_request(("x", "FP32", [1001], b"")),
        TooLarge,
        ("inputs", "x", "shape"),
        "too_many_elements",
    ),
    "a huge dimension beside a zero one": (
        raw_request(("x", "FP32", [0, 2**62], b"")),
        TooLarge,
        ("inputs", "x", "shape"),
        "too_many_elements",
    ),
    "tensors past the total element limit": (
        raw_request(("x", "UINT8", [1000], b""), ("y", "UINT8", [1000], b"")),
        TooLarge,
        ("inputs", "y"),
        "too_many_elements",
    ),
    "INT8 contents out of range": (
        typed_request("x", "INT8", [2], "int_contents", [1, 128]),
        InvalidRequest,
        ("inputs", "x", "contents", "int_contents"),
        "dtype_overflow",
    ),
    "UINT16 contents out of range": (
        typed_request("x", "UINT16", [1], "uint_contents", [65536]),
        InvalidRequest,
        ("inputs", "x", "contents", "uint_contents"),
        "dtype_overflow",
    ),
    "UINT64 contents past int64": (
        typed_request("x", "UINT64", [1], "uint64_contents", [2**63]),
        InvalidRequest,
        ("inputs", "x", "contents", "uint64_contents"),
        "dtype_overflow",
    ),
    "UINT64 raw bytes past int64": (
        raw_request(("x", "UINT64", [1], struct.pack("<Q", 2**63))),
        InvalidRequest,
        ("inputs", "x", "raw_input_contents"),
        "dtype_overflow",
    ),
    "too many parameters": (
        ModelInferRequest(parameters={f"p{index}": InferParameter(int64_param=index) for index in range(65)}),
        InvalidRequest,
        ("parameters",),
        "too_many_parameters",
    ),
    "a parameter name past the limit": (
        ModelInferRequest(parameters={"p" * (MAX_NAME_LENGTH + 1): InferParameter(bool_param=True)}),
        InvalidRequest,
        ("parameters", "p" * MAX_NAME_LENGTH),
        "string_too_long",
    ),
    "a parameter string past the limit": (
        ModelInferRequest(parameters={"reduction": InferParameter(string_param="s" * (MAX_PARAM_STRING + 1))}),
        InvalidRequest,
        ("parameters", "reduction"),
        "string_too_long",
    ),
    "binary_data_size unlike the tensor's": (
        _with_parameter(raw_request(("x", "FP32", [2], bytes(8))), "binary_data_size", InferParameter(int64_param=4)),
        InvalidRequest,
        ("inputs", "x", "parameters", "binary_data_size"),
        "size_mismatch",
    ),
    "binary_data_size without raw contents": (
        _with_parameter(
            typed_request("x", "FP32", [1], "fp32_contents", [1.0]), "binary_data_size", InferParameter(int64_param=4)
        ),
        InvalidRequest,
        ("inputs", "x", "parameters", "binary_data_size"),
        "invalid_param",
    ),
    "a parameter holding no value": (_unset_parameter(), InvalidRequest, ("parameters", "grad"), "invalid_param"),
    "a tensor name past the limit": (
        raw_request(("x" * (MAX_NAME_LENGTH + 1), "FP32", [1], bytes(4))),
        InvalidRequest,
        ("inputs", 0, "name"),
        "string_too_long",
    ),
    "an output name past the limit": (
        _output_named("y" * (MAX_NAME_LENGTH + 1)),
        InvalidRequest,
        ("outputs", 0, "name"),
        "string_too_long",
    ),
    "an id past the limit": (
        ModelInferRequest(id="i" * (MAX_ID_LENGTH + 1)),
        InvalidRequest,
        ("id",),
        "string_too_long",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_a_bad_request_is_refused_naming_its_field(case: str) -> None:
    request, error, loc, type_ = BAD_REQUESTS[case]
    with pytest.raises(error) as raised:
        decode(request)
    (problem,) = raised.value.problems
    assert (problem.loc, problem.type) == (loc, type_), problem.msg
    assert problem.msg


def _values(response: ModelInferResponse, index: int) -> np.ndarray:
    output = response.outputs[index]
    if response.raw_output_contents:
        wire = np.frombuffer(response.raw_output_contents[index], dtype=WIRE[output.datatype])
        if output.datatype == "BF16":
            wire = torch.from_numpy(wire.view(np.int16).copy()).view(torch.bfloat16).float().numpy()
        return wire.reshape(tuple(output.shape))
    field = FIELD_OF[output.datatype]
    return np.array(getattr(output.contents, field), dtype=WIRE[output.datatype]).reshape(tuple(output.shape))


def _same(left: np.ndarray, right: np.ndarray) -> bool:
    """Equal values, NaN where NaN, and the same signs of zero."""
    return bool(
        left.shape == right.shape
        and np.array_equal(left, right, equal_nan=True)
        and np.array_equal(np.signbit(left), np.signbit(right))
    )


def test_outputs_encode_typed_or_raw_bit_for_bit() -> None:
    values = np.array([[0.0, -0.0, math.inf, -math.inf], [math.nan, 1.1, 3e-41, -7.5]])
    outputs = [
        OutputTensor("output", "FP32", values.astype(np.float32)),
        OutputTensor("grad_input", "FP64", values),
        OutputTensor("loss", "FP32", np.array(2.5, dtype=np.float32)),
        OutputTensor("grad_target", "FP32", np.zeros((0, 3), dtype=np.float32)),
    ]
    for raw in (False, True):
        response = ModelInferResponse.FromString(
            encode_infer_response("mse_loss", "1", "call-3", outputs, {}, raw).SerializeToString()
        )
        assert (response.model_name, response.model_version, response.id) == ("mse_loss", "1", "call-3")
        assert len(response.raw_output_contents) == (len(outputs) if raw else 0)
        for index, output in enumerate(outputs):
            assert (response.outputs[index].name, response.outputs[index].datatype) == (output.name, output.datatype)
            assert list(response.outputs[index].shape) == list(output.array.shape)
            assert response.outputs[index].HasField("contents") is (not raw and output.array.size > 0)
            assert _values(response, index).tobytes() == output.array.tobytes()


def test_fp16_and_bf16_outputs_travel_raw_whatever_the_request() -> None:
    source = torch.tensor([[0.1, -3.7], [65504.0, -0.0]])
    outputs = [
        OutputTensor("output", "FP16", source.to(torch.float16).numpy()),
        OutputTensor("grad_input", "BF16", source.to(torch.bfloat16).float().numpy()),
    ]
    response = encode_infer_response("relu", "1", None, outputs, {}, raw=False)
    assert response.id == ""
    assert len(response.raw_output_contents) == 2
    assert response.raw_output_contents[0] == source.to(torch.float16).numpy().tobytes()
    assert response.raw_output_contents[1] == source.to(torch.bfloat16).view(torch.int16).numpy().tobytes()


def test_response_parameters_take_the_field_of_their_type() -> None:
    parameters: Parameters = {"flag": True, "count": -3, "seed": 2**64 - 1, "scale": 0.5, "warnings": "a warning"}
    response = encode_infer_response("relu", "1", None, [], parameters, raw=True)
    assert {name: p.WhichOneof("parameter_choice") for name, p in response.parameters.items()} == {
        "flag": "bool_param",
        "count": "int64_param",
        "seed": "uint64_param",
        "scale": "double_param",
        "warnings": "string_param",
    }
    assert {name: getattr(p, p.WhichOneof("parameter_choice") or "") for name, p in response.parameters.items()} == (
        parameters
    )


def test_an_array_unlike_its_datatype_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="float64"):
        encode_infer_response("relu", "1", None, [OutputTensor("output", "FP32", np.zeros(2))], {}, raw=True)


@pytest.mark.parametrize(
    ("datatype", "dtype", "raw"),
    [
        ("FP32", torch.float32, False),
        ("FP32", torch.float32, True),
        ("FP64", torch.float64, False),
        ("BF16", torch.bfloat16, True),
        ("FP16", torch.float16, True),
    ],
)
def test_relu_through_the_codec_equals_torch(datatype: str, dtype: torch.dtype, raw: bool) -> None:
    source = torch.randn(4, 8, generator=torch.Generator().manual_seed(3)).to(dtype)
    source[0, :4] = torch.tensor([-0.0, math.inf, -math.inf, math.nan])
    if raw:
        bits = source.view(torch.int16) if dtype == torch.bfloat16 else source
        request = raw_request(("input", datatype, [4, 8], bits.numpy().tobytes()))
    else:
        request = typed_request("input", datatype, [4, 8], FIELD_OF[datatype], source.flatten().tolist())
    (tensor,) = decode(request).inputs
    computed = torch.relu(torch.from_numpy(tensor.array).to(dtype))
    expected = torch.relu(source)
    values = computed.float().numpy() if dtype == torch.bfloat16 else computed.numpy()
    response = encode_infer_response("relu", "1", None, [OutputTensor("output", datatype, values)], {}, raw)
    received = _values(ModelInferResponse.FromString(response.SerializeToString()), 0)
    assert _same(received, expected.float().numpy() if dtype == torch.bfloat16 else expected.numpy())


def test_the_typed_fields_are_the_protocols() -> None:
    fields = set(InferTensorContents.DESCRIPTOR.fields_by_name)
    assert set(FIELD_OF.values()) <= fields
    assert fields - set(FIELD_OF.values()) == {"bool_contents", "bytes_contents"}


# ----------------------------------------------------------------------------- raw tensors in place


def _split_decoded(body: bytes) -> Any:
    split = split_raw_contents(body)
    assert split is not None
    return decode_infer_request(ModelInferRequest.FromString(split.header), LIMITS, MAX_TOTAL, split.raws)


def test_raw_tensors_found_in_the_body_decode_as_the_parsed_message_does() -> None:
    request = raw_request(
        ("input", "FP32", [2, 3], np.arange(6, dtype="<f4").tobytes()),
        ("target", "INT64", [2], np.array([1, -2], dtype="<i8").tobytes()),
    )
    request.id = "w-1"
    request.parameters["grad"].bool_param = True
    request.outputs.add(name="output")
    body = request.SerializeToString()
    split = split_raw_contents(body)
    assert split is not None
    assert [bytes(raw) for raw in split.raws] == list(request.raw_input_contents)
    assert not ModelInferRequest.FromString(split.header).raw_input_contents
    whole, found = decode(request), _split_decoded(body)
    assert found._replace(inputs=()) == whole._replace(inputs=())
    for ours, theirs in zip(found.inputs, whole.inputs, strict=True):
        assert ours.array.tobytes() == theirs.array.tobytes()
        assert ours.array.flags.writeable


def test_fields_in_any_order_and_unknown_fields_split_alike() -> None:
    first, second = np.array([1.5], dtype="<f4").tobytes(), np.array([-2.0], dtype="<f4").tobytes()
    raws = b"".join(b"\x3a" + bytes([len(data)]) + data for data in (first, second))  # field 7, length-delimited
    tensors = raw_request(("input", "FP32", [1], b""), ("target", "FP32", [1], b""))
    del tensors.raw_input_contents[:]
    unknown = b"\x48\x07" + b"\x51" + bytes(8) + b"\x5d" + bytes(4)  # fields 9 (varint), 10 (fixed64), 11 (fixed32)
    body = raws[:6] + unknown + tensors.SerializeToString() + raws[6:]
    assert [array.tolist() for array in (t.array for t in _split_decoded(body).inputs)] == [[1.5], [-2.0]]


@pytest.mark.parametrize(
    "body",
    [
        b"\x0b\x0c",  # a group (wire type 3), deprecated
        b"\x3d\x00\x00\x80\x3f",  # raw_input_contents as fixed32, not length-delimited
        b"\x3a\x10\x00",  # a raw tensor cut short
        b"\x0a\x05re",  # a string cut short
        b"\x48" + b"\xff" * 11,  # a varint longer than 10 bytes
        b"\x48\x01" * 1025,  # more fields than a request holds
    ],
    ids=["group", "raw-not-length-delimited", "raw-cut-short", "string-cut-short", "long-varint", "many-fields"],
)
def test_a_body_that_is_not_plainly_a_request_is_left_to_protobuf(body: bytes) -> None:
    assert split_raw_contents(body) is None


@pytest.mark.parametrize("raw", [False, True])
def test_the_serialized_response_is_the_encoded_one(raw: bool) -> None:
    values = np.array([[0.0, -0.0, math.inf], [math.nan, 1.5, -2.25]])
    for outputs in (
        [OutputTensor("output", "FP32", values.astype(np.float32)), OutputTensor("grad_input", "FP64", values)],
        [OutputTensor("output", "FP16", values.astype(np.float16))],
        [OutputTensor("loss", "FP32", np.array(0.5, dtype=np.float32))],
    ):
        parameters: Parameters = {"warnings": "w", "ignored_parameters": "parameters.x"}
        encoded = encode_infer_response("mse_loss", "1", "s-1", outputs, parameters, raw)
        serialized = serialize_infer_response("mse_loss", "1", "s-1", outputs, parameters, raw)
        assert ModelInferResponse.FromString(serialized) == encoded
