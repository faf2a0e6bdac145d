"""/v2 with the official clients of the other servers that speak the Open Inference Protocol, unchanged,
against the real server (uvicorn on loopback): Triton's (tritonclient.http and .aio), KServe's
(``InferenceRESTClient`` with ``InferRequest`` objects, JSON and binary) and MLServer's (its codecs
and types build the requests and read the replies). Every answer is compared with torch, and the
replies are validated against the protocol's OpenAPI schema (tests/data/open_inference_rest.yaml)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import numpy as np
import orjson
import pytest
import requests
import torch
import torch.nn.functional as F
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from kserve import InferenceRESTClient, InferInput, InferRequest, InferResponse, RESTConfig
from kserve.protocol.infer_type import RequestedOutput

from app.compute.catalogue import CATALOGUE
from app.core.config import Settings
from app.main import create_app
from tests.support.inprocess_server import serving
from tests.support.oip_schema import INFER, MODEL, assert_valid, spec_document
from tests.support.oip_wire import HEADER_LENGTH
from tests.support.paths import ROOT
from tests.support.reference import assert_same

X = np.array([[-1.5, 0.25, 3.0], [0.7, -0.1, 2.0]], dtype=np.float32)


def tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor of a client's array (a copy: the clients' arrays may be read-only views)."""
    return torch.from_numpy(np.array(array))


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serving(create_app(Settings())) as base:
        yield base


# ----------------------------------------------------------------------------- the protocol's OpenAPI schema


def test_the_schema_is_the_protocols_and_is_checked() -> None:
    """The validator does refuse what the schema forbids (a reply without outputs)."""
    assert spec_document()["info"]["title"] == "Data Plane"
    with pytest.raises(jsonschema.ValidationError):
        assert_valid({"model_name": "relu"}, INFER, "post", 200)


def test_metadata_and_errors_validate_against_the_schema(url: str) -> None:
    with httpx.Client(base_url=url) as client:
        assert_valid(client.get("/v2").json(), "/v2/", "get", 200)
        for spec in CATALOGUE:
            assert_valid(client.get(f"/v2/models/{spec.name}/versions/1").json(), MODEL, "get", 200)
        bad = client.post("/v2/models/relu/infer", json={"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]})
        assert bad.status_code == 400
        assert_valid(bad.json(), INFER, "post", 400)


# ----------------------------------------------------------------------------- Triton's client, sync and aio


@pytest.fixture(scope="module")
def triton_client(url: str) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=url.removeprefix("http://"))
    yield client
    client.close()


def test_tritonclient_sees_the_extensions_metadata_and_configuration(
    triton_client: triton.InferenceServerClient,
) -> None:
    assert {"binary_tensor_data", "statistics", "model_configuration"} <= set(
        triton_client.get_server_metadata()["extensions"]
    )
    metadata = triton_client.get_model_metadata("cross_entropy")
    assert [(i["name"], i["datatype"], i.get("parameters")) for i in metadata["inputs"]] == [
        ("input", "FP32", None),
        ("target", "INT64", {"datatypes": "INT64,FP32"}),
        ("weight", "FP32", {"optional": True}),
        ("grad_output", "FP32", {"optional": True}),
    ]
    config = triton_client.get_model_config("cross_entropy", model_version="1")
    assert config["max_batch_size"] == 0
    assert [(i["name"], i["data_type"], i["optional"]) for i in config["input"]] == [
        ("input", "TYPE_FP32", False),
        ("target", "TYPE_INT64", False),
        ("weight", "TYPE_FP32", True),
        ("grad_output", "TYPE_FP32", True),
    ]
    assert [o["name"] for o in config["output"]] == [o["name"] for o in metadata["outputs"]]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_priority_timeout_and_parameters(
    triton_client: triton.InferenceServerClient, binary: bool
) -> None:
    given = triton.InferInput("input", list(X.shape), "FP32")
    given.set_data_from_numpy(X, binary_data=binary)
    wanted = [triton.InferRequestedOutput("output", binary_data=binary)]
    result = triton_client.infer(
        "leaky_relu",
        [given],
        outputs=wanted,
        priority=3,
        timeout=20_000_000,
        parameters={"negative_slope": 0.3, "custom": "x"},
    )
    response = result.get_response()
    assert response["parameters"] == {"ignored_parameters": ["parameters.custom"]}
    assert_valid(response, INFER, "post", 200, binary=binary)
    assert_same(tensor(result.as_numpy("output")), F.leaky_relu(torch.from_numpy(X), 0.3))


def test_tritonclient_reads_the_statistics(triton_client: triton.InferenceServerClient) -> None:
    def tanh_stats(**version: str) -> dict[str, Any]:
        (stats,) = triton_client.get_inference_statistics("tanh", **version)["model_stats"]
        assert isinstance(stats, dict)
        return stats

    before = tanh_stats()
    given = triton.InferInput("input", list(X.shape), "FP32")
    given.set_data_from_numpy(X)
    for _ in range(2):
        triton_client.infer("tanh", [given])
    after = tanh_stats(model_version="1")
    assert (after["name"], after["version"]) == ("tanh", "1")
    assert after["inference_count"] - before["inference_count"] == 2
    assert after["execution_count"] - before["execution_count"] == 2  # one after the other: not batched
    for stat in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert after["inference_stats"][stat]["count"] - before["inference_stats"][stat]["count"] == 2
    assert after["inference_stats"]["success"]["ns"] > before["inference_stats"]["success"]["ns"]
    everything = triton_client.get_inference_statistics()["model_stats"]
    assert [entry["name"] for entry in everything] == [spec.name for spec in CATALOGUE]


def test_tritonclient_aio(url: str) -> None:
    async def scenario() -> None:
        async with triton_aio.InferenceServerClient(url=url.removeprefix("http://")) as client:
            assert await client.is_server_ready()
            assert await client.is_model_ready("relu")
            assert "statistics" in (await client.get_server_metadata())["extensions"]
            metadata = await client.get_model_metadata("prelu")
            assert [i["name"] for i in metadata["inputs"]] == ["input", "weight", "grad_output"]
            config = await client.get_model_config("prelu")
            assert [i["optional"] for i in config["input"]] == [False, True, True]
            for binary in (True, False):
                given = triton_aio.InferInput("input", list(X.shape), "FP32")
                given.set_data_from_numpy(X, binary_data=binary)
                weight = triton_aio.InferInput("weight", [1], "FP32")
                weight.set_data_from_numpy(np.array([0.5], dtype=np.float32), binary_data=binary)
                outputs = [
                    triton_aio.InferRequestedOutput(name, binary_data=binary) for name in ("output", "grad_input")
                ]
                result = await client.infer(
                    "prelu", [given, weight], outputs=outputs, parameters={"grad": True}, timeout=20_000_000
                )
                leaf = torch.from_numpy(X).requires_grad_(True)
                y = F.prelu(leaf, torch.tensor([0.5]))
                (grad,) = torch.autograd.grad(y, leaf, torch.ones_like(y))
                assert_same(tensor(result.as_numpy("output")), y.detach())
                assert_same(tensor(result.as_numpy("grad_input")), grad)
            (stats,) = (await client.get_inference_statistics("prelu"))["model_stats"]
            assert stats["inference_count"] >= 2

    asyncio.run(scenario())


# ----------------------------------------------------------------------------- Triton's raw binary request


def test_tritons_raw_binary_request_as_its_qa_sends_it(url: str) -> None:
    """Triton's qa/L0_http test_raw_binary, on relu of non-negative values (an identity there)."""
    for count in (8, 32):
        input_bytes = np.arange(count, dtype=np.float32).tobytes()
        r = requests.post(f"{url}/v2/models/relu/infer", data=input_bytes, headers={HEADER_LENGTH: "0"}, timeout=30)
        r.raise_for_status()
        header_size = int(r.headers[HEADER_LENGTH])
        assert r.content[header_size:] == input_bytes
        assert_valid(orjson.loads(r.content[:header_size]), INFER, "post", 200, binary=True)


def test_tritons_raw_binary_request_to_a_model_of_several_inputs_is_refused(url: str) -> None:
    """Triton's test_multi_inputs: the input cannot be deduced."""
    data = np.arange(24, dtype=np.float32).tobytes()
    r = requests.post(f"{url}/v2/models/mse_loss/infer", data=data, headers={HEADER_LENGTH: "0"}, timeout=30)
    assert r.status_code == 400
    assert "1 required input" in r.json()["error"]


# ----------------------------------------------------------------------------- KServe's client


def kserve_infer(url: str, request: InferRequest) -> InferResponse:
    async def call() -> InferResponse:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
        try:
            response = await client.infer(url, request, model_name=request.model_name)
        finally:
            await client.close()
        assert isinstance(response, InferResponse)
        return response

    return asyncio.run(call())


def test_kserve_client_with_its_tests_parameters(url: str) -> None:
    """KServe's test_infer_parameters_v2: parameters that are not the function's at request and input level;
    its InferRequest writes model_name and an id into the body."""
    extra = {"test-str": "dummy", "test-bool": True, "test-int": 100, "test-float": 1.3}
    request = InferRequest(
        model_name="relu",
        request_id="123",
        parameters=extra,
        infer_inputs=[
            InferInput(name="input", datatype="FP32", shape=list(X.shape), data=X.ravel().tolist(), parameters=extra)
        ],
    )
    response = kserve_infer(url, request)
    assert response.model_name == "relu"
    assert response.id == "123"
    ignored = response.parameters["ignored_parameters"]
    assert ignored == [*(f"parameters.{k}" for k in extra), *(f"inputs.input.parameters.{k}" for k in extra)]
    assert_same(tensor(response.outputs[0].as_numpy()), torch.relu(torch.from_numpy(X)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_kserve_client_binary_inputs_and_outputs(url: str, dtype: type[np.floating[Any]]) -> None:
    x = X.astype(dtype)
    given = InferInput(
        name="input", shape=list(x.shape), datatype={np.float32: "FP32", np.float64: "FP64", np.float16: "FP16"}[dtype]
    )
    given.set_data_from_numpy(x, binary_data=True)
    request = InferRequest(
        model_name="gelu",
        infer_inputs=[given],
        parameters={"grad": True},
        request_outputs=[
            RequestedOutput(name="output", parameters={"binary_data": True}),
            RequestedOutput(name="grad_input", parameters={"binary_data": dtype is not np.float16}),
        ],
    )
    response = kserve_infer(url, request)
    leaf = torch.from_numpy(x).requires_grad_(True)
    y = F.gelu(leaf)
    (grad,) = torch.autograd.grad(y, leaf, torch.ones_like(y))
    outputs = {output.name: output for output in response.outputs}
    assert_same(tensor(outputs["output"].as_numpy()), y.detach())
    assert_same(tensor(outputs["grad_input"].as_numpy()), grad)


def test_kserve_client_loss_with_class_indices_and_health(url: str) -> None:
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], dtype=np.float64)
    target = np.array([0, 2], dtype=np.int64)
    request = InferRequest(
        model_name="CrossEntropyLoss",  # an alias, as the path's lookup takes it
        infer_inputs=[
            InferInput(name="input", shape=[2, 3], datatype="FP64", data=logits.ravel().tolist()),
            InferInput(name="target", shape=[2], datatype="INT64", data=target.tolist()),
        ],
        parameters={"label_smoothing": 0.1},
    )
    response = kserve_infer(url, request)
    assert response.model_name == "cross_entropy"
    expected = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(target), label_smoothing=0.1)
    assert_same(tensor(response.outputs[0].as_numpy()), expected)

    async def health() -> tuple[bool, bool, bool]:
        client = InferenceRESTClient(RESTConfig(protocol="v2"))
        try:
            return (
                await client.is_server_live(url),
                await client.is_server_ready(url),
                await client.is_model_ready(url, "cross_entropy"),
            )
        finally:
            await client.close()

    assert asyncio.run(health()) == (True, True, True)


# ----------------------------------------------------------------------------- MLServer's codecs and types


def test_mlserver_codecs_and_types(url: str) -> None:
    """NumpyRequestCodec and NumpyCodec build the requests (content_type at request and input level),
    MLServer's types read the replies and the metadata: tests/support/mlserver_peer.py, in a process of its
    own (MLServer's generated gRPC code and KServe's define the same protobuf symbols)."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.mlserver_peer", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [
        "numpy_request_codec",
        "numpy_codec_for_each_input_of_a_loss",
        "types_read_the_metadata",
    ]
