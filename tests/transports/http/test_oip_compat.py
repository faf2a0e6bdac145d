"""What /v2 does with requests built by other servers' clients: a body's model name and version,
parameters that are not the function's (and the rule against a misspelled one), Triton's priority
and timeout, Triton's raw binary request, the statistics and model configuration extensions, and
model metadata that lists every input. The clients themselves: tests/system/test_oip_peers.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient

from app.compute.service import ComputeService
from app.core.config import Settings
from app.core.limits import MAX_NAME
from app.main import create_app
from app.protocols.oip.parameters import MAX_LISTED, MAX_PARAMETERS, close_to
from tests.support.engine_gate import Gate
from tests.support.oip_wire import HEADER_LENGTH, json_input, parse_reply, raw_bytes
from tests.support.reference import assert_same

X = torch.tensor([[-1.5, 0.25, 3.0], [0.7, -0.1, 2.0]], dtype=torch.float32)
ONE = json_input("input", X)


def post(client: TestClient, model: str, body: dict[str, Any], **headers: str) -> tuple[int, dict[str, Any]]:
    response = client.post(f"/v2/models/{model}/infer", json=body, headers=headers)
    return response.status_code, response.json()


# ----------------------------------------------------------------------------- model name and version


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("relu", {"model_name": "relu"}),
        ("relu", {"model_name": "ReLU", "model_version": "1"}),
        ("ReLU", {"model_name": "RELU"}),
        ("relu/versions/1", {"model_name": "relu", "model_version": "1"}),
    ],
)
def test_a_body_naming_the_paths_model_is_served(client: TestClient, path: str, body: dict[str, Any]) -> None:
    status, reply = post(client, path, {**body, "inputs": [ONE]})
    assert status == 200, reply
    assert reply["model_name"] == "relu"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"model_name": "gelu"}, ["model_name", "'gelu'", "'relu'"]),
        ({"model_name": "no_such_function"}, ["model_name", "'no_such_function'", "'relu'"]),
        ({"model_version": "2"}, ["model_version", "'2'", "'1'"]),
        ({"model_name": "relu", "model_version": ""}, ["model_version", "''", "'1'"]),
    ],
)
def test_a_body_naming_another_model_or_version_is_a_400_naming_both(
    client: TestClient, body: dict[str, Any], named: list[str]
) -> None:
    status, reply = post(client, "relu", {**body, "inputs": [ONE]})
    assert status == 400
    assert all(part in reply["error"] for part in named), reply


def test_other_unknown_top_level_keys_are_still_refused(client: TestClient) -> None:
    status, reply = post(client, "relu", {"model": "relu", "inputs": [ONE]})
    assert status == 400
    assert "model" in reply["error"]


# ----------------------------------------------------------------------------- parameters not the function's


def test_parameters_not_the_functions_are_ignored_at_every_level_and_named(client: TestClient) -> None:
    """As KServe's test_infer_parameters_v2 sends them, and MLServer's content_type."""
    extra = {"test-str": "dummy", "test-bool": True, "test-int": 100, "test-float": 1.3}
    body = {
        "parameters": {**extra, "content_type": "np", "negative_slope": 0.2},
        "inputs": [{**json_input("input", X), "parameters": {**extra, "content_type": "np"}}],
        "outputs": [{"name": "output", "parameters": {"test-str": "x", "binary_data": False}}],
    }
    status, reply = post(client, "leaky_relu", body)
    assert status == 200, reply
    assert reply["parameters"]["ignored_parameters"] == [
        *(f"parameters.{key}" for key in extra),
        *(f"inputs.input.parameters.{key}" for key in extra),
        "outputs.output.parameters.test-str",
    ]
    assert_same(torch.tensor(reply["outputs"][0]["data"]).reshape(2, 3), F.leaky_relu(X, 0.2))


def test_a_reply_has_no_parameters_when_nothing_was_ignored(client: TestClient) -> None:
    status, reply = post(client, "relu", {"parameters": {"content_type": "np"}, "inputs": [ONE]})
    assert status == 200
    assert "parameters" not in reply


@pytest.mark.parametrize(
    ("model", "parameters", "where", "meant"),
    [
        ("leaky_relu", {"negative_slop": 0.2}, "parameters.negative_slop", "negative_slope"),
        ("cross_entropy", {"label_smothing": 0.1}, "parameters.label_smothing", "label_smoothing"),
        ("mse_loss", {"reduciton": "sum"}, "parameters.reduciton", "reduction"),
        ("relu", {"Grad": True}, "parameters.Grad", "grad"),
        ("relu", {"gard": True}, "parameters.gard", "grad"),
        ("relu", {"binary_data_ouput": True}, "parameters.binary_data_ouput", "binary_data_output"),
        ("relu", {"timout": 10}, "parameters.timout", "timeout"),
        ("relu", {"priorty": 1}, "parameters.priorty", "priority"),
    ],
)
def test_a_parameter_close_to_one_of_the_functions_is_refused_naming_it(
    client: TestClient, model: str, parameters: dict[str, Any], where: str, meant: str
) -> None:
    body = {"parameters": parameters, "inputs": [ONE]}
    if model in ("cross_entropy", "mse_loss"):
        target = json_input("target", torch.tensor([0, 2]) if model == "cross_entropy" else X)
        body["inputs"] = [ONE, target]
    status, reply = post(client, model, body)
    assert status == 400
    assert where in reply["error"]
    assert repr(meant) in reply["error"]


@pytest.mark.parametrize(
    ("entry", "where", "meant"),
    [
        ({"inputs": [{**ONE, "parameters": {"binary_data_sise": 24}}]}, "inputs.input.parameters", "binary_data_size"),
        (
            {"inputs": [ONE], "outputs": [{"name": "output", "parameters": {"binary_dta": True}}]},
            "outputs.output.parameters",
            "binary_data",
        ),
    ],
)
def test_a_tensor_parameter_close_to_a_known_one_is_refused(
    client: TestClient, entry: dict[str, Any], where: str, meant: str
) -> None:
    status, reply = post(client, "relu", entry)
    assert status == 400
    assert where in reply["error"]
    assert repr(meant) in reply["error"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"parameters": {"inplace": True}, "inputs": [ONE]}, "parameters.inplace"),
        ({"parameters": {"weight": 0.5}, "inputs": [ONE]}, "parameters.weight"),
        ({"parameters": {"content_type": 1}, "inputs": [ONE]}, "parameters.content_type"),
        ({"parameters": {"priority": -1}, "inputs": [ONE]}, "parameters.priority"),
        ({"parameters": {"priority": True}, "inputs": [ONE]}, "parameters.priority"),
        ({"parameters": {"timeout": 1.5}, "inputs": [ONE]}, "parameters.timeout"),
        ({"parameters": {"timeout": "5"}, "inputs": [ONE]}, "parameters.timeout"),
        (
            {"inputs": [{**ONE, "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 24}}]},
            "inputs.input.parameters.shared_memory",
        ),
        (
            {"inputs": [ONE], "outputs": [{"name": "output", "parameters": {"classification": 2}}]},
            "outputs.output.parameters.classification",
        ),
        (
            {"parameters": {f"key{i}": i for i in range(MAX_PARAMETERS + 1)}, "inputs": [ONE]},
            "parameters",
        ),
    ],
)
def test_parameters_that_must_not_pass_are_refused(client: TestClient, body: dict[str, Any], where: str) -> None:
    status, reply = post(client, "prelu" if "weight" in body.get("parameters", {}) else "relu", body)
    assert status == 400
    assert where in reply["error"]


def test_the_ignored_parameters_listed_are_bounded(client: TestClient) -> None:
    longest_key = "z" * MAX_NAME
    parameters = {longest_key: 1, **{f"unknown{i}": i for i in range(MAX_PARAMETERS - 1)}}
    status, reply = post(client, "relu", {"parameters": parameters, "inputs": [ONE]})
    assert status == 200
    listed = reply["parameters"]["ignored_parameters"]
    assert len(listed) == MAX_LISTED
    assert listed[0] == "parameters." + longest_key
    status, reply = post(client, "relu", {"parameters": {longest_key + "z": 1}, "inputs": [ONE]})
    assert status == 400  # a key over the length limit is refused before anything compares it
    assert "128" in reply["error"]


def test_closeness_ignores_case_and_long_names() -> None:
    assert close_to("LABEL_SMOOTHING", ["label_smoothing", "reduction"]) == "label_smoothing"
    assert close_to("test-float", ["label_smoothing", "reduction", "grad"]) is None
    assert close_to("reduction" * 20, ["reduction"]) is None


def test_tritons_priority_and_timeout_are_accepted(client: TestClient) -> None:
    status, reply = post(client, "relu", {"parameters": {"priority": 2, "timeout": 30_000_000}, "inputs": [ONE]})
    assert status == 200, reply
    assert "parameters" not in reply
    status, _ = post(client, "relu", {"parameters": {"timeout": 0}, "inputs": [ONE]})  # 0: no timeout, as Triton
    assert status == 200


# ----------------------------------------------------------------------------- Triton's timeout as the deadline


def _held_post(client: TestClient, gate: Gate, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """The reply to ``body`` while the engine holds it (released afterwards)."""
    outcome: dict[str, Any] = {}
    caller = threading.Thread(
        target=lambda: outcome.setdefault("reply", client.post("/v2/models/relu/infer", json=body, headers=headers))
    )
    caller.start()
    try:
        assert gate.entered.wait(10)
        caller.join(10)
    finally:
        gate.release.set()
    response = outcome["reply"]
    assert response.status_code == 503, response.text
    error: dict[str, Any] = response.json()
    return error


@pytest.mark.parametrize(
    ("timeout_us", "header", "deadline"),
    [
        (200_000, None, "0.200 s"),  # Triton's timeout alone
        (60_000_000, "0.25", "0.250 s"),  # X-Request-Timeout is shorter
        (150_000, "20", "0.150 s"),  # the timeout is shorter
    ],
)
def test_tritons_timeout_is_the_requests_deadline_the_shortest_winning(
    client: TestClient, gate: Gate, timeout_us: int, header: str | None, deadline: str
) -> None:
    headers = {} if header is None else {"X-Request-Timeout": header}
    error = _held_post(client, gate, {"parameters": {"timeout": timeout_us}, "inputs": [ONE]}, headers)
    assert f"deadline of {deadline}" in error["error"]


def test_the_servers_limit_holds_against_a_longer_timeout(gate: Gate) -> None:
    with TestClient(create_app(Settings(request_timeout_s=0.2))) as impatient:
        error = _held_post(impatient, gate, {"parameters": {"timeout": 60_000_000}, "inputs": [ONE]}, {})
    assert "deadline of 0.200 s" in error["error"]


# ----------------------------------------------------------------------------- Triton's raw binary request


def _raw(client: TestClient, model: str, content: bytes, **headers: str) -> Any:
    return client.post(f"/v2/models/{model}/infer", content=content, headers={HEADER_LENGTH: "0", **headers})


def test_a_raw_binary_request_is_answered_as_triton_answers_it(client: TestClient) -> None:
    x = torch.linspace(-3, 3, 32, dtype=torch.float32)
    response = _raw(client, "relu", raw_bytes(x))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    reply, outputs = parse_reply(response.content, response.headers)
    assert reply == {
        "model_name": "relu",
        "model_version": "1",
        "outputs": [{"name": "output", "shape": [32], "datatype": "FP32", "parameters": {"binary_data_size": 128}}],
    }
    assert response.content[int(response.headers[HEADER_LENGTH]) :] == raw_bytes(torch.relu(x))
    assert_same(outputs["output"], torch.relu(x))


def test_a_raw_binary_request_to_a_model_with_an_optional_input_uses_the_required_one(client: TestClient) -> None:
    x = torch.tensor([-2.0, 0.5, -0.5], dtype=torch.float32)
    response = _raw(client, "prelu", raw_bytes(x), **{"content-type": "application/octet-stream"})
    assert response.status_code == 200, response.text
    _, outputs = parse_reply(response.content, response.headers)
    assert_same(outputs["output"], F.prelu(x, torch.tensor([0.25])))


def test_a_compressed_raw_binary_request(client: TestClient) -> None:
    import gzip

    x = torch.linspace(-1, 1, 1000, dtype=torch.float32)
    response = _raw(client, "tanh", gzip.compress(raw_bytes(x)), **{"content-encoding": "gzip"})
    assert response.status_code == 200, response.text
    _, outputs = parse_reply(response.content, response.headers)
    assert_same(outputs["output"], torch.tanh(x))


def test_a_raw_binary_request_declared_json_is_a_400(client: TestClient) -> None:
    """Twelve bytes of JSON are not three floats."""
    response = _raw(client, "relu", b"[null, null]", **{"content-type": "application/json"})
    assert response.status_code == 400
    assert "content-type" in response.json()["error"]


@pytest.mark.parametrize(
    ("model", "content", "named"),
    [
        ("mse_loss", raw_bytes(X), ["2", "input, target", HEADER_LENGTH.lower()]),
        ("relu", b"\x00" * 6, ["FP32", "multiple of 4", "6"]),
    ],
)
def test_a_raw_binary_request_that_cannot_be_deduced_is_a_400(
    client: TestClient, model: str, content: bytes, named: list[str]
) -> None:
    response = _raw(client, model, content)
    assert response.status_code == 400
    assert all(part in response.json()["error"] for part in named), response.text


# ----------------------------------------------------------------------------- statistics


def _stats(client: TestClient, path: str) -> dict[str, Any]:
    response = client.get(path)
    assert response.status_code == 200, response.text
    (stats,) = response.json()["model_stats"]
    assert isinstance(stats, dict)
    return stats


@pytest.fixture
def fresh() -> Iterator[tuple[TestClient, ComputeService]]:
    """An app of its own, so that its statistics count only this test's requests."""
    app = create_app(Settings())
    with TestClient(app) as own:
        yield own, app.state.compute


def test_statistics_count_successes_failures_queue_and_batches(
    fresh: tuple[TestClient, ComputeService], gate: Gate
) -> None:
    client, compute = fresh
    untouched = _stats(client, "/v2/models/relu/stats")
    assert untouched["inference_count"] == untouched["execution_count"] == untouched["last_inference"] == 0
    assert untouched["batch_stats"] == []
    body = {"inputs": [ONE]}
    replies: list[int] = []

    def call(extra: dict[str, Any]) -> None:
        replies.append(client.post("/v2/models/relu/infer", json={**body, **extra}).status_code)

    # the first request holds the engine (its deadline passes: a failure); three more queue and share a call
    first = threading.Thread(target=call, args=({"parameters": {"timeout": 300_000}},))
    first.start()
    assert gate.entered.wait(10)
    queued = [threading.Thread(target=call, args=({},)) for _ in range(3)]
    for thread in queued:
        thread.start()
    deadline = time.monotonic() + 10
    while compute.queue_depth < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    first.join(10)
    gate.release.set()
    for thread in queued:
        thread.join(10)
    assert sorted(replies) == [200, 200, 200, 503]
    assert client.post("/v2/models/gelu/infer", json=body).status_code == 200
    before = time.time() * 1000

    for path in ("/v2/models/relu/stats", "/v2/models/ReLU/versions/1/stats"):
        stats = _stats(client, path)
        assert (stats["name"], stats["version"]) == ("relu", "1")
        assert stats["inference_count"] == 3
        assert stats["execution_count"] == 1  # the held call's client had gone: only the batch of three
        inference = stats["inference_stats"]
        assert inference["success"]["count"] == 3
        assert inference["fail"]["count"] == 1
        assert inference["fail"]["ns"] >= 290_000_000  # the failure took its deadline (timers may fire early)
        assert inference["queue"]["count"] == 3
        assert inference["queue"]["ns"] > 0  # they waited for the held call
        assert inference["compute_infer"]["count"] == inference["compute_input"]["count"] == 3
        assert inference["compute_output"]["count"] == 3
        assert inference["compute_input"]["ns"] == inference["compute_output"]["ns"] == 0
        assert 0 < inference["compute_infer"]["ns"] <= inference["success"]["ns"]
        assert inference["cache_hit"] == inference["cache_miss"] == {"count": 0, "ns": 0}
        (batch,) = stats["batch_stats"]
        assert batch["batch_size"] == 3
        assert batch["compute_infer"]["count"] == batch["compute_input"]["count"] == 1
        assert 0 < stats["last_inference"] <= before
        assert stats["response_stats"] == {}
        assert stats["memory_usage"] == []
    everything = client.get("/v2/models/stats").json()["model_stats"]
    assert len(everything) == len(client.app.state.catalogue)  # type: ignore[attr-defined]
    counted = {entry["name"]: entry["inference_count"] for entry in everything if entry["inference_count"]}
    assert counted == {"relu": 3, "gelu": 1}


def test_statistics_are_kept_with_metrics_off() -> None:
    with TestClient(create_app(Settings(metrics=False))) as client:
        assert client.post("/v2/models/relu/infer", json={"inputs": [ONE]}).status_code == 200
        assert _stats(client, "/v2/models/relu/stats")["inference_count"] == 1


@pytest.mark.parametrize(
    "path",
    ["/v2/models/no_such_function/stats", "/v2/models/relu/versions/2/stats", "/v2/models/relu/versions/2/config"],
)
def test_statistics_and_configuration_of_an_unknown_model_or_version_are_404(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert list(response.json()) == ["error"]


# ----------------------------------------------------------------------------- configuration and metadata


def test_model_configuration_matches_the_metadata(client: TestClient) -> None:
    for name in ("cross_entropy", "prelu", "ctc_loss", "relu"):
        config = client.get(f"/v2/models/{name}/config").json()
        metadata = client.get(f"/v2/models/{name}").json()
        assert client.get(f"/v2/models/{name}/versions/1/config").json() == config
        assert (config["name"], config["platform"], config["max_batch_size"]) == (name, metadata["platform"], 0)
        assert config["backend"] == "pytorch"
        assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [
            (i["name"], "TYPE_" + i["datatype"], i["shape"]) for i in metadata["inputs"]
        ]
        assert [i["optional"] for i in config["input"]] == [
            (i.get("parameters") or {}).get("optional", False) for i in metadata["inputs"]
        ]
        assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [
            (o["name"], "TYPE_" + o["datatype"], o["shape"]) for o in metadata["outputs"]
        ]
        assert config["model_transaction_policy"] == {"decoupled": False}


def test_cross_entropys_target_is_described_with_both_its_datatypes_and_accepts_both(client: TestClient) -> None:
    target = {i["name"]: i for i in client.get("/v2/models/cross_entropy").json()["inputs"]}["target"]
    assert target["datatype"] == "INT64"
    assert target["parameters"] == {"datatypes": "INT64,FP32"}
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    indices = torch.tensor([0, 2])
    probabilities = torch.tensor([[0.7, 0.2, 0.1], [0.0, 0.5, 0.5]])
    for given in (indices, probabilities):
        status, reply = post(
            client, "cross_entropy", {"inputs": [json_input("input", logits), json_input("target", given)]}
        )
        assert status == 200, reply
        assert_same(torch.tensor(reply["outputs"][0]["data"][0]), F.cross_entropy(logits, given))


def test_every_optional_input_is_accepted(client: TestClient) -> None:
    """prelu's weight and grad_output, as the metadata lists them."""
    metadata = client.get("/v2/models/prelu").json()
    optional = [i["name"] for i in metadata["inputs"] if (i.get("parameters") or {}).get("optional")]
    assert optional == ["weight", "grad_output"]
    x = torch.tensor([[-1.0, 2.0], [3.0, -4.0]])
    weight, weights = torch.tensor([0.1]), torch.ones(2, 2) * 2
    body = {
        "parameters": {"grad": True},
        "inputs": [json_input("input", x), json_input("weight", weight), json_input("grad_output", weights)],
    }
    status, reply = post(client, "prelu", body)
    assert status == 200, reply
    assert [o["name"] for o in reply["outputs"]] == [o["name"] for o in metadata["outputs"]]
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.prelu(leaf, weight), leaf, weights)
    assert_same(torch.tensor(reply["outputs"][1]["data"]).reshape(2, 2), grad)
    assert np.isfinite(np.asarray(reply["outputs"][0]["data"])).all()
