"""Serving behaviour: torch off the event loop, settings from the environment, the catalogue."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.compute.catalogue import CATALOGUE
from app.compute.engine import Engine
from app.compute.jobs import Job, Result
from app.core.config import Settings
from app.main import create_app


@pytest.mark.serial
def test_healthz_answers_while_torch_is_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A computation that never ends must not stall /healthz: torch runs in a worker thread (all
    but the tiniest, computed on the event loop when alone: this one is over that cost)."""
    entered, release = threading.Event(), threading.Event()
    original = Engine.run

    def blocking_run(self: Engine, job: Job) -> Result:
        entered.set()
        release.wait(10)
        return original(self, job)

    monkeypatch.setattr(Engine, "run", blocking_run)
    with TestClient(create_app(Settings())) as client:
        replies: list[httpx.Response] = []
        worker = threading.Thread(
            target=lambda: replies.append(client.post("/activate", json={"function": "relu", "input": [1.0] * 2_000}))
        )
        worker.start()
        try:
            assert entered.wait(5), "the compute call never started"
            started = time.perf_counter()
            health = client.get("/healthz")
            assert health.status_code == 200
            assert time.perf_counter() - started < 1.0
            assert not replies, "the activation finished although torch is still blocked"
        finally:
            release.set()
            worker.join(10)
        assert replies[0].status_code == 200
        assert replies[0].json()["output"] == [1.0] * 2_000


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHFN_DEFAULT_DTYPE", "float64")
    monkeypatch.setenv("TORCHFN_MAX_TENSOR_ELEMENTS", "5")
    settings = Settings()
    assert settings.default_dtype == "float64"
    assert settings.max_tensor_elements == 5
    with TestClient(create_app(settings)) as client:
        ok = client.post("/activate", json={"function": "tanh", "input": [0.5]})
        assert ok.json()["dtype"] == "float64"
        too_big = client.post("/activate", json={"function": "tanh", "input": [0.5] * 6})
        assert too_big.status_code == 413


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu"])
def test_invalid_device_setting_is_refused(device: str) -> None:
    with pytest.raises(ValueError, match="device"):
        Settings(device=device)


def test_catalogue_lists_every_function_with_its_details(client: TestClient) -> None:
    listing = client.get("/functions").json()
    assert listing["count"] == len(CATALOGUE) == len(listing["functions"])
    names = {entry["name"] for entry in listing["functions"]}
    assert {
        "relu",
        "gelu",
        "prelu",
        "softmax2d",
        "cross_entropy",
        "ctc_loss",
        "triplet_margin_with_distance_loss",
    } <= names
    activations = client.get("/functions", params={"kind": "activation"}).json()
    assert {entry["kind"] for entry in activations["functions"]} == {"activation"}


@pytest.mark.parametrize("name", ["MSELoss", "mseloss", "mse_loss", "LeakyReLU", "leakyrelu"])
def test_function_found_by_alias_in_any_case(client: TestClient, name: str) -> None:
    response = client.get(f"/functions/{name}")
    assert response.status_code == 200
    assert response.json()["name"] in ("mse_loss", "leaky_relu")


def test_function_description_lists_arguments_parameters_and_example(client: TestClient) -> None:
    entry: dict[str, Any] = client.get("/functions/cross_entropy").json()
    assert entry["kind"] == "loss"
    assert entry["aliases"] == ["CrossEntropyLoss"]
    assert [t["name"] for t in entry["tensors"]] == ["input", "target"]
    params = {p["name"]: p for p in entry["params"]}
    assert params["label_smoothing"]["default"] == 0.0
    assert "ge" not in params["label_smoothing"]  # torch accepts a negative one
    assert params["label_smoothing"]["le"] == 1.0
    assert params["reduction"]["choices"] == ["none", "mean", "sum"]
    assert params["weight"]["type"] == "tensor"
    assert entry["gradient_wrt"] == ["input", "target"]
    assert "inplace" not in params
    assert "size_average" in entry["refused_params"]
    assert client.post("/loss", json=entry["example"]).status_code == 200


def test_unknown_function_lookup_suggests_names(client: TestClient) -> None:
    response = client.get("/functions/sofmax")
    assert response.status_code == 404
    assert "softmax" in response.json()["message"]


def test_activation_name_sent_to_loss_is_redirected(client: TestClient) -> None:
    response = client.post("/loss", json={"function": "relu", "input": [1.0]})
    assert response.status_code == 422
    assert "/activate" in response.json()["message"]


def test_openapi_documents_every_endpoint_status_and_example(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert {"/activate", "/loss", "/functions", "/functions/{name}", "/healthz", "/readyz"} <= set(paths)
    for path in ("/activate", "/loss"):
        operation = paths[path]["post"]
        assert {"200", "400", "413", "415", "422", "503"} <= set(operation["responses"])
        content = operation["requestBody"]["content"]["application/json"]
        ref = content["schema"]["$ref"].rsplit("/", 1)[-1]
        assert ref in schema["components"]["schemas"]
        specs = CATALOGUE.of_kind("activation" if path == "/activate" else "loss")
        chained = {"sigmoid_then_binary_cross_entropy"} if path == "/loss" else set()
        assert set(content["examples"]) == {spec.name for spec in specs} | chained
        for example in content["examples"].values():
            assert client.post(path, json=example["value"]).status_code == 200
    assert client.get("/docs").status_code == 200
