"""Both protocols share their guards, and errors say what happened, no more: shapes past the
limits are 413 (never 500), integers past int64 are 422 at the tensor, one JSON parser decides
what is valid JSON, running out of memory is 503, and no allocator or numpy internals leak."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.compute.engine import Engine
from app.compute.jobs import Job, Result
from app.core.config import Settings
from app.main import create_app

INT64_PAST = 2**63


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings()), raise_server_exceptions=False) as test_client:
        yield test_client


def v2_input(shape: list[int], datatype: str, data: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]}


@pytest.mark.parametrize("shape", [[0, 2**62], [2**62, 0], [2**63], [0, 2**40, 2**40]])
def test_huge_shapes_are_413_on_both_protocols(client: TestClient, shape: list[int]) -> None:
    v2 = client.post("/v2/models/relu/infer", json=v2_input(shape, "FP32", []))
    assert v2.status_code == 413, v2.text
    native = client.post("/activate", json={"function": "relu", "input": {"shape": shape, "data": []}})
    assert native.status_code == 413, native.text


@pytest.mark.parametrize("data", [[INT64_PAST], [[INT64_PAST, 1]], [1, INT64_PAST]])
def test_integers_past_int64_are_422_at_the_tensor(client: TestClient, data: Any) -> None:
    reply = client.post("/activate", json={"function": "relu", "input": data})
    assert reply.status_code == 422, reply.text
    (detail,) = reply.json()["details"]
    assert detail["loc"][:2] == ["body", "input"]
    assert detail["type"] == "integer_overflow"
    assert "numpy" not in reply.text
    assert "ulonglong" not in reply.text
    loss = client.post("/loss", json={"function": "cross_entropy", "input": [[1.0, 2.0]], "target": [INT64_PAST]})
    assert loss.status_code == 422
    assert loss.json()["details"][0]["loc"] == ["body", "target"]
    v2 = client.post("/v2/models/relu/infer", json=v2_input([1], "INT64", [INT64_PAST]))
    assert v2.status_code == 400, v2.text
    assert "inputs.input" in v2.json()["error"]


def test_bare_non_finite_tokens_are_read_by_the_one_parser(client: TestClient) -> None:
    body = b'{"inputs": [{"name": "input", "shape": [3], "datatype": "FP32", "data": [NaN, -Infinity, 1.5]}]}'
    reply = client.post("/v2/models/relu/infer", content=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"][0]["data"] == ["NaN", 0.0, 1.5]


@pytest.mark.parametrize(
    "body",
    [
        b'{"parameters": {"negative_slope": 1e400}, "inputs": [{"name": "input", "shape": [1], "datatype": "FP32",'
        b' "data": [NaN]}]}',
        b'{"inputs": [{"name": "input", "shape": [2], "datatype": "FP32", "data": [NaN, 1e400]}]}',
        b'{"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [-NaN]}]}',
    ],
)
def test_what_json_refuses_stays_refused_beside_bare_tokens(client: TestClient, body: bytes) -> None:
    reply = client.post("/v2/models/leaky_relu/infer", content=body)
    assert reply.status_code == 400, reply.text
    assert "JSON" in reply.json()["error"]


def test_a_string_that_looks_like_a_token_is_left_alone(client: TestClient) -> None:
    body = b'{"id": "NaN Infinity", "inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [NaN]}]}'
    reply = client.post("/v2/models/relu/infer", content=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["id"] == "NaN Infinity"


def test_running_out_of_memory_on_the_host_is_503_without_allocator_internals(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def exhausted(engine: Engine, job: Job) -> Result:
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 140737488355328 bytes. Error code 12 (Cannot allocate memory)"
        )

    monkeypatch.setattr(Engine, "_compute", exhausted)
    for path, body in (
        ("/activate", {"function": "relu", "input": [1.0]}),
        ("/v2/models/relu/infer", v2_input([1], "FP32", [1.0])),
    ):
        reply = client.post(path, json=body)
        assert reply.status_code == 503, reply.text
        assert reply.headers["retry-after"] == "1"
        assert "enforce" not in reply.text
        assert "alloc_cpu" not in reply.text


def test_memory_error_while_decoding_is_503(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.protocols.native.codec as json_protocol

    def no_memory(body: bytes, bare_non_finite: bool = False) -> dict[str, Any]:
        raise MemoryError

    monkeypatch.setattr(json_protocol, "parse_object", no_memory)
    reply = client.post("/activate", json={"function": "relu", "input": [1.0]})
    assert reply.status_code == 503, reply.text
    assert reply.json()["details"][0]["type"] == "out_of_memory"


def test_every_bad_tensor_of_a_request_is_reported(client: TestClient) -> None:
    reply = client.post(
        "/loss",
        json={
            "function": "mse_loss",
            "input": [1.0, "one"],
            "target": [[1.0], [2.0, 3.0]],
            "params": {"weight": [True]},
        },
    )
    assert reply.status_code == 422, reply.text
    locs = [tuple(detail["loc"][:2]) for detail in reply.json()["details"]]
    assert ("body", "input") in locs
    assert ("body", "target") in locs
    assert ("body", "params") in locs
