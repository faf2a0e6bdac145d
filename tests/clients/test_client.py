"""The Python client (clients/python, installed by the dev requirements) against the real server
process: every float dtype, both wire forms, gradients, torch tensors, the catalogue, bad input
as typed exceptions, and the async client. Every number is compared with torch bit for bit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchfn_client import AsyncClient, Client, InvalidInput, NotFound
from torchfn_client.arrays import Array

from tests.support.reference import DTYPES, assert_same
from tests.support.server_process import RunningServer, running_server

pytestmark = pytest.mark.server

NUMPY_DTYPES: dict[str, Any] = {
    "float32": np.float32,
    "float64": np.float64,
    "float16": np.float16,
    "bfloat16": ml_dtypes.bfloat16,
}
SMALL, LARGE = 6, 3000
"""Element counts on either side of the client's list limit (1,024): JSON lists, then base64."""


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[Client]:
    with Client(server.url) as api:
        yield api


def random_array(size: int, dtype: str, seed: int = 0) -> Array:
    values = np.random.default_rng(seed).standard_normal(size) * 3
    return values.astype(NUMPY_DTYPES[dtype])


def torch_of(array: Array) -> torch.Tensor:
    if array.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(array.copy())


def reference_vjp(
    function: Any, tensors: dict[str, torch.Tensor], device: torch.device, **params: Any
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``function(**tensors, **params)`` and its gradients (ones as the output's weights), on ``device``."""
    leaves = {name: t.to(device).requires_grad_(True) for name, t in tensors.items()}
    output = function(**leaves, **params)
    grads = torch.autograd.grad(output, list(leaves.values()), torch.ones_like(output))
    return output.detach().cpu(), {name: g.cpu() for name, g in zip(leaves, grads, strict=True)}


@pytest.mark.parametrize("size", [SMALL, LARGE])
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_activation_in_every_dtype_with_its_gradient(
    client: Client, device: torch.device, dtype: str, size: int
) -> None:
    x = random_array(size, dtype)
    result = client.activate("gelu", x, grad=True, params={"approximate": "tanh"})
    assert result.dtype == dtype
    assert result.output.dtype == x.dtype
    assert result.grad is not None
    assert result.grad.dtype == x.dtype
    expected, grads = reference_vjp(F.gelu, {"input": torch_of(x)}, device, approximate="tanh")
    as_torch = result.to_torch()
    assert_same(as_torch.output, expected)
    assert as_torch.grad is not None
    assert_same(as_torch.grad, grads["input"])


@pytest.mark.parametrize("size", [SMALL, LARGE])
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_loss_in_every_dtype_with_gradients(client: Client, device: torch.device, dtype: str, size: int) -> None:
    prediction, target = random_array(size, dtype, seed=1), random_array(size, dtype, seed=2)
    result = client.loss("MSELoss", prediction, target, grad=True, params={"reduction": "sum"})
    assert result.function == "mse_loss"
    assert result.dtype == dtype
    assert result.loss.shape == ()
    assert result.loss.dtype == prediction.dtype
    expected, grads = reference_vjp(
        F.mse_loss, {"input": torch_of(prediction), "target": torch_of(target)}, device, reduction="sum"
    )
    as_torch = result.to_torch()
    assert_same(as_torch.loss, expected)
    assert as_torch.grad is not None
    assert set(as_torch.grad) == {"input", "target"}
    for name in ("input", "target"):
        assert_same(as_torch.grad[name], grads[name])


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_torch_tensors_in_and_out(client: Client, device: torch.device, dtype: str) -> None:
    x = torch.linspace(-3, 3, 2000, dtype=DTYPES[dtype]).reshape(40, 50).requires_grad_(True)
    weights = torch.rand(40, 50, generator=torch.Generator().manual_seed(3)).to(DTYPES[dtype])
    result = client.activate("silu", x, grad=True, grad_output=weights).to_torch()
    leaf = x.detach().to(device).requires_grad_(True)
    output = F.silu(leaf)
    (grad,) = torch.autograd.grad(output, leaf, weights.to(device))
    assert_same(result.output, output.detach().cpu())
    assert result.grad is not None
    assert_same(result.grad, grad.cpu())


def test_dtype_follows_the_arrays_unless_given(client: Client) -> None:
    assert client.activate("relu", np.ones(3, dtype=np.float16)).dtype == "float16"
    assert client.activate("relu", [1.0, -1.0]).dtype == "float32"  # plain lists: the server's default
    explicit = client.activate("relu", np.ones(3, dtype=np.float16), dtype=torch.bfloat16)
    assert explicit.dtype == "bfloat16"
    assert explicit.output.dtype == ml_dtypes.bfloat16
    assert client.activate("relu", [0.5], dtype="float64").output.dtype == np.float64
    with pytest.raises(ValueError, match="dtype must be one of"):
        client.activate("relu", [1.0], dtype="int8")


@pytest.mark.parametrize("size", [3, LARGE])
def test_non_finite_values_travel_both_ways(client: Client, size: int) -> None:
    x = np.linspace(-1, 1, size, dtype=np.float32)
    x[:3] = [np.nan, np.inf, -np.inf]
    output = client.activate("relu", x).output
    assert np.isnan(output[0])
    assert output[1] == np.inf
    assert output[2] == 0.0
    np.testing.assert_array_equal(output[3:], np.maximum(x[3:], 0))


def test_a_reduction_none_loss_with_grad_output(client: Client, device: torch.device) -> None:
    prediction = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], dtype=np.float32)
    result = client.loss(
        "cross_entropy", prediction, np.array([0, 2]), grad=True, params={"reduction": "none"}, grad_output=[1.0, 2.0]
    )
    leaf = torch.from_numpy(prediction).to(device).requires_grad_(True)
    expected = F.cross_entropy(leaf, torch.tensor([0, 2], device=device), reduction="none")
    (grad,) = torch.autograd.grad(expected, leaf, torch.tensor([1.0, 2.0], device=device))
    as_torch = result.to_torch()
    assert_same(as_torch.loss, expected.detach().cpu())
    assert as_torch.grad is not None
    assert set(as_torch.grad) == {"input"}
    assert_same(as_torch.grad["input"], grad.cpu())


def test_tensors_under_inputs_and_tensor_params(client: Client, device: torch.device) -> None:
    anchor, positive, negative = (random_array(12, "float64", seed=s).reshape(3, 4) for s in (4, 5, 6))
    result = client.loss(
        "triplet_margin_loss", inputs={"anchor": anchor, "positive": positive, "negative": negative}, grad=True
    )
    tensors = {"anchor": torch_of(anchor), "positive": torch_of(positive), "negative": torch_of(negative)}
    expected, grads = reference_vjp(F.triplet_margin_loss, tensors, device)
    as_torch = result.to_torch()
    assert result.dtype == "float64"
    assert_same(as_torch.loss, expected)
    assert as_torch.grad is not None
    for name, grad in grads.items():
        assert_same(as_torch.grad[name], grad)
    weighted = client.loss(
        "cross_entropy", [[1.0, 2.0, 3.0]], [2], params={"weight": np.array([1.0, 2.0, 0.5], dtype=np.float32)}
    )
    weight = torch.tensor([1.0, 2.0, 0.5], device=device)
    reference = F.cross_entropy(
        torch.tensor([[1.0, 2.0, 3.0]], device=device), torch.tensor([2], device=device), weight
    )
    assert_same(weighted.to_torch().loss, reference.cpu())


def test_bad_input_raises_a_typed_error_naming_the_field(client: Client) -> None:
    with pytest.raises(InvalidInput) as caught:
        client.activate("leaky_relu", [1.0], params={"negative_slope": "steep"})
    error = caught.value
    assert (error.status, error.error) == (422, "invalid_request")
    assert error.field == "body.params.negative_slope"
    assert error.loc == ("body", "params", "negative_slope")
    assert "must be a number" in error.message
    assert error.request_id
    with pytest.raises(InvalidInput) as caught:
        client.activate("relu", [1.0, "x"])  # sent as given: the server names the element
    assert caught.value.loc == ("body", "input", 1)
    with pytest.raises(InvalidInput) as caught:
        client.activate("mse_loss", [1.0])
    assert caught.value.field == "body.function"
    assert "POST it to /loss" in caught.value.message
    with pytest.raises(InvalidInput) as caught:
        client.loss("cross_entropy", [[1.0, 2.0]], [5])
    assert caught.value.field == "body.target"


def test_the_catalogue(client: Client) -> None:
    everything = client.functions()
    activations, losses = client.functions("activation"), client.functions(kind="loss")
    assert len(everything) == len(activations) + len(losses)
    assert activations
    assert losses
    assert {f.kind for f in activations} == {"activation"}
    assert {f.kind for f in losses} == {"loss"}
    info = client.function("crossentropyloss")
    assert info.name == "cross_entropy"
    assert info.kind == "loss"
    assert "CrossEntropyLoss" in info.aliases
    assert info.tensors == ("input", "target")
    assert "input" in info.gradient_wrt
    assert {p["name"] for p in info.params} >= {"weight", "reduction", "label_smoothing"}
    assert info.example["function"] == "cross_entropy"
    with pytest.raises(NotFound) as caught:
        client.function("no_such_function")
    assert caught.value.status == 404
    assert caught.value.field == "path.name"


def test_the_async_client(server: RunningServer, device: torch.device) -> None:
    xs = [random_array(size, "float32", seed=size) for size in (5, 50, 2000, 4000)]

    async def main() -> list[Any]:
        async with AsyncClient(server.url) as api:
            results: list[Any] = await asyncio.gather(*(api.activate("tanh", x, grad=True) for x in xs))
            results.append(await api.loss("l1_loss", xs[0], xs[0][::-1].copy()))
            results.append(await api.function("tanh"))
            with pytest.raises(InvalidInput):
                await api.activate("tanh", [1.0], params={"nope": 1})
            return results

    results = asyncio.run(main())
    for x, result in zip(xs, results, strict=False):
        expected, grads = reference_vjp(torch.tanh, {"input": torch_of(x)}, device)
        assert_same(result.to_torch().output, expected)
        assert_same(result.to_torch().grad, grads["input"])
    assert float(results[4].loss) == pytest.approx(float(np.abs(xs[0] - xs[0][::-1]).mean()), rel=1e-6)
    assert results[5].name == "tanh"


@pytest.mark.parametrize(
    "activation", ["sigmoid", {"function": "leaky_relu", "params": {"negative_slope": 0.2}}], ids=["name", "object"]
)
def test_a_chained_activation_as_the_client_sends_it(
    client: Client, device: torch.device, activation: str | dict[str, Any]
) -> None:
    logits = np.array([[2.0, -1.0, 0.5], [0.3, 0.1, -2.0]], dtype=np.float32)
    target = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    result = client.loss("mse_loss", logits, target, grad=True, activation=activation).to_torch()
    x = torch.tensor(logits, device=device, requires_grad=True)
    activated = torch.sigmoid(x) if isinstance(activation, str) else F.leaky_relu(x, negative_slope=0.2)
    expected = F.mse_loss(activated, torch.tensor(target, device=device))
    (grad,) = torch.autograd.grad(expected, x)
    assert_same(result.loss, expected)
    assert result.grad is not None
    assert_same(result.grad["input"], grad)
