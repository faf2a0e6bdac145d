"""Shared fixtures. The device comes from TORCHFN_DEVICE (cpu by default), so the whole suite
runs unchanged on a GPU with ``TORCHFN_DEVICE=cuda``."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch
from fastapi.testclient import TestClient

from app.compute.engine import resolve_device
from app.core.config import Settings
from app.main import create_app
from tests.support.engine_gate import Gate

# The suite's apps serve no gRPC unless a test gives them a port of their own: the default port
# would be shared (SO_REUSEPORT with several workers) or taken by concurrent test processes.
os.environ.setdefault("TORCHFN_GRPC_PORT", "0")

SLOW_FIRST = ("tests/system/", "tests/deploy/", "tests/docs/")
"""The layers whose files start server processes, containers' commands and a browser: a few tests
each, seconds apiece."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow layers' files first, the rest as collected: on two processes (``scripts/test``, a
    file to a process in this order) the long files are not left to end the run on one process
    while the other has nothing to do."""

    def rank(item: pytest.Item) -> int:
        return next((i for i, prefix in enumerate(SLOW_FIRST) if item.nodeid.startswith(prefix)), len(SLOW_FIRST))

    items.sort(key=rank)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def device(settings: Settings) -> torch.device:
    """The device the service computes on; reference values are computed on the same one."""
    return resolve_device(settings.device)


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[TestClient]:
    """One app for the session, with its lifespan running."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Gate:
    """Holds the engine's compute calls until released (``tests/support/engine_gate.py``)."""
    return Gate(monkeypatch)
