"""The shipped example plugins (examples/torchfn_examples): served by name and through their
package's entry points, Swish fused bit-identical to solo; a broken plugin stops the server
command with exit status 2 and a message."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import torch
from fastapi.testclient import TestClient

from app.compute.catalogue.plugins import build_catalogue
from app.compute.engine import Engine
from app.compute.fusion import fusion_key
from app.core.config import Settings
from app.core.limits import TensorLimits
from app.main import create_app
from app.protocols.native.codec import decode_activation
from app.serving.codec import DecodeOptions
from tests.support.plugin_modules import EXAMPLES, examples, write_module

X = [[-1.5, 0.2, 3.0], [0.7, -0.1, 2.5]]
T = [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]


@pytest.fixture(scope="module")
def example_module() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield examples(monkeypatch)


def installed_entry_points(directory: Path) -> Path:
    """A dist-info for the examples package, written from its pyproject's entry points: what
    ``pip install ./examples/torchfn_examples`` puts in site-packages, found by importlib.metadata."""
    project = tomllib.loads((EXAMPLES / "pyproject.toml").read_text())["project"]
    points = project["entry-points"]["torchfn.functions"]
    dist_info = directory / f"torchfn_examples-{project['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines = "".join(f"{name} = {value}\n" for name, value in points.items())
    (dist_info / "entry_points.txt").write_text(f"[torchfn.functions]\n{lines}")
    return directory


def test_the_entry_points_of_the_installed_package_are_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example_module: Any, device: torch.device
) -> None:
    monkeypatch.syspath_prepend(str(installed_entry_points(tmp_path)))
    importlib.invalidate_caches()
    catalogue = build_catalogue(Settings())
    swish, focal = catalogue.find("Swish"), catalogue.find("focal_loss")
    assert swish is not None
    assert focal is not None
    assert "entry point 'swish' of torchfn-examples" in str(swish.plugin)
    assert build_catalogue(Settings(plugin_entry_points=False)).find("swish") is None
    # Named in the settings as well: loaded once, not a clash.
    both = build_catalogue(Settings(plugins=["torchfn_examples:FUNCTIONS"]))
    assert len(both) == len(catalogue)
    with TestClient(create_app(Settings(device=str(device)))) as client:
        body = {"function": "FocalLoss", "input": X, "target": T, "params": {"gamma": 1.5}, "grad": True}
        reply = client.post("/loss", json=body).json()
        x = torch.tensor(X, device=device, requires_grad=True)
        loss = example_module.FocalLoss(gamma=1.5)(x, torch.tensor(T, device=device))
        (grad,) = torch.autograd.grad(loss, x)
        assert np.float32(reply["loss"]) == loss.item()
        assert np.asarray(reply["grad"]["input"], np.float32).tobytes() == grad.cpu().numpy().tobytes()


@pytest.fixture(scope="module")
def client(example_module: Any, device: torch.device) -> Iterator[TestClient]:
    settings = Settings(plugins=["torchfn_examples:FUNCTIONS"], device=str(device), plugin_entry_points=False)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_swish_and_focal_loss_chained_equal_torch(
    client: TestClient, example_module: Any, device: torch.device
) -> None:
    entry = client.get("/functions/swish").json()
    assert entry["params"] == [
        {
            "name": "beta",
            "type": "float",
            "doc": "slope of the sigmoid gate; 1 is SiLU",
            "required": False,
            "default": 1.0,
            "gt": 0.0,
            "le": 100.0,
        }
    ]
    assert client.post("/activate", json={"function": "swish", "input": X, "params": {"beta": 0.0}}).status_code == 422
    body = {
        "function": "focal_loss",
        "input": X,
        "target": T,
        "params": {"reduction": "sum"},
        "activation": {"function": "Swish", "params": {"beta": 2.0}},
        "grad": True,
    }
    reply = client.post("/loss", json=body).json()
    x = torch.tensor(X, device=device, requires_grad=True)
    value = example_module.FocalLoss(reduction="sum")(example_module.Swish(2.0)(x), torch.tensor(T, device=device))
    (grad,) = torch.autograd.grad(value, x)
    assert np.float32(reply["loss"]) == value.item()
    assert np.asarray(reply["grad"]["input"], np.float32).tobytes() == grad.cpu().numpy().tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("size", [64, 640, 4096, 100])
def test_swish_batched_is_bit_identical_to_solo(
    example_module: Any, device: torch.device, dtype: str, size: int
) -> None:
    catalogue = build_catalogue(Settings(plugins=["torchfn_examples:SWISH"], plugin_entry_points=False))
    options = DecodeOptions(catalogue, TensorLimits(1_000_000, 8), 4_000_000, "float32")
    rng = np.random.default_rng(size)
    jobs = [
        decode_activation(
            orjson.dumps(
                {
                    "function": "swish",
                    "input": (rng.standard_normal(size) * 4).tolist(),
                    "params": {"beta": 1.7},
                    "grad": True,
                    "dtype": dtype,
                }
            ),
            options,
        ).job
        for _ in range(40)
    ]
    key = fusion_key(jobs[0])
    assert (key is None) == (size % 64 != 0)  # only rows of a multiple of 64 elements are fused
    engine = Engine(device)
    batched = engine.run_group(jobs, key)
    for job, outcome in zip(jobs, batched, strict=True):
        alone = engine.run(job)
        assert not isinstance(outcome, Exception)
        assert outcome.output.tobytes() == alone.output.tobytes()
        assert outcome.grads is not None
        assert alone.grads is not None
        assert outcome.grads["input"].tobytes() == alone.grads["input"].tobytes()


BROKEN = """
from torch import nn


class Softmax(nn.Module):
    def forward(self, x):
        return x


class NoHints(nn.Module):
    def __init__(self, beta=2.0):
        super().__init__()

    def forward(self, x):
        return x
"""


@pytest.mark.parametrize(
    ("attribute", "reason"),
    [
        ("NoHints", "parameter 'beta' has no type hint"),
        ("Softmax", "already 'softmax', a built-in function"),
        ("Missing", "has no attribute 'Missing'"),
    ],
)
def test_a_broken_plugin_stops_the_server_command_with_status_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, attribute: str, reason: str
) -> None:
    module = write_module(tmp_path, BROKEN, monkeypatch)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path.cwd())]),
        "TORCHFN_PLUGINS": f"{module}:{attribute}",
        "TORCHFN_PORT": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "app.serve"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 2, result.stderr
    assert f"TORCHFN_PLUGINS: plugin {module}:{attribute}: " in result.stderr
    assert reason in result.stderr
    assert "Traceback" not in result.stderr
