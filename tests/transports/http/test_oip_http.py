"""The Open Inference Protocol over plain HTTP, written from the specification and Triton's binary
tensor data extension: every endpoint, JSON and binary tensors both ways, and the error cases."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import MutableMapping
from typing import Any

import numpy as np
import orjson
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient

from app.compute.catalogue import CATALOGUE, FunctionSpec
from app.compute.service import ComputeService
from app.core.config import Settings
from app.main import create_app
from app.protocols.oip.binary import split_body
from app.protocols.oip.examples import infer_example
from app.protocols.oip.tensors import from_bytes
from app.serving.inflate import BINARY_ALIGNMENT, aligned_buffer
from tests.support.oip_wire import (
    HEADER_LENGTH,
    binary_body,
    binary_input,
    json_input,
    parse_reply,
    raw_bytes,
)
from tests.support.reference import assert_same, decode

X = torch.tensor([[-1.5, 0.25, 3.0], [0.7, -0.1, float("nan")]], dtype=torch.float32)


def infer(client: TestClient, model: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    response = client.post(f"/v2/models/{model}/infer", json=body)
    assert response.status_code == 200, response.text
    return parse_reply(response.content, response.headers)


def relu_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = x.clone().requires_grad_(True)
    y = torch.relu(leaf)
    (grad,) = torch.autograd.grad(y, leaf, torch.ones_like(y))
    return y.detach(), grad


# ----------------------------------------------------------------------------- health and metadata


def test_server_metadata_lists_the_extensions(client: TestClient) -> None:
    response = client.get("/v2")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"name", "version", "extensions"}
    assert isinstance(body["name"], str)
    assert isinstance(body["version"], str)
    assert {"binary_tensor_data", "statistics", "model_configuration"} <= set(body["extensions"])


def test_server_live_and_ready(client: TestClient) -> None:
    live = client.get("/v2/health/live")
    assert (live.status_code, live.json()) == (200, {"live": True})
    ready = client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


@pytest.mark.parametrize("path", ["/v2/models/relu/ready", "/v2/models/ReLU/ready", "/v2/models/relu/versions/1/ready"])
def test_model_ready(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert (response.status_code, response.json()) == (200, {"name": "relu", "ready": True})


@pytest.mark.parametrize("spec", list(CATALOGUE), ids=lambda spec: spec.name)
def test_model_metadata_describes_every_function(client: TestClient, spec: FunctionSpec) -> None:
    response = client.get(f"/v2/models/{spec.name}")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == spec.name
    assert body["versions"] == ["1"]
    assert isinstance(body["platform"], str)
    inputs = {i["name"]: i for i in body["inputs"]}
    tensor_params = [param.name for param in spec.tensor_params]
    assert list(inputs) == [*(arg.name for arg in spec.tensors), *tensor_params, "grad_output"]
    optional = {name for name, i in inputs.items() if (i.get("parameters") or {}).get("optional") is True}
    assert optional == {arg.name for arg in spec.tensors if arg.optional} | set(tensor_params) | {"grad_output"}
    value = "output" if spec.kind == "activation" else "loss"
    assert [o["name"] for o in body["outputs"]] == [value, *(f"grad_{name}" for name in spec.differentiable)]
    for tensor in body["inputs"] + body["outputs"]:
        assert tensor["shape"] == [-1]
        assert tensor["datatype"] in ("FP32", "INT64")
    # the example request's every input has a datatype the metadata lists for it
    for given in infer_example(spec)["inputs"]:
        listed = inputs[given["name"]]
        accepted = (listed.get("parameters") or {}).get("datatypes", listed["datatype"]).split(",")
        assert given["datatype"] in accepted, (given["name"], given["datatype"], accepted)
    assert client.get(f"/v2/models/{spec.name}/versions/1").json() == body


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/no_such_function",
        "/v2/models/no_such_function/ready",
        "/v2/models/relu/versions/2",
        "/v2/models/relu/versions/2/ready",
    ],
)
def test_unknown_model_or_version_is_404(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert list(response.json()) == ["error"]


def test_unknown_model_inference_is_404_with_a_suggestion(client: TestClient) -> None:
    response = client.post("/v2/models/rellu/infer", json={"inputs": [json_input("input", X)]})
    assert response.status_code == 404
    assert "relu" in response.json()["error"]


# ----------------------------------------------------------------------------- inference, JSON


@pytest.mark.parametrize("spec", list(CATALOGUE), ids=lambda spec: spec.name)
def test_every_catalogue_example_equals_the_native_endpoint(client: TestClient, spec: FunctionSpec) -> None:
    """The generated protocol example computes what /activate or /loss computes for the same example."""
    reply, outputs = infer(client, spec.name, infer_example(spec))
    native = client.post("/activate" if spec.kind == "activation" else "/loss", json=dict(spec.example)).json()
    assert reply["model_name"] == spec.name
    if spec.kind == "activation":
        expected = {"output": native["output"], "grad_input": native["grad"]}
        expected.update({f"grad_{name}": g for name, g in (native.get("param_grads") or {}).items()})
    else:
        expected = {"loss": native["loss"], **{f"grad_{name}": g for name, g in native["grad"].items()}}
    assert list(outputs) == list(expected)
    for name, value in expected.items():
        assert outputs[name].dtype == torch.float32
        assert_same(outputs[name], decode(value, torch.float32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_json_activation_with_gradient_equals_torch(client: TestClient, dtype: torch.dtype) -> None:
    x = X.to(dtype)
    reply, outputs = infer(
        client, "relu", {"id": "req-7", "parameters": {"grad": True}, "inputs": [json_input("input", x)]}
    )
    expected, grad = relu_with_grad(x)
    assert reply["id"] == "req-7"
    assert [(o["name"], o["datatype"], o["shape"]) for o in reply["outputs"]] == [
        ("output", reply["outputs"][0]["datatype"], [2, 3]),
        ("grad_input", reply["outputs"][0]["datatype"], [2, 3]),
    ]
    assert_same(outputs["output"], expected)
    assert_same(outputs["grad_input"], grad)


def test_nested_json_data_is_accepted(client: TestClient) -> None:
    body = {"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [[-1, 2, 3], [4, -5, 6]]}]}
    _, outputs = infer(client, "relu", body)
    assert outputs["output"].tolist() == [[0, 2, 3], [4, 0, 6]]


def test_parameters_reach_the_function(client: TestClient) -> None:
    x = X.double()
    body = {"parameters": {"negative_slope": 0.2}, "inputs": [json_input("input", x)]}
    _, outputs = infer(client, "leaky_relu", body)
    assert_same(outputs["output"], F.leaky_relu(x, 0.2))


def test_loss_with_integer_targets_and_requested_outputs(client: TestClient) -> None:
    logits = torch.tensor([[1.0, -2.0, 0.5], [0.1, 0.2, 0.3]], dtype=torch.float64)
    target = torch.tensor([2, 0], dtype=torch.int32)
    body = {
        "parameters": {"grad": True, "reduction": "sum", "label_smoothing": 0.1},
        "inputs": [json_input("input", logits), json_input("target", target)],
        "outputs": [{"name": "grad_input"}, {"name": "loss"}],
    }
    reply, outputs = infer(client, "cross_entropy", body)
    assert [o["name"] for o in reply["outputs"]] == ["grad_input", "loss"]
    leaf = logits.clone().requires_grad_(True)
    loss = F.cross_entropy(leaf, target.long(), reduction="sum", label_smoothing=0.1)
    (grad,) = torch.autograd.grad(loss, leaf)
    assert reply["outputs"][1]["shape"] == []
    assert_same(outputs["loss"], loss.detach())
    assert_same(outputs["grad_input"], grad)


def test_a_loss_with_class_index_targets_has_no_target_gradient(client: TestClient) -> None:
    body = {
        "parameters": {"grad": True},
        "inputs": [json_input("input", X[:, :2].nan_to_num()), json_input("target", torch.tensor([0, 1]))],
    }
    _, outputs = infer(client, "cross_entropy", body)
    assert list(outputs) == ["loss", "grad_input"]
    body["outputs"] = [{"name": "grad_target"}]
    response = client.post("/v2/models/cross_entropy/infer", json=body)
    assert response.status_code == 400
    assert "grad_target" in response.json()["error"]


def test_tensor_parameters_and_grad_output_are_inputs(client: TestClient) -> None:
    x = torch.tensor([[-1.5, 0.2], [3.0, -0.1]], dtype=torch.float64)
    weight = torch.tensor([0.25, 0.1], dtype=torch.float64)
    weights = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    body = {
        "parameters": {"grad": True},
        "inputs": [json_input("input", x), json_input("weight", weight), json_input("grad_output", weights)],
    }
    _, outputs = infer(client, "prelu", body)
    leaf = x.clone().requires_grad_(True)
    y = F.prelu(leaf, weight)
    (grad,) = torch.autograd.grad(y, leaf, weights)
    assert_same(outputs["output"], y.detach())
    assert_same(outputs["grad_input"], grad)


def test_integer_data_for_a_float_argument_computes_in_the_float_datatype(client: TestClient) -> None:
    body = {"inputs": [{"name": "input", "shape": [3], "datatype": "INT32", "data": [-1, 0, 5]}]}
    reply, outputs = infer(client, "relu", body)
    assert reply["outputs"][0]["datatype"] == "FP32"
    assert outputs["output"].tolist() == [0.0, 0.0, 5.0]


def test_empty_tensor(client: TestClient) -> None:
    body = {"inputs": [{"name": "input", "shape": [0, 3], "datatype": "FP32", "data": []}]}
    reply, outputs = infer(client, "relu", body)
    assert reply["outputs"][0]["shape"] == [0, 3]
    assert outputs["output"].shape == (0, 3)


# ----------------------------------------------------------------------------- the binary extension


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_binary_inputs_and_outputs_equal_torch(client: TestClient, dtype: torch.dtype) -> None:
    x = X.to(dtype)
    entry, raw = binary_input("input", x)
    request = {
        "parameters": {"grad": True},
        "inputs": [entry],
        "outputs": [
            {"name": "output", "parameters": {"binary_data": True}},
            {"name": "grad_input", "parameters": {"binary_data": True}},
        ],
    }
    content, headers = binary_body(request, [raw])
    response = client.post("/v2/models/relu/infer", content=content, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers[HEADER_LENGTH])
    reply = orjson.loads(response.content[:length])
    expected, grad = relu_with_grad(x)
    sizes = [o["parameters"]["binary_data_size"] for o in reply["outputs"]]
    assert sizes == [len(raw_bytes(expected)), len(raw_bytes(grad))]
    assert all("data" not in o for o in reply["outputs"])
    assert response.content[length:] == raw_bytes(expected) + raw_bytes(grad)


def test_binary_data_output_makes_every_output_binary(client: TestClient) -> None:
    x = X.double()
    body = {"parameters": {"grad": True, "binary_data_output": True}, "inputs": [json_input("input", x)]}
    response = client.post("/v2/models/relu/infer", json=body)
    assert response.status_code == 200
    reply, outputs = parse_reply(response.content, response.headers)
    assert all("binary_data_size" in o["parameters"] for o in reply["outputs"])
    expected, grad = relu_with_grad(x)
    assert_same(outputs["output"], expected)
    assert_same(outputs["grad_input"], grad)


def test_mixed_binary_and_json_inputs_and_outputs(client: TestClient) -> None:
    x = torch.tensor([[0.2, -1.3, 0.8], [1.1, 0.4, -0.6]], dtype=torch.float32)
    y = torch.tensor([[0.0, -1.0, 1.0], [1.5, 0.5, -0.5]], dtype=torch.float32)
    entry, raw = binary_input("target", y)
    request = {
        "parameters": {"grad": True, "reduction": "none"},
        "inputs": [json_input("input", x), entry],
        "outputs": [{"name": "loss"}, {"name": "grad_target", "parameters": {"binary_data": True}}],
    }
    content, headers = binary_body(request, [raw])
    response = client.post("/v2/models/mse_loss/infer", content=content, headers=headers)
    assert response.status_code == 200, response.text
    reply, outputs = parse_reply(response.content, response.headers)
    assert "data" in reply["outputs"][0]
    assert "binary_data_size" in reply["outputs"][1]["parameters"]
    a, b = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    loss = F.mse_loss(a, b, reduction="none")
    _, grad_b = torch.autograd.grad(loss, (a, b), torch.ones_like(loss))
    assert_same(outputs["loss"], loss.detach())
    assert_same(outputs["grad_target"], grad_b)


def test_integer_binary_targets(client: TestClient) -> None:
    logits = torch.tensor([[1.0, -2.0, 0.5], [0.1, 0.2, 0.3]])
    for dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        target = torch.tensor([2, 0], dtype=dtype)
        entries = [binary_input("input", logits), binary_input("target", target)]
        request = {"inputs": [e for e, _ in entries], "parameters": {"binary_data_output": True}}
        content, headers = binary_body(request, [raw for _, raw in entries])
        response = client.post("/v2/models/cross_entropy/infer", content=content, headers=headers)
        assert response.status_code == 200, response.text
        _, outputs = parse_reply(response.content, response.headers)
        assert_same(outputs["loss"], F.cross_entropy(logits, target.long()))


def test_gzip_request_body(client: TestClient) -> None:
    body = orjson.dumps({"inputs": [json_input("input", X)]})
    response = client.post(
        "/v2/models/relu/infer",
        content=gzip.compress(body),
        headers={"content-encoding": "gzip", "content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    _, outputs = parse_reply(response.content, response.headers)
    assert_same(outputs["output"], torch.relu(X))


# ----------------------------------------------------------------------------- errors


def _bin(shape: list[int], datatype: str, size: int) -> dict[str, Any]:
    return {"name": "input", "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": size}}


def _json(shape: list[int], datatype: str, data: Any) -> dict[str, Any]:
    return {"name": "input", "shape": shape, "datatype": datatype, "data": data}


ONE = _json([1], "FP32", [1.0])
BAD_REQUESTS: list[tuple[str, dict[str, Any], str]] = [
    ("no-inputs", {}, "inputs"),
    ("inputs-not-a-list", {"inputs": {"name": "input"}}, "inputs"),
    ("unknown-top-level-key", {"inputs": [ONE], "model": "relu"}, "model"),
    ("unknown-input", {"inputs": [{**ONE, "name": "x"}]}, "inputs.x"),
    ("missing-input", {"inputs": [{**ONE, "name": "input"}]}, "inputs.target"),
    ("duplicate-input", {"inputs": [ONE, ONE]}, "inputs.input"),
    ("bool-datatype", {"inputs": [_json([1], "BOOL", [True])]}, "inputs.input.datatype"),
    ("bytes-datatype", {"inputs": [_json([1], "BYTES", ["a"])]}, "inputs.input.datatype"),
    ("unknown-datatype", {"inputs": [_json([1], "FP8", [1.0])]}, "inputs.input.datatype"),
    ("negative-shape", {"inputs": [_json([-1], "FP32", [1.0])]}, "inputs.0.shape.0"),
    ("shape-data-mismatch", {"inputs": [_json([3], "FP32", [1.0, 2.0])]}, "inputs.input.data"),
    ("data-not-a-list", {"inputs": [_json([1], "FP32", 1.0)]}, "inputs.input.data"),
    ("string-element", {"inputs": [_json([2], "FP32", [1.0, "x"])]}, "inputs.input.data"),
    ("boolean-element", {"inputs": [_json([2], "FP32", [1.0, True])]}, "inputs.input.data"),
    ("ragged-data", {"inputs": [_json([2, 2], "FP32", [[1.0, 2.0], [3.0]])]}, "inputs.input.data"),
    ("no-data", {"inputs": [{"name": "input", "shape": [1], "datatype": "FP32"}]}, "inputs.input.data"),
    ("fp16-overflow", {"inputs": [_json([1], "FP16", [1e6])]}, "inputs.input"),
    ("int-overflow", {"inputs": [_json([1], "INT8", [300])]}, "inputs.input.data"),
    ("float-in-int-datatype", {"inputs": [_json([1], "INT32", [1.5])]}, "inputs.input.data"),
    ("misspelled-parameter", {"parameters": {"gard": True}, "inputs": [ONE]}, "parameters.gard"),
    ("grad-not-boolean", {"parameters": {"grad": "yes"}, "inputs": [ONE]}, "parameters.grad"),
    ("null-parameter", {"parameters": {"grad": None}, "inputs": [ONE]}, "parameters.grad"),
    ("unknown-output", {"inputs": [ONE], "outputs": [{"name": "y"}]}, "outputs.y"),
    ("empty-outputs", {"inputs": [ONE], "outputs": []}, "outputs"),
    ("gradient-without-grad", {"inputs": [ONE], "outputs": [{"name": "grad_input"}]}, "outputs.grad_input"),
    (
        "binary-data-not-boolean",
        {"inputs": [ONE], "outputs": [{"name": "output", "parameters": {"binary_data": 1}}]},
        "outputs.output.parameters.binary_data",
    ),
    (
        "classification-output",
        {"inputs": [ONE], "outputs": [{"name": "output", "parameters": {"classification": 2}}]},
        "outputs.output.parameters.classification",
    ),
    ("unknown-input-parameter", {"inputs": [{**ONE, "parameters": {"shared_memory_region": "r"}}]}, "inputs.input"),
    ("binary-size-without-bytes", {"inputs": [_bin([2], "FP32", 8)]}, "binary_data_size"),
    ("id-not-a-string", {"id": 42, "inputs": [ONE]}, "id"),
]


@pytest.mark.parametrize(("body", "where"), [(b, w) for _, b, w in BAD_REQUESTS], ids=[n for n, _, _ in BAD_REQUESTS])
def test_bad_requests_are_400_naming_the_field(client: TestClient, body: dict[str, Any], where: str) -> None:
    model = "mse_loss" if where == "inputs.target" else "relu"
    response = client.post(f"/v2/models/{model}/infer", json=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert list(error) == ["error"]
    assert where in error["error"]


def test_a_tensor_parameter_in_parameters_is_refused(client: TestClient) -> None:
    body = {"parameters": {"weight": 0.5}, "inputs": [json_input("input", X)]}
    response = client.post("/v2/models/prelu/infer", json=body)
    assert response.status_code == 400
    assert "parameters.weight" in response.json()["error"]


def test_mixed_float_datatypes_are_refused(client: TestClient) -> None:
    body = {"inputs": [json_input("input", X.double()), json_input("target", X.float())]}
    response = client.post("/v2/models/mse_loss/infer", json=body)
    assert response.status_code == 400
    assert "FP64" in response.json()["error"]
    assert "FP32" in response.json()["error"]


def test_float_class_indices_are_refused(client: TestClient) -> None:
    body = {"inputs": [json_input("input", X), json_input("target", torch.tensor([0.0, 1.0]))]}
    response = client.post("/v2/models/nll_loss/infer", json=body)
    assert response.status_code == 400
    assert "inputs.target" in response.json()["error"]


@pytest.mark.parametrize(
    ("header", "content", "where"),
    [
        ("not-a-number", b'{"inputs": []}', HEADER_LENGTH.lower()),
        ("1000", b'{"inputs": []}', HEADER_LENGTH.lower()),
        ("5", b'{"inputs": []}', "invalid JSON"),
    ],
)
def test_bad_header_length(client: TestClient, header: str, content: bytes, where: str) -> None:
    response = client.post("/v2/models/relu/infer", content=content, headers={HEADER_LENGTH: header})
    assert response.status_code == 400
    assert where in response.json()["error"]


@pytest.mark.parametrize(("declared", "sent"), [(8, 4), (4, 8), (12, 12)])
def test_binary_sizes_must_match_the_bytes_and_the_shape(client: TestClient, declared: int, sent: int) -> None:
    content, headers = binary_body({"inputs": [_bin([2], "FP32", declared)]}, [b"\0" * sent])
    response = client.post("/v2/models/relu/infer", content=content, headers=headers)
    assert response.status_code == 400
    assert "binary" in response.json()["error"]


def test_too_many_elements_is_413(client: TestClient) -> None:
    body = {"inputs": [_bin([10**9], "FP32", 4 * 10**9)]}
    content, headers = binary_body(body, [])
    response = client.post("/v2/models/relu/infer", content=content, headers=headers)
    assert response.status_code == 413
    assert list(response.json()) == ["error"]


def test_unknown_content_encoding_is_415(client: TestClient) -> None:
    response = client.post(
        "/v2/models/relu/infer", content=orjson.dumps({"inputs": [ONE]}), headers={"content-encoding": "br"}
    )
    assert response.status_code == 415
    assert list(response.json()) == ["error"]


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]"])
def test_unreadable_bodies_are_400(client: TestClient, content: bytes) -> None:
    response = client.post("/v2/models/relu/infer", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert list(response.json()) == ["error"]


def test_wrong_method_and_unknown_path_under_v2_use_the_protocol_error(client: TestClient) -> None:
    assert list(client.get("/v2/models/relu/infer").json()) == ["error"]
    assert client.get("/v2/models/relu/infer").status_code == 405
    assert list(client.get("/v2/no/such/path").json()) == ["error"]


def test_the_rest_of_the_service_keeps_its_error_format(client: TestClient) -> None:
    response = client.post("/activate", json={"function": "relu", "input": [1.0], "params": {"alpha": 1}})
    assert response.status_code == 422
    assert {"error", "message", "details", "truncated"} <= set(response.json())


# ----------------------------------------------------------------------------- docs and catalogue


def test_openapi_declares_every_v2_route_with_its_status_codes(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    expected = {
        "/v2": {"get"},
        "/v2/health/live": {"get"},
        "/v2/health/ready": {"get"},
        "/v2/models/{name}": {"get"},
        "/v2/models/{name}/ready": {"get"},
        "/v2/models/{name}/infer": {"post"},
        "/v2/models/{name}/versions/{version}": {"get"},
        "/v2/models/{name}/versions/{version}/ready": {"get"},
        "/v2/models/{name}/versions/{version}/infer": {"post"},
        "/v2/models/stats": {"get"},
        "/v2/models/{name}/stats": {"get"},
        "/v2/models/{name}/versions/{version}/stats": {"get"},
        "/v2/models/{name}/config": {"get"},
        "/v2/models/{name}/versions/{version}/config": {"get"},
    }
    for path, methods in expected.items():
        assert set(paths[path]) == methods
    infer_doc = paths["/v2/models/{name}/infer"]["post"]
    assert set(infer_doc["responses"]) == {"200", "400", "404", "408", "413", "415", "500", "503"}
    assert all("422" not in operation["responses"] for path in expected for operation in paths[path].values())
    assert {"404"} <= set(paths["/v2/models/{name}"]["get"]["responses"])
    assert {"503"} <= set(paths["/v2/health/ready"]["get"]["responses"])
    content = infer_doc["requestBody"]["content"]
    assert {"application/json", "application/octet-stream"} <= set(content)
    assert "InferenceRequest" in schema["components"]["schemas"]
    tags = {tag["name"]: tag["description"] for tag in schema["tags"]}
    assert "tritonclient" in tags["open inference protocol"]
    for example in content["application/json"]["examples"].values():
        model = example["summary"].split("/v2/models/")[1].split("/")[0]
        response = client.post(f"/v2/models/{model}/infer", json=example["value"])
        assert response.status_code == 200, (example["summary"], response.text)


def test_the_catalogue_shows_the_protocol_call(client: TestClient) -> None:
    entry = client.get("/functions/cross_entropy").json()["open_inference_protocol"]
    assert entry["infer"] == "/v2/models/cross_entropy/infer"
    assert entry["inputs"] == ["input", "target"]
    assert "weight" in entry["optional_inputs"]
    response = client.post(entry["infer"], json=entry["example"])
    assert response.status_code == 200


def test_server_timing_is_reported(client: TestClient) -> None:
    response = client.post("/v2/models/relu/infer", json={"inputs": [json_input("input", X)]})
    assert "compute;dur=" in response.headers["server-timing"]


def test_large_json_request_is_exact(client: TestClient) -> None:
    values = np.random.default_rng(3).standard_normal(100_000).astype(np.float32)
    x = torch.from_numpy(values)
    _, outputs = infer(client, "relu", {"inputs": [json_input("input", x)]})
    assert_same(outputs["output"], torch.relu(x))


def test_bare_non_finite_tokens_are_read(client: TestClient) -> None:
    content = b'{"inputs": [{"name": "input", "shape": [3], "datatype": "FP64", "data": [NaN, -Infinity, 2.5]}]}'
    response = client.post("/v2/models/relu/infer", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    _, outputs = parse_reply(response.content, response.headers)
    assert_same(outputs["output"], torch.relu(torch.tensor([float("nan"), float("-inf"), 2.5], dtype=torch.float64)))
    assert response.json()["outputs"][0]["data"][0] == "NaN"


def test_not_ready_while_stopping(settings: Settings) -> None:
    app = create_app(settings)
    with TestClient(app) as own:
        compute: ComputeService = app.state.compute
        assert own.portal is not None
        own.portal.call(compute.stop)
        ready = own.get("/v2/health/ready")
        assert (ready.status_code, ready.json()) == (503, {"ready": False})
        model = own.get("/v2/models/relu/ready")
        assert (model.status_code, model.json()) == (503, {"name": "relu", "ready": False})
        refused = own.post("/v2/models/relu/infer", json={"inputs": [json_input("input", X)]})
        assert refused.status_code == 503
        assert list(refused.json()) == ["error"]
        assert refused.headers["retry-after"] == "1"
        assert own.get("/v2/health/live").status_code == 200


@pytest.mark.parametrize("padding", range(4))
def test_binary_tensors_at_any_byte_offset(client: TestClient, padding: int) -> None:
    """The JSON header's length decides the alignment of the bytes after it."""
    x = torch.tensor([-2.0, 0.5, 3.0, -0.25], dtype=torch.float32)
    entry, raw = binary_input("input", x)
    request = {"id": "x" * padding, "inputs": [entry], "parameters": {"binary_data_output": True}}
    content, headers = binary_body(request, [raw])
    response = client.post("/v2/models/relu/infer", content=content, headers=headers)
    assert response.status_code == 200, response.text
    _, outputs = parse_reply(response.content, response.headers)
    assert_same(outputs["output"], torch.relu(x))


@pytest.mark.parametrize("header_length", [0, 1, 7, 61, 64, 1001])
def test_the_binary_part_of_a_read_body_starts_aligned_and_is_viewed_in_place(header_length: int) -> None:
    """Whatever the JSON header's length, the tensor bytes after it are viewed, not copied."""
    size = header_length + 4 * 1000
    body = aligned_buffer(size, header_length)
    assert len(body) == size
    assert not body.readonly
    body[header_length:] = np.arange(1000, dtype="<f4").tobytes()
    tensor = from_bytes(split_body(body, header_length).binary, [10, 100], "FP32", ("inputs", 0))
    assert tensor.ctypes.data % BINARY_ALIGNMENT == 0
    assert np.shares_memory(tensor, np.frombuffer(body, dtype=np.uint8))
    assert np.array_equal(tensor.reshape(-1), np.arange(1000, dtype=np.float32))


def test_a_binary_body_longer_than_its_content_length_is_a_400_naming_the_header() -> None:
    """uvicorn frames a body by its Content-Length; an ASGI server that hands over more is refused."""
    x = torch.tensor([-2.0, 0.5], dtype=torch.float32)
    entry, raw = binary_input("input", x)
    content, headers = binary_body({"inputs": [entry]}, [raw])
    scope_headers = [(b"content-length", str(len(content) - 3).encode())]
    scope_headers += [(name.lower().encode(), value.encode()) for name, value in headers.items()]

    async def scenario() -> list[dict[str, Any]]:
        app = create_app(Settings())
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": content, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        async with app.router.lifespan_context(app):
            scope = {
                "type": "http",
                "method": "POST",
                "path": "/v2/models/relu/infer",
                "raw_path": b"/v2/models/relu/infer",
                "root_path": "",
                "query_string": b"",
                "headers": scope_headers,
                "http_version": "1.1",
                "scheme": "http",
                "client": ("127.0.0.1", 1),
                "server": ("127.0.0.1", 80),
            }
            await app(scope, receive, send)
        return sent

    sent = asyncio.run(scenario())
    assert sent[0]["status"] == 400
    body = orjson.loads(b"".join(message.get("body", b"") for message in sent[1:]))
    assert "content-length" in body["error"]
