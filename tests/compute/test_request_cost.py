"""Every request's cost is known before it runs: each function declares how its compute time and
working memory grow, and a request whose estimate exceeds the limits gets a cheap 413 naming the
estimate and the limit, before it is queued, on both protocols."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient

from app.compute.catalogue import CATALOGUE, FunctionSpec
from app.compute.catalogue.cost import ELEMENTWISE
from app.compute.jobs import build_job
from app.core.config import Settings
from app.main import create_app

CHEAP = 0.25
"""CPU seconds (this process's, the app's threads included): a loaded machine stretches wall-clock
time, not this."""
"""Seconds a cost refusal may take: the estimate is arithmetic on shapes, nothing is computed."""


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings())) as test_client:
        yield test_client


def b64(arr: np.ndarray, dtype: str) -> dict[str, Any]:
    return {"shape": list(arr.shape), "dtype": dtype, "data": base64.b64encode(arr.tobytes()).decode()}


def multilabel(classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The costliest multilabel_margin_loss for its size: every class a target of the row."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((1, classes)).astype(np.float32), np.arange(classes, dtype=np.int64)[None, :]


@pytest.mark.parametrize("spec", list(CATALOGUE), ids=lambda spec: spec.name)
def test_every_function_declares_a_cost_that_grows_with_its_inputs(spec: FunctionSpec) -> None:
    arrays = {name: np.asarray(value) for name, value in _example_arrays(spec).items()}
    small = spec.cost(arrays, {})
    doubled = spec.cost(
        {name: np.concatenate([arr, arr], axis=-1) if arr.ndim else arr for name, arr in arrays.items()}, {}
    )
    assert small.work > 0
    assert small.memory > 0
    assert doubled.work > small.work


def _example_arrays(spec: FunctionSpec) -> dict[str, Any]:
    example = spec.example
    arrays = {name: example[name] for name in ("input", "target") if name in example}
    arrays.update(example.get("inputs", {}))
    return arrays


def test_gradients_and_wider_dtypes_raise_the_estimate() -> None:
    spec = CATALOGUE.find("mse_loss")
    assert spec is not None
    arrays = {"input": np.zeros((100, 10)), "target": np.zeros((100, 10))}
    locs = {"input": ("body", "input"), "target": ("body", "target")}
    params = {"reduction": "mean", "weight": None}

    def job(dtype: Any, grad: bool) -> Any:
        return build_job(spec, arrays, params, locs, dtype, grad, None).cost

    assert job("float32", True).work > job("float32", False).work
    assert job("float32", True).memory_bytes > job("float32", False).memory_bytes
    assert job("float64", False).memory_bytes > job("float32", False).memory_bytes


def test_the_quadratic_multilabel_margin_loss_is_refused_cheaply(client: TestClient) -> None:
    x, target = multilabel(80_000)  # the 465-byte request computed for 6 to 11 s
    started = time.process_time()
    reply = client.post(
        "/loss",
        json={"function": "multilabel_margin_loss", "input": b64(x, "float32"), "target": b64(target, "int64")},
    )
    elapsed = time.process_time() - started
    assert reply.status_code == 413, reply.text
    body = reply.json()
    assert body["error"] == "too_large"
    (detail,) = body["details"]
    assert detail["type"] == "cost_limit"
    assert detail["loc"][0] == "body"
    assert "estimated" in detail["msg"]
    assert f"{Settings().max_request_cost:.3g}" in detail["msg"]
    assert elapsed < CHEAP


def test_the_same_request_is_refused_under_the_inference_protocol(client: TestClient) -> None:
    x, target = multilabel(80_000)
    header = {
        "inputs": [
            {"name": "input", "shape": list(x.shape), "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}},
            {
                "name": "target",
                "shape": list(target.shape),
                "datatype": "INT64",
                "parameters": {"binary_data_size": target.nbytes},
            },
        ]
    }
    json_part = orjson.dumps(header)
    started = time.process_time()
    reply = client.post(
        "/v2/models/multilabel_margin_loss/infer",
        content=json_part + x.tobytes() + target.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(json_part))},
    )
    assert time.process_time() - started < CHEAP
    assert reply.status_code == 413, reply.text
    assert "estimated" in reply.json()["error"]


def test_a_request_within_the_limit_is_computed_exactly(client: TestClient) -> None:
    x, target = multilabel(2_000)
    reply = client.post(
        "/loss",
        json={
            "function": "multilabel_margin_loss",
            "input": b64(x, "float32"),
            "target": b64(target, "int64"),
            "grad": True,
        },
    )
    assert reply.status_code == 200, reply.text
    expected = F.multilabel_margin_loss(torch.from_numpy(x), torch.from_numpy(target))
    assert reply.json()["loss"] == expected.item()


def test_ctc_working_memory_counts_its_target_lengths(client: TestClient) -> None:
    """N·T·(2S+1): a few megabytes of input whose working memory would be gigabytes."""
    steps, batch, classes, longest = 2000, 32, 5, 2000
    log_probs = np.full((steps, batch, classes), -1.6, dtype=np.float32)
    targets = np.ones((batch, longest), dtype=np.int64)
    reply = client.post(
        "/loss",
        json={
            "function": "ctc_loss",
            "inputs": {
                "log_probs": b64(log_probs, "float32"),
                "targets": b64(targets, "int64"),
                "input_lengths": [steps] * batch,
                "target_lengths": [longest] * batch,
            },
            "grad": True,
        },
    )
    assert reply.status_code == 413, reply.text
    assert reply.json()["details"][0]["type"] in ("cost_limit", "memory_limit")


def test_a_lower_limit_refuses_what_the_default_admits() -> None:
    x, target = multilabel(2_000)
    body = {"function": "multilabel_margin_loss", "input": b64(x, "float32"), "target": b64(target, "int64")}
    with TestClient(create_app(Settings(max_request_cost=1e6))) as strict:
        reply = strict.post("/loss", json=body)
        assert reply.status_code == 413
        assert "1e+06" in reply.json()["details"][0]["msg"]
        assert strict.post("/activate", json={"function": "relu", "input": [1.0, -1.0]}).status_code == 200


def test_elementwise_is_the_declared_default_and_special_costs_are_named() -> None:
    special = {spec.name for spec in CATALOGUE if spec.cost is not ELEMENTWISE}
    assert {"multilabel_margin_loss", "ctc_loss"} <= special


def test_a_broadcasting_loss_is_costed_on_its_broadcast_shape() -> None:
    """An (N, 1) input against a (1, N) target is N² elements of work, of working memory and,
    with reduction 'none', of output: 2N elements sent, N² computed and returned."""
    spec = CATALOGUE.find("mse_loss")
    assert spec is not None
    n = 1000
    column, row = np.zeros((n, 1), dtype=np.float32), np.zeros((1, n), dtype=np.float32)
    broadcast = spec.cost({"input": column, "target": row}, {"reduction": "none"})
    same = spec.cost({"input": np.zeros((n, n)), "target": np.zeros((n, n))}, {"reduction": "none"})
    assert broadcast.work >= same.work / 2
    assert broadcast.memory >= n * n
    locs = {"input": ("body", "input"), "target": ("body", "target")}
    job = build_job(
        spec, {"input": column, "target": row}, {"reduction": "none", "weight": None}, locs, "float32", False, None
    )
    assert job.cost.output_elements is not None
    assert job.cost.output_elements >= n * n


def test_a_broadcasting_loss_is_held_to_the_memory_budget(device: torch.device) -> None:
    budget = 64 * 1024 * 1024
    settings = Settings(memory_budget_bytes=budget, device=str(device))
    with TestClient(create_app(settings)) as small:
        n = 5000  # 25M elements: ~100 MB of output alone, over the whole budget
        column, row = np.full((n, 1), 0.5, dtype=np.float32), np.full((1, n), 0.25, dtype=np.float32)
        body = {
            "function": "mse_loss",
            "input": b64(column, "float32"),
            "target": b64(row, "float32"),
            "params": {"reduction": "none"},
            "encoding": "base64",
        }
        refused = small.post("/loss", json=body)
        assert refused.status_code == 413, refused.text[:300]
        assert refused.json()["details"][0]["type"] == "memory_limit"
        x, y = torch.tensor([[0.5], [1.5]]), torch.tensor([[0.25, -1.0, 2.0]])
        served = small.post(
            "/loss",
            json={"function": "mse_loss", "input": x.tolist(), "target": y.tolist(), "params": {"reduction": "none"}},
        )
        assert served.status_code == 200, served.text
        assert "broadcasting" in served.json()["warnings"][0]  # torch's own warning, relayed
        expected = F.mse_loss(x.expand(2, 3), y.expand(2, 3), reduction="none")
        assert np.asarray(served.json()["loss"], dtype=np.float32).tobytes() == expected.numpy().tobytes()
