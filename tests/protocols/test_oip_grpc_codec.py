"""``ModelInfer`` on the road (``app.protocols.oip.grpc.codec``): the same request over REST and over
gRPC, typed or raw, is the same ``Job``; the reply's form follows the request's; refusals name the
field at fault as the REST face's do."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from app.compute.catalogue import CATALOGUE, FunctionSpec
from app.compute.jobs import Job, Result
from app.core.errors import InvalidRequest, MalformedRequest, ServiceError, UnknownFunction
from app.core.limits import TensorLimits
from app.protocols.oip.codec import INFER
from app.protocols.oip.grpc.codec import MODEL_INFER, _within, decode_model_infer, encode_model_infer
from app.protocols.oip.grpc.messages import ModelInferRequest, ModelInferResponse
from app.protocols.oip.inference import InferDecoded
from app.protocols.oip.metadata import input_names, output_names
from app.serving.codec import DecodeOptions, RequestMeta
from tests.support.oip_grpc import from_rest

OPTIONS = DecodeOptions(
    catalogue=CATALOGUE,
    limits=TensorLimits(max_elements=10_000, max_rank=8),
    max_total_elements=20_000,
    default_dtype="float32",
)

REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "an activation with a parameter and gradients": (
        "leaky_relu",
        {
            "id": "a-1",
            "parameters": {"negative_slope": 0.25, "grad": True},
            "inputs": [{"name": "input", "datatype": "FP64", "shape": [2, 2], "data": [-1.0, 2.0, -3.5, 0.0]}],
        },
    ),
    "a loss with class indices, grad_output and requested outputs": (
        "cross_entropy",
        {
            "parameters": {"grad": True, "reduction": "none", "label_smoothing": 0.1},
            "inputs": [
                {"name": "input", "datatype": "FP32", "shape": [2, 3], "data": [1.0, -2.0, 0.5, 0.1, 0.2, 0.3]},
                {"name": "target", "datatype": "INT64", "shape": [2], "data": [2, 0]},
                {"name": "grad_output", "datatype": "FP32", "shape": [2], "data": [1.0, -0.5]},
            ],
            "outputs": [{"name": "grad_input"}],
        },
    ),
    "a chained activation, Triton's timeout and priority": (
        "mse_loss",
        {
            "parameters": {"activation": "softplus", "activation.beta": 2.0, "timeout": 250_000, "priority": 3},
            "inputs": [
                {"name": "input", "datatype": "FP32", "shape": [3], "data": [-1.0, 0.0, 1.0]},
                {"name": "target", "datatype": "FP32", "shape": [3], "data": [0.5, 0.5, 0.5]},
            ],
        },
    ),
    "a tensor parameter as an input": (
        "prelu",
        {
            "inputs": [
                {"name": "input", "datatype": "FP32", "shape": [2, 2], "data": [-1.0, 2.0, -3.0, 4.0]},
                {"name": "weight", "datatype": "FP32", "shape": [1], "data": [0.2]},
            ]
        },
    ),
}


def rest_job(model: str, body: dict[str, Any]) -> InferDecoded:
    """The REST face's decoding of ``body`` with its tensors in the binary extension (raw bytes, as
    gRPC's tensors are: JSON numbers would stay float64 until the engine casts them)."""
    header: dict[str, Any] = {key: value for key, value in body.items() if key != "inputs"}
    header["inputs"], chunks = [], []
    for entry in body["inputs"]:
        dtype = {"FP32": "<f4", "FP64": "<f8", "INT64": "<i8"}[entry["datatype"]]
        raw = np.asarray(entry["data"], dtype=dtype).tobytes()
        tensor = {key: value for key, value in entry.items() if key != "data"}
        header["inputs"].append({**tensor, "parameters": {"binary_data_size": len(raw)}})
        chunks.append(raw)
    json = orjson.dumps(header)
    meta = RequestMeta(content_type="application/octet-stream", binary_header_length=len(json))
    subject = INFER.subject(OPTIONS, (model,))
    return INFER.decode(bytearray(json + b"".join(chunks)), meta, subject, OPTIONS)


def grpc_job(model: str, body: dict[str, Any], raw: bool) -> InferDecoded:
    message = from_rest(model, body, raw)
    message.id = body.get("id", "")
    for entry in body.get("outputs") or ():
        message.outputs.add(name=entry["name"])
    return decode_model_infer(message.SerializeToString(), OPTIONS)


def assert_same_job(left: Job, right: Job) -> None:
    assert left.spec is right.spec
    assert (left.dtype, left.grad, left.timeout, left.cost) == (right.dtype, right.grad, right.timeout, right.cost)
    assert dict(left.params) == dict(right.params)
    assert dict(left.locs) == dict(right.locs)
    assert left.arrays.keys() == right.arrays.keys()
    for name, array in left.arrays.items():
        assert (array.dtype, array.shape) == (right.arrays[name].dtype, right.arrays[name].shape), name
        assert array.tobytes() == right.arrays[name].tobytes(), name
    for first, second in ((left.grad_output, right.grad_output),):
        assert (first is None) == (second is None)
        if first is not None and second is not None:
            assert first.tobytes() == second.tobytes()
    assert (left.activation is None) == (right.activation is None)
    if left.activation is not None and right.activation is not None:
        assert left.activation.spec is right.activation.spec
        assert dict(left.activation.params) == dict(right.activation.params)


@pytest.mark.parametrize("case", list(REQUESTS))
@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
def test_the_same_request_is_the_same_job_over_rest_and_grpc(case: str, raw: bool) -> None:
    model, body = REQUESTS[case]
    rest, grpc = rest_job(model, body), grpc_job(model, body, raw)
    assert_same_job(rest.job, grpc.job)
    assert rest.request_id == grpc.request_id
    assert [output.name for output in rest.outputs] == [output.name for output in grpc.outputs]
    assert all(output.binary is raw for output in grpc.outputs)  # raw replies to raw requests


def _reply(decoded: InferDecoded, result: Result) -> ModelInferResponse:
    (part,) = MODEL_INFER.encode(decoded, result).parts
    return ModelInferResponse.FromString(bytes(part))


def test_the_reply_is_raw_when_the_request_or_an_output_asks_for_it() -> None:
    result = Result(np.array([0.0, 2.0], dtype=np.float32), None)
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2], "data": [-1.0, 2.0]}]}
    cases: list[tuple[dict[str, Any], bool]] = [
        (body, False),
        ({**body, "parameters": {"binary_data_output": True}}, True),
        ({**body, "outputs": [{"name": "output", "parameters": {"binary_data": True}}]}, True),
    ]
    for request, raw in cases:
        message = from_rest("relu", request, raw=False)
        outputs: list[dict[str, Any]] = request.get("outputs") or []
        for entry in outputs:
            output = message.outputs.add(name=entry["name"])
            output.parameters["binary_data"].bool_param = True
        reply = _reply(decode_model_infer(message.SerializeToString(), OPTIONS), result)
        assert (len(reply.raw_output_contents) == 1) is raw
        assert reply.outputs[0].HasField("contents") is not raw
    raw_request = grpc_job("relu", {**body, "parameters": {"binary_data_output": False}}, raw=True)
    assert not _reply(raw_request, result).raw_output_contents  # a raw request may ask for typed outputs


def test_encode_is_the_serialized_response() -> None:
    body = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [2, 2], "data": [-1.0, 2.0, -3.5, 0.0]}]}
    decoded = grpc_job("relu", body, raw=False)
    result = Result(np.zeros((2, 2)), None, ("a warning", "another"))
    assert ModelInferResponse.FromString(encode_model_infer(decoded, result)).parameters["warnings"].string_param == (
        "a warning\nanother"
    )


REFUSED: dict[str, tuple[bytes, type[ServiceError], tuple[Any, ...]]] = {
    "not a message": (b"\xff\xff\xff", MalformedRequest, ("body",)),
    "an unknown model": (ModelInferRequest(model_name="relux").SerializeToString(), UnknownFunction, ("model",)),
    "an unknown version": (
        ModelInferRequest(model_name="relu", model_version="7").SerializeToString(),
        UnknownFunction,
        ("model", "version"),
    ),
    "more outputs than the model has": (
        ModelInferRequest(
            model_name="relu", outputs=[ModelInferRequest.InferRequestedOutputTensor(name="o")] * 3
        ).SerializeToString(),
        InvalidRequest,
        ("outputs",),
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_message_is_refused_naming_its_field(case: str) -> None:
    body, error, loc = REFUSED[case]
    with pytest.raises(error) as raised:
        decode_model_infer(body, OPTIONS)
    assert [problem.loc for problem in raised.value.problems] == [loc]


def test_the_codec_reads_the_whole_message_and_bounds_its_reply() -> None:
    body = ModelInferRequest(model_name="relu").SerializeToString()
    assert MODEL_INFER.subject(OPTIONS, ()) is None  # the model is named in the message
    assert MODEL_INFER.parsed_text(body, RequestMeta()) == body
    assert MODEL_INFER.parse_apart is None  # protobuf is parsed in C, never in the parse process
    decoded = grpc_job(
        "relu", {"inputs": [{"name": "input", "datatype": "FP64", "shape": [3], "data": [1, 2, 3]}]}, False
    )
    assert MODEL_INFER.reply_bytes(decoded) == 3 * 8


def test_what_decoding_holds_is_bounded_by_the_form_of_the_tensors() -> None:
    raw = from_rest(
        "relu", {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1000], "data": [1.0] * 1000}]}, True
    )
    body = raw.SerializeToString()
    assert 2 * len(body) < MODEL_INFER.decoding_bytes(body, body) < 2 * len(body) + 1000  # the body, a copy
    typed = from_rest(
        "relu", {"inputs": [{"name": "input", "datatype": "INT64", "shape": [1000], "data": [0] * 1000}]}, False
    )
    body = typed.SerializeToString()
    assert MODEL_INFER.decoding_bytes(body, body) == 17 * len(body)  # 1-byte varints: 8 parsed, 8 in the array


@pytest.mark.parametrize("spec", list(CATALOGUE), ids=lambda spec: spec.name)
def test_a_message_may_name_as_many_inputs_and_outputs_as_the_model_has(spec: FunctionSpec) -> None:
    for field, names in (("inputs", input_names(spec)), ("outputs", output_names(spec))):
        _within(len(names), spec, field)
        with pytest.raises(InvalidRequest) as raised:
            _within(len(names) + 1, spec, field)
        assert raised.value.problems[0].type == f"too_many_{field}"
