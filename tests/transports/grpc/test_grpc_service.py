"""The protocol's gRPC service served by the app, on real sockets (uvicorn and gRPC on one loop in
this process): values against torch and against the REST face, the health model's answers, the
service's errors as gRPC statuses, request ids, metrics and the access log."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import orjson
import pytest
import torch
import torch.nn.functional as F
from grpc_health.v1 import health_pb2

from app.compute.catalogue import CATALOGUE, FunctionSpec
from app.core.config import Settings
from app.core.logs import JsonFormatter
from app.protocols.oip.examples import infer_example
from app.protocols.oip.grpc.codec import ModelInferCodec
from app.protocols.oip.grpc.messages import (
    InferParameter,
    ModelInferRequest,
    ModelMetadataRequest,
    ModelReadyRequest,
    ServerLiveRequest,
    ServerMetadataRequest,
    ServerReadyRequest,
)
from tests.support.exposition import metric
from tests.support.oip_grpc import (
    SERVICE,
    Client,
    Metadata,
    from_rest,
    grpc_serving,
    infer_request,
    outputs_of,
    status_of,
)
from tests.support.oip_wire import parse_reply
from tests.support.reference import assert_same

INFER_PATH = SERVICE + "ModelInfer"
X = torch.tensor([[-1.5, 0.25, 3.0], [0.7, -0.0, float("nan")], [math.inf, -math.inf, 1e-40]])


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Client]]:
    with grpc_serving(Settings(max_total_elements=100_000, max_tensor_elements=100_000)) as serving:
        client = Client(serving.address)
        yield serving.url, client
        client.close()


@pytest.fixture
def client(served: tuple[str, Client]) -> Client:
    return served[1]


@pytest.fixture
def http(served: tuple[str, Client]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0], timeout=60) as http_client:
        yield http_client


def with_grad(function: Any, *tensors: torch.Tensor, weights: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The function's value and the gradient of each tensor (vector-Jacobian with ``weights``)."""
    leaves = [tensor.clone().requires_grad_(True) for tensor in tensors]
    value = function(*leaves)
    grads = torch.autograd.grad(value, leaves, weights if weights is not None else torch.ones_like(value))
    return [value.detach(), *grads]


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_relu_and_its_gradient_in_raw_form_equal_torch(client: Client, dtype: torch.dtype) -> None:
    x = X.to(dtype)
    response = client.infer(infer_request("relu", {"input": x}, {"grad": True}, request_id="r-1"))
    output, grad = with_grad(torch.relu, x)
    assert (response.model_name, response.model_version, response.id) == ("relu", "1", "r-1")
    assert len(response.raw_output_contents) == 2  # raw, as the request was
    outputs = outputs_of(response)
    assert list(outputs) == ["output", "grad_input"]
    assert_same(outputs["output"], output)
    assert_same(outputs["grad_input"], grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_typed_contents_are_answered_typed_and_equal_torch(client: Client, dtype: torch.dtype) -> None:
    x = X.to(dtype)
    response = client.infer(infer_request("gelu", {"input": x}, {"grad": True, "approximate": "tanh"}, raw=False))
    output, grad = with_grad(lambda t: F.gelu(t, approximate="tanh"), x)
    assert not response.raw_output_contents
    assert [o.datatype for o in response.outputs] == [{torch.float32: "FP32", torch.float64: "FP64"}[dtype]] * 2
    outputs = outputs_of(response)
    assert_same(outputs["output"], output)
    assert_same(outputs["grad_input"], grad)


def test_binary_data_output_asks_for_raw_outputs_of_a_typed_request(client: Client) -> None:
    request = infer_request("relu", {"input": X}, {"binary_data_output": True}, raw=False)
    response = client.infer(request)
    assert len(response.raw_output_contents) == 1
    assert_same(outputs_of(response)["output"], torch.relu(X))


def test_function_parameters_grad_output_and_requested_outputs(client: Client) -> None:
    weights = torch.tensor([[1.0, -2.0, 0.5]] * 3)
    request = infer_request(
        "leaky_relu",
        {"input": X, "grad_output": weights},
        {"grad": True, "negative_slope": 0.125},
        outputs=["grad_input"],
    )
    response = client.infer(request)
    _, grad = with_grad(lambda t: F.leaky_relu(t, 0.125), X, weights=weights)
    assert [output.name for output in response.outputs] == ["grad_input"]
    assert_same(outputs_of(response)["grad_input"], grad)


def test_a_loss_with_class_indices_and_gradients(client: Client) -> None:
    logits = torch.tensor([[1.0, -2.0, 0.5], [0.1, 0.2, 0.3]], dtype=torch.float64)
    target = torch.tensor([2, 0])
    for raw in (True, False):
        request = infer_request(
            "cross_entropy", {"input": logits, "target": target}, {"grad": True, "label_smoothing": 0.1}, raw=raw
        )
        response = client.infer(request)
        loss, grad = with_grad(lambda t: F.cross_entropy(t, target, label_smoothing=0.1), logits)
        outputs = outputs_of(response)
        assert list(outputs) == ["loss", "grad_input"]  # class indices have no gradient
        assert_same(outputs["loss"], loss)
        assert_same(outputs["grad_input"], grad)


def test_a_chained_activation_and_its_parameters(client: Client) -> None:
    x = torch.tensor([-2.0, 0.5, 3.0])
    y = torch.tensor([0.0, 1.0, 1.0])
    parameters: dict[str, bool | int | float | str] = {"grad": True, "activation": "leaky_relu"}
    parameters["activation.negative_slope"] = 0.5
    response = client.infer(infer_request("mse_loss", {"input": x, "target": y}, parameters))
    loss, grad_x, grad_y = with_grad(lambda a, b: F.mse_loss(F.leaky_relu(a, 0.5), b), x, y)
    outputs = outputs_of(response)
    assert_same(outputs["loss"], loss)
    assert_same(outputs["grad_input"], grad_x)
    assert_same(outputs["grad_target"], grad_y)


def test_tritons_timeout_and_priority_are_accepted(client: Client) -> None:
    request = infer_request("relu", {"input": X})
    request.parameters["timeout"].int64_param = 10_000_000  # microseconds
    request.parameters["priority"].uint64_param = 2**63
    assert_same(outputs_of(client.infer(request))["output"], torch.relu(X))


@pytest.mark.parametrize("spec", list(CATALOGUE), ids=lambda spec: spec.name)
def test_every_catalogue_example_equals_the_rest_face(client: Client, http: httpx.Client, spec: FunctionSpec) -> None:
    body = infer_example(spec)
    reply = http.post(f"/v2/models/{spec.name}/infer", json=body)
    assert reply.status_code == 200, reply.text
    _, expected = parse_reply(reply.content, reply.headers)
    for raw in (False, True):
        response = client.infer(from_rest(spec.name, body, raw))
        outputs = outputs_of(response)
        assert list(outputs) == list(expected)
        for name, tensor in expected.items():
            assert_same(outputs[name], tensor)


def test_the_reply_names_ignored_parameters_and_torchs_warnings_one_a_line(client: Client) -> None:
    request = infer_request(
        "kl_div",
        {"input": torch.tensor([-1.0, -2.0]), "target": torch.tensor([0.3, 0.7])},
        {"reduction": "mean", "sequence_id": 7, "custom": "x"},
    )
    response = client.infer(request)
    parameters = {name: p.string_param for name, p in response.parameters.items()}
    assert parameters["ignored_parameters"] == "parameters.custom\nparameters.sequence_id"
    assert "batchmean" in parameters["warnings"]
    with pytest.warns(UserWarning, match="batchmean") as caught:
        F.kl_div(torch.tensor([-1.0, -2.0]), torch.tensor([0.3, 0.7]), reduction="mean")
    assert parameters["warnings"] == "\n".join(str(w.message) for w in caught)


# ----------------------------------------------------------------------------- health and metadata


def test_live_ready_and_model_ready_from_the_health_model(client: Client) -> None:
    assert client.live_call(ServerLiveRequest()).live
    assert client.ready_call(ServerReadyRequest()).ready
    assert client.model_ready_call(ModelReadyRequest(name="relu")).ready
    assert client.model_ready_call(ModelReadyRequest(name="ReLU", version="1")).ready  # names as the catalogue finds
    for request in (ModelReadyRequest(name="relux"), ModelReadyRequest(name="relu", version="2")):
        with pytest.raises(grpc.RpcError) as raised:
            client.model_ready_call(request)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_server_and_model_metadata_are_the_rest_faces(client: Client, http: httpx.Client) -> None:
    server = client.server_metadata_call(ServerMetadataRequest())
    rest = http.get("/v2").json()
    assert (server.name, server.version, list(server.extensions)) == (rest["name"], rest["version"], [])
    for name in ("relu", "cross_entropy", "prelu", "mse_loss"):
        metadata = client.model_metadata_call(ModelMetadataRequest(name=name))
        expected = http.get(f"/v2/models/{name}").json()
        assert (metadata.name, list(metadata.versions), metadata.platform) == (
            expected["name"],
            expected["versions"],
            expected["platform"],
        )
        for ours, theirs in ((metadata.inputs, expected["inputs"]), (metadata.outputs, expected["outputs"])):
            assert [(t.name, t.datatype, list(t.shape)) for t in ours] == [
                (t["name"], t["datatype"], t["shape"]) for t in theirs
            ]
        properties = {
            f"inputs.{tensor['name']}.{key}": str(value).lower() if isinstance(value, bool) else value
            for tensor in expected["inputs"]
            for key, value in (tensor.get("parameters") or {}).items()
        }
        assert dict(metadata.properties) == properties
    assert (
        dict(client.model_metadata_call(ModelMetadataRequest(name="cross_entropy")).properties)[
            "inputs.target.datatypes"
        ]
        == "INT64,FP32"
    )


def test_the_standard_health_service_reports_readiness(client: Client) -> None:
    for service in ("", "inference.GRPCInferenceService"):
        response = client.health_check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as raised:
        client.health_check(health_pb2.HealthCheckRequest(service="other.Service"), timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    watch: Any = client.health_watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()


def test_methods_outside_the_protocol_are_unimplemented(client: Client) -> None:
    config: grpc.UnaryUnaryMultiCallable[bytes, bytes] = client.channel.unary_unary(SERVICE + "ModelConfig")
    with pytest.raises(grpc.RpcError) as raised:
        config(b"", timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


# ----------------------------------------------------------------------------- errors


def _typed(name: str, datatype: str, shape: list[int], values: list[float]) -> ModelInferRequest.InferInputTensor:
    tensor = ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
    tensor.contents.fp32_contents.extend(values)
    return tensor


def _with_parameter(name: str, value: InferParameter) -> ModelInferRequest:
    request = infer_request("relu", {"input": X})
    request.parameters[name].CopyFrom(value)
    return request


BAD: dict[str, tuple[ModelInferRequest, grpc.StatusCode, str]] = {
    "unknown model": (ModelInferRequest(model_name="relux"), grpc.StatusCode.NOT_FOUND, "model: unknown model 'relux'"),
    "unknown version": (
        ModelInferRequest(model_name="relu", model_version="2"),
        grpc.StatusCode.NOT_FOUND,
        "model.version: relu has no version '2'",
    ),
    "wrong datatype": (
        ModelInferRequest(model_name="relu", inputs=[ModelInferRequest.InferInputTensor(name="input", datatype="FP8")]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "inputs.input.datatype: unknown datatype",
    ),
    "missing input": (
        ModelInferRequest(model_name="mse_loss", inputs=[_typed("input", "FP32", [1], [1.0])]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "inputs.target: required by mse_loss",
    ),
    "unknown input": (
        ModelInferRequest(model_name="relu", inputs=[_typed("x", "FP32", [1], [1.0])]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "inputs.x: relu has no input 'x'",
    ),
    "more inputs than the model has": (
        ModelInferRequest(model_name="relu", inputs=[_typed("input", "FP32", [1], [1.0])] * 3),
        grpc.StatusCode.INVALID_ARGUMENT,
        "inputs: holds 3; relu has 2",
    ),
    "typed values short of the shape": (
        ModelInferRequest(model_name="relu", inputs=[_typed("input", "FP32", [2], [1.0])]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "inputs.input.contents.fp32_contents: holds 1 values",
    ),
    "a misspelt parameter": (
        _with_parameter("gard", InferParameter(bool_param=True)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "parameters.gard: unknown parameter; did you mean 'grad'?",
    ),
    "a parameter of the wrong type": (
        _with_parameter("grad", InferParameter(string_param="yes")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "parameters.grad: must be true or false",
    ),
    "shared memory": (
        _with_parameter("shared_memory_region", InferParameter(string_param="r")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "parameters.shared_memory_region: not accepted",
    ),
    "an output not produced": (
        infer_request("relu", {"input": X}, outputs=["grad_input"]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "outputs.grad_input: not produced by this request: set the parameter grad to true",
    ),
    "model_name past the name limit": (
        ModelInferRequest(model_name="m" * 129),
        grpc.StatusCode.INVALID_ARGUMENT,
        "model_name: longer than 128 characters",
    ),
    "too many elements": (
        ModelInferRequest(
            model_name="relu",
            inputs=[ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[100_001])],
            raw_input_contents=[bytes(400_004)],
        ),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "inputs.input.shape: ",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_request_is_refused_with_its_status_naming_the_field(client: Client, case: str) -> None:
    request, code, message = BAD[case]
    got, details, trailing = status_of(client.refusal(request))
    assert got == code
    assert details.startswith(message), details
    assert "Traceback" not in details
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        assert trailing["grpc-retry-pushback-ms"] == "-1"  # over a limit: a retry will not fit either
    assert client.infer(infer_request("relu", {"input": X})).outputs  # the server is unharmed


def test_bytes_that_are_no_message_are_invalid_argument(client: Client) -> None:
    infer: grpc.UnaryUnaryMultiCallable[bytes, bytes] = client.channel.unary_unary(INFER_PATH)
    with pytest.raises(grpc.RpcError) as raised:
        infer(b"\xff\xff\xff", timeout=10)
    code, details, _ = status_of(raised.value)
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "not a serialized ModelInferRequest")


def test_an_empty_message_names_no_model(client: Client) -> None:
    code, details, _ = status_of(client.refusal(ModelInferRequest()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "the request body is empty"


def test_a_request_over_the_cost_limit_is_resource_exhausted() -> None:
    with grpc_serving(max_request_cost=1000.0) as serving:
        client = Client(serving.address)
        code, details, trailing = status_of(client.refusal(infer_request("relu", {"input": torch.ones(1000)})))
        client.close()
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "cost" in details
    assert trailing["grpc-retry-pushback-ms"] == "-1"


class JsonLines(logging.Handler):
    """The JSON log lines written while it is installed, formatted as they are emitted (so with the
    id of the request being served, which the formatter reads from its context)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.formatter = JsonFormatter()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(self.format(record)))

    def wait_for(self, logger: str, count: int = 1) -> list[dict[str, Any]]:
        """The lines of ``logger`` once there are ``count`` (a call's access line is written as its
        status goes out, so the client may have it first)."""
        deadline = time.monotonic() + 30
        while len(found := [line for line in self.lines if line["logger"] == logger]) < count:
            assert time.monotonic() < deadline, f"never {count} lines of {logger}: {self.lines}"
            time.sleep(0.01)
        return found


@pytest.fixture
def logged() -> Iterator[JsonLines]:
    handler = JsonLines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_an_unexpected_error_is_internal_with_a_generic_message_logged_with_the_request_id(
    client: Client, monkeypatch: pytest.MonkeyPatch, logged: JsonLines
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("a secret path /srv/private")

    monkeypatch.setattr(ModelInferCodec, "decode", broken)
    code, details, _ = status_of(client.refusal(infer_request("relu", {"input": X}), (("x-request-id", "oops-1"),)))
    assert (code, details) == (grpc.StatusCode.INTERNAL, "internal error")
    (error,) = [line for line in logged.lines if line["level"] == "error"]
    assert error["request_id"] == "oops-1"
    assert "a secret path" in error["exception"]
    assert "Traceback" in error["exception"]
    (access,) = logged.wait_for("torchfn.access")
    assert (access["request_id"], access["status"], access["protocol"]) == ("oops-1", "INTERNAL", "grpc")


# ----------------------------------------------------------------------------- ids, metrics, logs


def test_the_request_id_is_taken_or_made_and_sent_back_in_the_trailing_metadata(client: Client) -> None:
    request = infer_request("relu", {"input": X})
    _, call = client.infer_call.with_call(request, metadata=(("x-request-id", "abc-1"),), timeout=30)
    assert dict(call.trailing_metadata())["x-request-id"] == "abc-1"
    no_id: Metadata = ()
    for sent in (no_id, (("x-request-id", "bad id with spaces"),)):
        _, call = client.infer_call.with_call(request, metadata=sent, timeout=30)
        made = dict(call.trailing_metadata())["x-request-id"]
        assert len(made) == 32
        assert int(made, 16) >= 0
    _, _, trailing = status_of(client.refusal(ModelInferRequest(model_name="relux"), (("x-request-id", "abc-2"),)))
    assert trailing["x-request-id"] == "abc-2"
    _, _, trailing = status_of(client.refusal(ModelInferRequest(model_name="relu", id="x" * 300)))
    assert len(trailing["x-request-id"]) == 32


def test_calls_are_counted_by_protocol_and_logged(client: Client, http: httpx.Client, logged: JsonLines) -> None:
    before = http.get("/metrics").text
    client.infer(infer_request("relu", {"input": X}), (("x-request-id", "counted-1"),))
    client.refusal(ModelInferRequest(model_name="relux"))
    client.ready_call(ServerReadyRequest())
    logged.wait_for("torchfn.access", 3)
    text = http.get("/metrics").text
    labels = {"endpoint": INFER_PATH, "protocol": "grpc"}

    def grew(name: str, **more: str) -> float:
        return metric(text, name, **labels, **more) - metric(before, name, **labels, **more)

    assert grew("torchfn_requests_total", function="relu", status="OK") == 1
    assert grew("torchfn_requests_total", function="-", status="NOT_FOUND") == 1
    assert grew("torchfn_request_duration_seconds_count") == 2
    assert (
        metric(
            text, "torchfn_requests_total", endpoint=SERVICE + "ServerReady", function="-", status="OK", protocol="grpc"
        )
        >= 1
    )
    calls = [line for line in logged.lines if line.get("protocol") == "grpc"]
    assert [(line["method"], line["path"], line["status"]) for line in calls] == [
        ("POST", INFER_PATH, "OK"),
        ("POST", INFER_PATH, "NOT_FOUND"),
        ("POST", SERVICE + "ServerReady", "OK"),
    ]
    assert calls[0]["request_id"] == "counted-1"
    assert calls[0]["function"] == "relu"
    assert calls[0]["message"].startswith(f"POST {INFER_PATH} OK ")
    assert calls[0]["client"].startswith("127.0.0.1:")
    assert all(
        line["protocol"] == "http" for line in logged.lines if line["logger"] == "torchfn.access" and line not in calls
    )
