"""What torch does that the service must carry: full precision, warnings, parameter gradients, the catalogue's reach."""

from __future__ import annotations

import base64
import struct

import pytest
import torch
import torch.nn.functional as F
import torch.nn.modules.activation
import torch.nn.modules.adaptive
import torch.nn.modules.loss
from fastapi.testclient import TestClient

from app.compute.catalogue import CATALOGUE
from tests.support.reference import assert_same, decode, encode


def test_a_dtype_less_object_takes_the_request_dtype(client: TestClient) -> None:
    value = 7.380839391123456
    body = {"function": "relu", "dtype": "float64", "input": {"shape": [1], "data": [value]}}
    reply = client.post("/activate", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["output"] == [value]
    raw = base64.b64encode(struct.pack("<d", value)).decode()
    body["input"] = {"shape": [1], "data": raw}
    assert client.post("/activate", json=body).json()["output"] == [value]


def test_integer_data_in_a_dtype_less_object_are_class_indices(client: TestClient) -> None:
    body = {"function": "cross_entropy", "input": [[1.0, 2.0], [0.5, 0.1]], "target": {"shape": [2], "data": [1, 0]}}
    reply = client.post("/loss", json=body)
    assert reply.status_code == 200, reply.text


def test_mse_with_a_broadcast_target_computes_and_warns(client: TestClient) -> None:
    reply = client.post("/loss", json={"function": "mse_loss", "input": [[1.0, 2.0], [3.0, 4.0]], "target": [0.5]})
    assert reply.status_code == 200, reply.text
    with pytest.warns(UserWarning, match="target size") as caught:
        expected = F.mse_loss(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([0.5]))
    assert reply.json()["loss"] == expected.item()
    assert reply.json()["warnings"] == [str(w.message) for w in caught]


def test_kl_div_mean_warns_on_every_request_and_over_v2(client: TestClient) -> None:
    body = {"function": "kl_div", "input": [-1.0, -2.0], "target": [0.3, 0.7], "params": {"reduction": "mean"}}
    for _ in range(2):
        warned = client.post("/loss", json=body).json()["warnings"]
        assert len(warned) == 1
        assert "batchmean" in warned[0]
    infer = {
        "parameters": {"reduction": "mean"},
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [2], "data": [-1.0, -2.0]},
            {"name": "target", "datatype": "FP32", "shape": [2], "data": [0.3, 0.7]},
        ],
    }
    reply = client.post("/v2/models/kl_div/infer", json=infer)
    assert reply.status_code == 200, reply.text
    assert "batchmean" in reply.json()["parameters"]["warnings"][0]


def test_no_warnings_key_when_torch_is_silent(client: TestClient) -> None:
    assert "warnings" not in client.post("/activate", json={"function": "relu", "input": [1.0]}).json()


def test_prelu_weight_gradient(client: TestClient) -> None:
    x = torch.tensor([[-1.5, 0.2, 3.0], [-0.7, -0.1, 2.5]], dtype=torch.float64)
    weight = torch.tensor([0.25, 0.1, -0.3], dtype=torch.float64, requires_grad=True)
    leaf = x.clone().requires_grad_(True)
    out = F.prelu(leaf, weight)
    grad_input, grad_weight = torch.autograd.grad(out, [leaf, weight], torch.ones_like(out))
    body = {
        "function": "prelu",
        "dtype": "float64",
        "input": encode(x, "base64"),
        "params": {"weight": encode(weight.detach(), "base64")},
        "grad": True,
    }
    reply = client.post("/activate", json=body).json()
    assert_same(decode(reply["grad"], torch.float64), grad_input)
    assert_same(decode(reply["param_grads"]["weight"], torch.float64), grad_weight)
    entry = client.get("/functions/prelu").json()
    assert entry["gradient_wrt"] == ["input", "weight"]


def test_every_activation_and_loss_class_is_served_or_listed_as_not_served(client: TestClient) -> None:
    listed = {item["name"] for item in client.get("/functions").json()["not_served"]}
    modules = (torch.nn.modules.activation, torch.nn.modules.loss, torch.nn.modules.adaptive)
    classes = {name for module in modules for name in module.__all__ if isinstance(getattr(module, name), type)}
    missing = sorted(name for name in classes if CATALOGUE.find(name) is None and name not in listed)
    assert not missing, f"neither served nor listed as not served: {missing}"
    stale = sorted(name for name in listed if CATALOGUE.find(name) is not None or name not in classes)
    assert not stale, f"listed as not served but served, or not in torch.nn: {stale}"
