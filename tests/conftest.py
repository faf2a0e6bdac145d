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
