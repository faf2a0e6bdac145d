"""The operator's own functions (plugins): a fresh module of plain ``nn.Module`` subclasses, named
in the settings, is served like torch's functions, through every route, with gradients, and
compared with torch in-process bit for bit; its failures stay in their own requests."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient

from app.compute.catalogue.plugins import PluginError, build_catalogue
from app.core.config import Settings
from app.main import create_app
from tests.support.plugin_modules import FRESH, write_module

ENTRIES = ("CustomActivation", "CustomLoss", "Fragile", "soft_clip")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        name = write_module(tmp_path_factory.mktemp("plugins"), FRESH, monkeypatch)
        yield importlib.import_module(name)


@pytest.fixture(scope="module")
def client(fresh: Any, device: torch.device) -> Iterator[TestClient]:
    entries = [f"{fresh.__name__}:{entry}" for entry in ENTRIES]
    settings = Settings(plugins=entries, device=str(device), plugin_entry_points=False)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def tensor(values: Any, device: torch.device, grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device, requires_grad=grad)


def same(served: Any, expected: torch.Tensor) -> None:
    """The served JSON numbers are exactly torch's float32 values."""
    got = np.asarray(served, dtype=np.float32)
    assert got.tobytes() == expected.detach().cpu().numpy().astype(np.float32).tobytes()


X = [[-1.5, 0.2, 3.0], [0.7, -0.1, 2.5]]
T = [[0.0, 0.5, 2.0], [1.0, 0.0, 2.0]]


def test_the_catalogue_lists_them_with_their_schema(client: TestClient, fresh: Any) -> None:
    listing = client.get("/functions").json()
    names = {entry["name"] for entry in listing["functions"]}
    assert {"custom_activation", "custom_loss", "fragile", "soft_clip", "relu"} <= names
    entry = client.get("/functions/CUSTOMACTIVATION").json()
    assert entry["name"] == "custom_activation"
    assert entry["aliases"] == ["CustomActivation"]
    assert entry["kind"] == "activation"
    assert entry["summary"] == "A gated activation written for the test."
    assert entry["plugin"] == f"{fresh.__name__}:CustomActivation"
    params = {p["name"]: p for p in entry["params"]}
    assert params["beta"]["type"] == "float"
    assert params["beta"]["default"] == 1.0
    assert params["clip"]["type"] == "bool"
    assert params["power"]["type"] == "int"
    loss = client.get("/functions/custom_loss").json()
    assert loss["kind"] == "loss"
    assert [t["name"] for t in loss["tensors"]] == ["input", "target", "mask"]
    assert [t["required"] for t in loss["tensors"]] == [True, True, False]
    assert {p["name"]: p.get("choices") for p in loss["params"]}["reduction"] == ["mean", "sum", "none"]
    assert loss["gradient_wrt"] == ["input", "target", "mask"]
    assert loss["open_inference_protocol"]["infer"] == "/v2/models/custom_loss/infer"
    assert client.get("/v2/models/CustomLoss").json()["name"] == "custom_loss"
    assert client.get("/v2/models/custom_loss/ready").json() == {"name": "custom_loss", "ready": True}


def test_openapi_has_a_working_example_for_each(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path, name in (("/activate", "custom_activation"), ("/loss", "custom_loss"), ("/activate", "soft_clip")):
        examples = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"]
        example = examples[name]["value"]
        reply = client.post(path, json=example)
        assert reply.status_code == 200, reply.text


def test_an_activation_with_params_and_grad_output_equals_torch(
    client: TestClient, fresh: Any, device: torch.device
) -> None:
    weights = [[1.0, -2.0, 0.5], [3.0, 1.0, 0.25]]
    body = {"function": "CustomActivation", "input": X, "params": {"beta": 1.7, "power": 2}, "grad": True}
    reply = client.post("/activate", json={**body, "grad_output": weights}).json()
    x = tensor(X, device, grad=True)
    output = fresh.CustomActivation(beta=1.7, power=2)(x)
    (grad,) = torch.autograd.grad(output, x, tensor(weights, device))
    same(reply["output"], output)
    same(reply["grad"], grad)
    assert reply["function"] == "custom_activation"
    soft = client.post("/activate", json={"function": "soft_clip", "input": X, "params": {"limit": 2}}).json()
    same(soft["output"], fresh.soft_clip(tensor(X, device), limit=2.0))


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"beta": "steep"}, "beta", "must be a number"),
        ({"clip": 1}, "clip", "must be true or false"),
        ({"power": 1.5}, "power", "must be an integer"),
        ({"gamma": 1.0}, "gamma", "unknown parameter"),
    ],
)
def test_params_are_validated_from_the_type_hints(
    client: TestClient, params: dict[str, Any], field: str, message: str
) -> None:
    reply = client.post("/activate", json={"function": "custom_activation", "input": X, "params": params})
    assert reply.status_code == 422
    detail = reply.json()["details"][0]
    assert detail["loc"] == ["body", "params", field]
    assert message in detail["msg"]
    choice = client.post(
        "/loss", json={"function": "custom_loss", "input": X, "target": T, "params": {"reduction": "avg"}}
    )
    assert choice.status_code == 422
    assert "'mean', 'sum', 'none'" in choice.json()["details"][0]["msg"]


def test_a_loss_with_an_extra_tensor_equals_torch(client: TestClient, fresh: Any, device: torch.device) -> None:
    mask = [[1.0, 0.0, 1.0], [0.5, 1.0, 1.0]]
    body = {
        "function": "custom_loss",
        "input": X,
        "target": T,
        "inputs": {"mask": mask},
        "params": {"delta": 0.75, "reduction": "sum"},
        "grad": True,
    }
    reply = client.post("/loss", json=body).json()
    x, t, m = tensor(X, device, True), tensor(T, device, True), tensor(mask, device, True)
    loss = fresh.CustomLoss(delta=0.75, reduction="sum")(x, t, m)
    grads = torch.autograd.grad(loss, (x, t, m))
    same(reply["loss"], loss)
    for name, grad in zip(("input", "target", "mask"), grads, strict=True):
        same(reply["grad"][name], grad)
    without_mask = client.post("/loss", json={**body, "inputs": {}}).json()
    same(without_mask["loss"], fresh.CustomLoss(delta=0.75, reduction="sum")(tensor(X, device), tensor(T, device)))


@pytest.mark.parametrize(
    ("activation", "loss"),
    [
        ({"function": "custom_activation", "params": {"beta": 2.0}}, {"function": "custom_loss"}),
        ({"function": "sigmoid"}, {"function": "custom_loss", "params": {"reduction": "none"}}),
        ({"function": "CustomActivation", "params": {"clip": True}}, {"function": "mse_loss"}),
        ({"function": "sigmoid"}, {"function": "binary_cross_entropy"}),
        ({"function": "leaky_relu", "params": {"negative_slope": 0.2}}, {"function": "huber_loss"}),
    ],
)
def test_chaining_equals_loss_of_activation_in_torch(
    client: TestClient, fresh: Any, device: torch.device, activation: dict[str, Any], loss: dict[str, Any]
) -> None:
    target = [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
    body = {**loss, "input": X, "target": target, "activation": activation, "grad": True}
    reply = client.post("/loss", json=body)
    assert reply.status_code == 200, reply.text
    x, t = tensor(X, device, True), tensor(target, device)
    act_params, loss_params = activation.get("params", {}), loss.get("params", {})
    act_fn: Callable[[torch.Tensor], torch.Tensor] = {
        "custom_activation": lambda v: fresh.CustomActivation(**act_params)(v),
        "sigmoid": torch.sigmoid,
        "leaky_relu": lambda v: F.leaky_relu(v, **act_params),
    }[activation["function"].lower().replace("customactivation", "custom_activation")]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = {
        "custom_loss": lambda a, b: fresh.CustomLoss(**loss_params)(a, b),
        "mse_loss": F.mse_loss,
        "binary_cross_entropy": F.binary_cross_entropy,
        "huber_loss": F.huber_loss,
    }[loss["function"]]
    value = loss_fn(act_fn(x), t)
    (grad,) = torch.autograd.grad(value, x, torch.ones_like(value))
    same(reply.json()["loss"], value)
    same(reply.json()["grad"]["input"], grad)


def test_chaining_checks_the_loss_on_the_activation_output(client: TestClient) -> None:
    logits = {"function": "binary_cross_entropy", "input": X, "target": [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]}
    assert client.post("/loss", json=logits).status_code == 422  # raw logits are not probabilities
    assert client.post("/loss", json={**logits, "activation": "sigmoid"}).status_code == 200
    tanh = client.post("/loss", json={**logits, "activation": {"function": "tanh"}})
    assert tanh.status_code == 422
    assert tanh.json()["details"][0]["loc"] == ["body", "input"]
    assert "after tanh" in tanh.json()["details"][0]["msg"]
    for activation, loc in (
        ({"function": "tanhh"}, ["body", "activation", "function"]),
        ({"function": "mse_loss"}, ["body", "activation", "function"]),
        ({"function": "elu", "params": {"slope": 1}}, ["body", "activation", "params", "slope"]),
    ):
        reply = client.post("/loss", json={**logits, "activation": activation})
        assert reply.status_code == 422, activation
        assert reply.json()["details"][0]["loc"] == loc


def test_the_open_inference_protocol_serves_them_alone_and_chained(
    client: TestClient, fresh: Any, device: torch.device
) -> None:
    def inputs(*pairs: tuple[str, Any]) -> list[dict[str, Any]]:
        return [{"name": n, "shape": [2, 3], "datatype": "FP32", "data": np.ravel(v).tolist()} for n, v in pairs]

    alone = client.post(
        "/v2/models/custom_loss/infer",
        json={"parameters": {"grad": True, "delta": 0.25}, "inputs": inputs(("input", X), ("target", T))},
    ).json()
    x, t = tensor(X, device, True), tensor(T, device)
    loss = fresh.CustomLoss(delta=0.25)(x, t)
    (grad,) = torch.autograd.grad(loss, x)
    outputs = {o["name"]: o["data"] for o in alone["outputs"]}
    same(outputs["loss"][0], loss)
    same(outputs["grad_input"], grad.flatten())
    parameters = {"grad": True, "activation": "custom_activation", "activation.beta": 0.5}
    chained = client.post(
        "/v2/models/mse_loss/infer", json={"parameters": parameters, "inputs": inputs(("input", X), ("target", T))}
    ).json()
    x = tensor(X, device, True)
    value = F.mse_loss(fresh.CustomActivation(beta=0.5)(x), t)
    (grad,) = torch.autograd.grad(value, x)
    outputs = {o["name"]: o["data"] for o in chained["outputs"]}
    same(outputs["loss"][0], value)
    same(outputs["grad_input"], grad.flatten())
    refused = client.post(
        "/v2/models/mse_loss/infer",
        json={"parameters": {"activation.beta": 0.5}, "inputs": inputs(("input", X), ("target", T))},
    )
    assert refused.status_code == 400
    assert "activation.beta" in refused.json()["error"]


def test_a_failing_forward_fails_its_request_alone(client: TestClient) -> None:
    crash = client.post("/activate", json={"function": "fragile", "input": [1.0, 13.0]})
    assert crash.status_code == 500
    assert crash.json()["error"] == "plugin_error"
    assert crash.json()["details"][0]["msg"] == "plugin fragile failed: KeyError"
    assert "Traceback" not in crash.text
    assert "unlucky" not in crash.text
    shape = client.post("/activate", json={"function": "fragile", "input": [[[1.0, 2.0]]]})
    assert shape.status_code == 422
    assert shape.json()["details"][0]["loc"] == ["body", "input"]
    v2 = client.post(
        "/v2/models/fragile/infer", json={"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [13]}]}
    )
    assert v2.status_code == 500
    assert v2.json() == {"error": "plugin.fragile: plugin fragile failed: KeyError"}
    after = client.post("/activate", json={"function": "fragile", "input": [1.0, 12.0]})
    assert after.status_code == 200
    assert after.json()["output"] == [2.0, 24.0]
    mismatch = client.post("/loss", json={"function": "custom_loss", "input": [1.0, 2.0], "target": [1.0, 2.0, 3.0]})
    assert mismatch.status_code == 422
    # torch's own words about the shapes stay in the log: the service says it in its own
    assert mismatch.json()["details"][0] == {
        "loc": ["body", "input"],
        "msg": "custom_loss cannot compute on these shapes (input [2], target [3])",
        "type": "invalid_shape",
    }


def test_metrics_name_the_plugin(client: TestClient) -> None:
    client.post("/activate", json={"function": "soft_clip", "input": [1.0]})
    metrics = client.get("/metrics").text
    assert 'function="soft_clip"' in metrics


def test_the_cost_budget_bounds_plugins_and_chains_add_the_activation(fresh: Any, device: torch.device) -> None:
    entries = [f"{fresh.__name__}:CustomActivation", f"{fresh.__name__}:CustomLoss"]
    # 2 x 1000 elements at 30 units each: 60,000 units; with a chained activation, 90,000.
    settings = Settings(plugins=entries, device=str(device), max_request_cost=75_000.0, plugin_entry_points=False)
    values = np.linspace(-1, 1, 1000).tolist()
    with TestClient(create_app(settings)) as client:
        body = {"function": "custom_loss", "input": values, "target": values}
        assert client.post("/loss", json=body).status_code == 200
        chained = client.post("/loss", json={**body, "activation": "custom_activation"})
        assert chained.status_code == 413
        assert chained.json()["details"][0]["type"] == "cost_limit"
        big = client.post("/activate", json={"function": "custom_activation", "input": values * 3})
        assert big.status_code == 413


def test_each_app_has_the_catalogue_its_settings_name(client: TestClient) -> None:
    with TestClient(create_app(Settings(plugin_entry_points=False))) as plain:
        assert plain.get("/functions/custom_activation").status_code == 404
        reply = plain.post("/activate", json={"function": "custom_activation", "input": [1.0]})
        assert reply.status_code == 422
    assert client.get("/functions/custom_activation").status_code == 200


BROKEN = {
    "no_colon": ("{module}", "expected module:attribute"),
    "missing_module": ("no_such_module_for_torchfn:Thing", "cannot import no_such_module_for_torchfn"),
    "missing_attribute": ("{module}:Nothing", "has no attribute 'Nothing'"),
    "var_args": ("{module}:VarArgs", "forward takes *xs"),
    "untyped": ("{module}:Untyped", "parameter 'beta' has no type hint"),
    "bad_type": ("{module}:ListParam", "is not float, int, bool or Literal"),
    "clash": ("{module}:ReLU", "is already 'relu', a built-in function"),
    "no_tensor": ("{module}:NoTensor", "takes no tensor argument"),
    "not_callable": ("{module}:NUMBER", "is not an nn.Module subclass"),
    "bad_example": ("{module}:NeedsMatrix", "it failed on its example"),
    "fails_always": ("{module}:AlwaysFails", "plugin always_fails failed: KeyError. Check that its forward"),
    "import_error": ("{broken}:Anything", "cannot import"),
}

BROKEN_SOURCE = """
import torch
from torch import nn


class VarArgs(nn.Module):
    def forward(self, *xs):
        return xs[0]


class Untyped(nn.Module):
    def __init__(self, beta=1.0):
        super().__init__()

    def forward(self, x):
        return x


class ListParam(nn.Module):
    def __init__(self, sizes: list = []):
        super().__init__()

    def forward(self, x):
        return x


class ReLU(nn.Module):
    def forward(self, x):
        return x.clamp(min=0)


class NoTensor(nn.Module):
    def forward(self):
        return torch.zeros(1)


class NeedsMatrix(nn.Module):
    def forward(self, x):
        return x @ torch.ones(7, 7)


class AlwaysFails(nn.Module):
    def forward(self, x):
        return {}["scale"] * x


NUMBER = 3
"""


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_plugin_names_its_entry_and_the_reason(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = write_module(tmp_path, BROKEN_SOURCE, monkeypatch)
    broken = write_module(tmp_path, "raise RuntimeError('half-written module')\n", monkeypatch)
    template, reason = BROKEN[case]
    entry = template.format(module=module, broken=broken)
    with pytest.raises(PluginError) as error:
        build_catalogue(Settings(plugins=[entry], plugin_entry_points=False))
    assert error.value.entry == entry
    assert reason in error.value.reason
