"""Tiny computations of torch's own functions, arriving when nothing is queued, run on the event loop
(no trip to the compute thread); everything else still goes to the compute thread."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from app.compute.engine import Engine
from app.compute.jobs import Job, Result
from app.compute.service import COMPUTE_THREAD_PREFIX
from app.core.config import Settings
from app.main import create_app
from tests.support.plugin_modules import FRESH, write_module


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        name = write_module(tmp_path_factory.mktemp("plugins"), FRESH, monkeypatch)
        yield importlib.import_module(name)


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The thread of every compute call, as it is made."""
    seen: list[str] = []
    original = Engine.run_group

    def recorded(engine: Engine, jobs: Sequence[Job], key: tuple[Any, ...] | None) -> list[Result | Exception]:
        seen.append(threading.current_thread().name)
        return original(engine, jobs, key)

    monkeypatch.setattr(Engine, "run_group", recorded)
    return seen


def on_compute_thread(name: str) -> bool:
    return name.startswith(COMPUTE_THREAD_PREFIX)


def test_where_each_request_is_computed(fresh: Any, device: torch.device, threads: list[str]) -> None:
    settings = Settings(plugins=[f"{fresh.__name__}:CustomActivation"], plugin_entry_points=False, device=str(device))
    on_cpu = device.type == "cpu"
    with TestClient(create_app(settings)) as client:
        small = client.post("/activate", json={"function": "relu", "input": [-1.0, 2.0], "grad": True})
        assert small.json()["output"] == [0.0, 2.0]
        assert small.json()["grad"] == [0.0, 1.0]
        assert on_compute_thread(threads[-1]) is not on_cpu  # on the loop, on a CPU alone
        chained = client.post(
            "/loss", json={"function": "mse_loss", "input": [1.0, 2.0], "target": [0.0, 0.0], "activation": "relu"}
        )
        assert chained.json()["loss"] == 2.5
        assert on_compute_thread(threads[-1]) is not on_cpu
        x = torch.linspace(-1, 1, 20_000)
        large = client.post("/activate", json={"function": "relu", "input": x.tolist()})
        assert torch.equal(torch.tensor(large.json()["output"]), torch.relu(x))
        assert on_compute_thread(threads[-1])  # over the cost: the compute thread
        plugin = client.post("/activate", json={"function": "custom_activation", "input": [1.0]})
        assert plugin.status_code == 200
        assert on_compute_thread(threads[-1])  # a plugin's: never on the loop
        chained_plugin = client.post(
            "/loss",
            json={"function": "mse_loss", "input": [1.0], "target": [0.0], "activation": "custom_activation"},
        )
        assert chained_plugin.status_code == 200
        assert on_compute_thread(threads[-1])


def test_the_setting_at_zero_keeps_every_computation_on_the_compute_thread(threads: list[str]) -> None:
    with TestClient(create_app(Settings(inline_compute_max_cost=0))) as client:
        assert client.post("/activate", json={"function": "relu", "input": [1.0]}).json()["output"] == [1.0]
    assert threads
    assert all(on_compute_thread(name) for name in threads)
