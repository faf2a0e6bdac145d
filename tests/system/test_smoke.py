"""Every catalogue example is a working request, and the basic endpoints answer."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.compute.catalogue import CATALOGUE, FunctionSpec


@pytest.mark.parametrize("spec", list(CATALOGUE), ids=lambda spec: spec.name)
def test_catalogue_example_is_served(client: TestClient, spec: FunctionSpec) -> None:
    endpoint = "/activate" if spec.kind == "activation" else "/loss"
    response = client.post(endpoint, json=dict(spec.example))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["function"] == spec.name
    assert body["grad"] is not None


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
