"""The Open Inference Protocol against the real server process: Triton's own Python HTTP client,
unchanged, and the binary extension by hand with httpx. Every answer is compared with torch."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import Any

import httpx
import ml_dtypes
import numpy as np
import orjson
import pytest
import torch
import torch.nn.functional as F
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.support.oip_wire import binary_body, binary_input, parse_reply, raw_bytes
from tests.support.reference import assert_same
from tests.support.server_process import RunningServer, running_server

pytestmark = pytest.mark.server

NUMPY_OF: dict[torch.dtype, Any] = {
    torch.float16: np.float16,
    torch.float32: np.float32,
    torch.float64: np.float64,
    torch.bfloat16: ml_dtypes.bfloat16,
}
DATATYPE_OF = {torch.float16: "FP16", torch.float32: "FP32", torch.float64: "FP64", torch.bfloat16: "BF16"}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


@pytest.fixture(scope="module")
def triton_client(server: RunningServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    yield client
    client.close()


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A numpy array as tritonclient wants it: bfloat16 as ml_dtypes.bfloat16."""
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def to_torch(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.bfloat16:
        assert array.dtype == ml_dtypes.bfloat16
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    assert array.dtype == NUMPY_OF[dtype]
    return torch.from_numpy(array.copy())


def gelu_and_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = x.clone().requires_grad_(True)
    y = F.gelu(leaf, approximate="tanh")
    (grad,) = torch.autograd.grad(y, leaf, torch.ones_like(y))
    return y.detach(), grad


def sample(dtype: torch.dtype) -> torch.Tensor:
    values = torch.from_numpy(np.random.default_rng(11).standard_normal((4, 5)) * 3)
    values[0, 0] = float("nan")
    return values.to(dtype)


# ----------------------------------------------------------------------------- tritonclient


def test_tritonclient_health_and_server_metadata(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready("relu")
    assert triton_client.is_model_ready("cross_entropy", model_version="1")
    assert not triton_client.is_model_ready("no_such_function")
    metadata = triton_client.get_server_metadata()
    assert "binary_tensor_data" in metadata["extensions"]
    assert metadata["name"]
    assert metadata["version"]


def test_tritonclient_model_metadata(triton_client: triton.InferenceServerClient) -> None:
    metadata = triton_client.get_model_metadata("ctc_loss")
    assert [(i["name"], i["datatype"], i["shape"]) for i in metadata["inputs"]] == [
        ("log_probs", "FP32", [-1]),
        ("targets", "INT64", [-1]),
        ("input_lengths", "INT64", [-1]),
        ("target_lengths", "INT64", [-1]),
        ("grad_output", "FP32", [-1]),
    ]
    assert [o["name"] for o in metadata["outputs"]] == ["loss", "grad_log_probs"]
    with pytest.raises(InferenceServerException) as raised:
        triton_client.get_model_metadata("no_such_function")
    assert raised.value.status() == "404"


# tritonclient sends BF16 only as binary data.
DATATYPE_CASES = [
    *((dtype, binary) for dtype in (torch.float32, torch.float64, torch.float16) for binary in (True, False)),
    (torch.bfloat16, True),
]


@pytest.mark.parametrize(
    ("dtype", "binary"),
    DATATYPE_CASES,
    ids=[f"{DATATYPE_OF[d]}-{'binary' if b else 'json'}" for d, b in DATATYPE_CASES],
)
def test_tritonclient_activation_with_gradient_equals_torch(
    triton_client: triton.InferenceServerClient, dtype: torch.dtype, binary: bool
) -> None:
    x = sample(dtype)
    given = triton.InferInput("input", list(x.shape), DATATYPE_OF[dtype])
    given.set_data_from_numpy(to_numpy(x), binary_data=binary)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("output", "grad_input")]
    result = triton_client.infer(
        "gelu", [given], outputs=outputs, parameters={"approximate": "tanh", "grad": True}, request_id="abc"
    )
    expected, grad = gelu_and_gradient(x)
    response = result.get_response()
    assert response["id"] == "abc"
    assert response["model_name"] == "gelu"
    assert all(o["datatype"] == DATATYPE_OF[dtype] for o in response["outputs"])
    assert all(("parameters" in o) == binary for o in response["outputs"])
    assert_same(to_torch(result.as_numpy("output"), dtype), expected)
    assert_same(to_torch(result.as_numpy("grad_input"), dtype), grad)


def test_tritonclient_default_outputs_come_back_binary(triton_client: triton.InferenceServerClient) -> None:
    x = sample(torch.float32)
    given = triton.InferInput("input", list(x.shape), "FP32")
    given.set_data_from_numpy(x.numpy())
    result = triton_client.infer("relu", [given], model_version="1")
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["output"]
    assert "binary_data_size" in response["outputs"][0]["parameters"]
    assert_same(to_torch(result.as_numpy("output"), torch.float32), torch.relu(x))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_loss_with_gradients_equals_torch(
    triton_client: triton.InferenceServerClient, binary: bool
) -> None:
    logits = sample(torch.float32).nan_to_num()
    target = torch.tensor([0, 4, 2, 1], dtype=torch.int64)
    weight = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0])
    inputs = []
    for name, tensor, datatype in (("input", logits, "FP32"), ("target", target, "INT64"), ("weight", weight, "FP32")):
        given = triton.InferInput(name, list(tensor.shape), datatype)
        given.set_data_from_numpy(tensor.numpy(), binary_data=binary)
        inputs.append(given)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("loss", "grad_input")]
    result = triton_client.infer(
        "cross_entropy", inputs, outputs=outputs, parameters={"grad": True, "label_smoothing": 0.05}
    )
    leaf = logits.clone().requires_grad_(True)
    loss = F.cross_entropy(leaf, target, weight=weight, label_smoothing=0.05)
    (grad,) = torch.autograd.grad(loss, leaf)
    assert result.get_output("loss")["shape"] == []
    assert_same(to_torch(result.as_numpy("loss"), torch.float32), loss.detach())
    assert_same(to_torch(result.as_numpy("grad_input"), torch.float32), grad)


def test_tritonclient_compressed_request(triton_client: triton.InferenceServerClient) -> None:
    x = sample(torch.float64)
    given = triton.InferInput("input", list(x.shape), "FP64")
    given.set_data_from_numpy(x.numpy())
    for algorithm in ("gzip", "deflate"):
        result = triton_client.infer("tanh", [given], request_compression_algorithm=algorithm)
        assert_same(to_torch(result.as_numpy("output"), torch.float64), torch.tanh(x))


def test_tritonclient_sees_bad_requests_as_errors(triton_client: triton.InferenceServerClient) -> None:
    x = sample(torch.float32)
    given = triton.InferInput("inputs", list(x.shape), "FP32")
    given.set_data_from_numpy(x.numpy())
    with pytest.raises(InferenceServerException) as raised:
        triton_client.infer("relu", [given])
    assert raised.value.status() == "400"
    assert "inputs.inputs" in raised.value.message()
    with pytest.raises(InferenceServerException) as unknown:
        triton_client.infer("no_such_function", [given])
    assert unknown.value.status() == "404"


# ----------------------------------------------------------------------------- by hand, with httpx


def test_binary_extension_by_hand_against_the_live_server(server: RunningServer) -> None:
    x = torch.from_numpy(np.random.default_rng(5).standard_normal(100_000).astype(np.float32))
    entry, raw = binary_input("input", x)
    request = {"inputs": [entry], "outputs": [{"name": "output", "parameters": {"binary_data": True}}]}
    content, headers = binary_body(request, [raw])
    with httpx.Client(base_url=server.url, timeout=60) as client:
        response = client.post("/v2/models/relu/infer", content=content, headers=headers)
        assert response.status_code == 200, response.text
        length = int(response.headers["inference-header-content-length"])
        reply = orjson.loads(response.content[:length])
        assert reply["outputs"] == [
            {"name": "output", "shape": [100_000], "datatype": "FP32", "parameters": {"binary_data_size": 400_000}}
        ]
        assert response.content[length:] == raw_bytes(torch.relu(x))
        compressed = client.post(
            "/v2/models/relu/infer", content=gzip.compress(content), headers={**headers, "content-encoding": "gzip"}
        )
        assert compressed.status_code == 200
        assert compressed.content == response.content


def test_json_inference_by_hand_against_the_live_server(server: RunningServer) -> None:
    body = {
        "id": "7",
        "parameters": {"grad": True, "reduction": "sum"},
        "inputs": [
            {"name": "input", "shape": [2, 2], "datatype": "FP64", "data": [0.5, -1.0, 2.0, 0.0]},
            {"name": "target", "shape": [2, 2], "datatype": "FP64", "data": [[1.0, 0.0], [1.5, -0.5]]},
        ],
    }
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.get("/v2/health/live").json() == {"live": True}
        response = client.post("/v2/models/huber_loss/infer", json=body)
    assert response.status_code == 200, response.text
    reply, outputs = parse_reply(response.content, response.headers)
    assert reply["id"] == "7"
    a = torch.tensor([[0.5, -1.0], [2.0, 0.0]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[1.0, 0.0], [1.5, -0.5]], dtype=torch.float64, requires_grad=True)
    loss = F.huber_loss(a, b, reduction="sum")
    grad_a, grad_b = torch.autograd.grad(loss, (a, b))
    assert_same(outputs["loss"], loss.detach())
    assert_same(outputs["grad_input"], grad_a)
    assert_same(outputs["grad_target"], grad_b)
