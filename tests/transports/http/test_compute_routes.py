"""The compute routes (``app.transports.http.compute_routes``): plain ASGI endpoints on the road that
refuse, where they are declared, what they cannot honour, answered by their own lane past the
router exactly as the router would answer them, with the app's middleware around it."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Router

from app.core.config import Settings
from app.main import create_app
from app.protocols.native.codec import ACTIVATE, LOSS
from app.transports.http.compute_routes import (
    MATCHED_PATHS,
    ComputeEndpoint,
    ComputeLane,
    ComputeRoute,
    install_compute_routes,
)
from tests.support.exposition import metric
from tests.support.plugin_modules import FRESH, write_module

RELU = {"function": "relu", "input": [-1.0, 2.0]}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(api_keys=["k"])), raise_server_exceptions=False) as test_client:
        yield test_client


def test_the_compute_routes_are_answered_by_the_lane_inside_the_middleware(client: TestClient) -> None:
    layers = [type(layer).__name__ for layer in _layers(client)]
    assert layers.index("RequestObservability") < layers.index("ApiKeyAuth") < layers.index("ComputeLane")
    assert layers.index("ComputeLane") < layers.index("ExceptionMiddleware")
    lane = next(layer for layer in _layers(client) if isinstance(layer, ComputeLane))
    assert set(lane.fixed) == {"/activate", "/loss"}
    assert {route.path for route in lane.templated} == {
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    }


def test_both_protocols_take_the_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    """The router is never reached by a compute request of either protocol."""

    async def not_here(*args: object) -> None:
        raise AssertionError("the router was reached")

    v2 = {"inputs": [{"name": "input", "shape": [2], "datatype": "FP32", "data": [-1.0, 2.0]}]}
    with TestClient(create_app(Settings())) as own:
        monkeypatch.setattr(Router, "__call__", not_here)
        for path, body in (
            ("/activate", RELU),
            ("/v2/models/relu/infer", v2),
            ("/v2/models/ReLU/versions/1/infer", v2),
        ):
            reply = own.post(path, json=body)
            assert reply.status_code == 200, (path, reply.text)
            assert "batch" in reply.headers["server-timing"]


def _layers(client: TestClient) -> Iterator[object]:
    stack = client.app.middleware_stack  # type: ignore[attr-defined]
    while stack is not None:
        yield stack
        stack = getattr(stack, "app", None)


def test_middleware_around_the_lane_still_applies(client: TestClient) -> None:
    assert client.post("/activate", json=RELU).status_code == 401  # auth runs before the lane
    reply = client.post("/activate", json=RELU, headers={"X-API-Key": "k", "X-Request-ID": "lane-1"})
    assert reply.status_code == 200
    assert reply.json()["output"] == [0.0, 2.0]
    assert reply.headers["x-request-id"] == "lane-1"
    assert "batch" in reply.headers["server-timing"]
    text = client.get("/metrics", headers={"X-API-Key": "k"}).text
    assert (
        metric(text, "torchfn_requests_total", endpoint="/activate", function="relu", status="200", protocol="http")
        == 1
    )


def test_errors_go_through_the_error_pipeline(client: TestClient) -> None:
    reply = client.post("/loss", json={"function": "relu", "input": [1.0]}, headers={"X-API-Key": "k"})
    assert reply.status_code == 422
    assert reply.json()["details"][0]["type"] == "wrong_endpoint"


def test_an_unexpected_error_is_a_json_500_without_a_traceback(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(body: object, options: object) -> NoReturn:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ACTIVATE, "_decode", broken)
    reply = client.post("/activate", json=RELU, headers={"X-API-Key": "k"})
    assert reply.status_code == 500
    assert reply.json()["error"] == "internal_error"
    assert "a bug" not in reply.text
    assert "Traceback" not in reply.text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/activate", 405), ("PUT", "/loss", 405), ("POST", "/activate/", 200), ("POST", "/nothing", 404)],
)
def test_other_requests_go_on_to_the_router(client: TestClient, method: str, path: str, status: int) -> None:
    reply = client.request(method, path, json=RELU, headers={"X-API-Key": "k"}, follow_redirects=True)
    assert reply.status_code == status


def test_an_app_mounted_under_a_root_path_is_served_by_the_lane() -> None:
    with TestClient(create_app(Settings()), root_path="/api") as mounted:
        reply = mounted.post("/api/activate", json=RELU)
        assert reply.status_code == 200
        assert reply.json()["output"] == [0.0, 2.0]


def test_templated_paths_are_remembered_each_request_with_its_own_parameters(client: TestClient) -> None:
    """A path matched once is looked up, not matched again; its parameters are a fresh copy each
    time, and the paths remembered stay bounded however many distinct ones clients send."""
    lane = next(layer for layer in _layers(client) if isinstance(layer, ComputeLane))
    first: dict[str, object] = {"path": "/v2/models/relu/versions/1/infer"}
    second: dict[str, object] = {"path": "/v2/models/relu/versions/1/infer"}
    route = lane._match(first)
    assert route is not None
    assert route.path == "/v2/models/{name}/versions/{version}/infer"
    assert lane._match(second) is route
    assert first["path_params"] == second["path_params"] == {"name": "relu", "version": "1"}
    assert first["path_params"] is not second["path_params"]
    for index in range(3 * MATCHED_PATHS):
        assert lane._match({"path": f"/v2/models/f{index}/infer"}) is not None
        assert len(lane._matched) <= MATCHED_PATHS
    assert lane._match({"path": "/v2/models/f7/infer/more"}) is None


@pytest.mark.parametrize("unsupported", [{"dependencies": [Depends(lambda: None)]}, {"response_model": dict}])
def test_a_compute_route_refuses_where_it_is_declared_what_it_cannot_honour(unsupported: dict[str, object]) -> None:
    with pytest.raises(TypeError, match="cannot be honoured"):
        ComputeRoute("/activate", ACTIVATE, operation={}, **unsupported)  # type: ignore[arg-type]


def test_an_app_with_app_wide_dependencies_refuses_compute_routes() -> None:
    checked: list[bool] = []

    async def check() -> None:
        checked.append(True)

    app = FastAPI(dependencies=[Depends(check)])
    with pytest.raises(TypeError, match="app-wide dependencies"):
        install_compute_routes(app, [ComputeRoute("/activate", ACTIVATE, operation={})])


def test_a_compute_route_is_not_a_fastapi_route(client: TestClient) -> None:
    """It cannot be mistaken for one: not an ``APIRoute``, its endpoint a plain ASGI callable."""
    from fastapi.routing import APIRoute

    routes = [route for route in client.app.routes if isinstance(route, ComputeRoute)]  # type: ignore[attr-defined]
    assert {route.path for route in routes} == {
        "/activate",
        "/loss",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    }
    assert not any(isinstance(route, APIRoute) for route in routes)
    endpoints = [route.endpoint for route in routes if not route.path.startswith("/v2")]
    assert all(
        isinstance(endpoint, ComputeEndpoint) and endpoint.codec is codec
        for endpoint, codec in zip(endpoints, (ACTIVATE, LOSS), strict=True)
    )


def test_the_openapi_document_describes_the_compute_routes_with_their_examples(client: TestClient) -> None:
    schema = client.get("/openapi.json", headers={"X-API-Key": "k"}).json()
    activate = schema["paths"]["/activate"]["post"]
    assert activate["requestBody"]["content"]["application/json"]["examples"]["leaky_relu"]["value"]["function"] == (
        "leaky_relu"
    )
    assert activate["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("ActivateResponse")
    assert "ActivateResponse" in schema["components"]["schemas"]
    infer = schema["paths"]["/v2/models/{name}/versions/{version}/infer"]["post"]
    assert [parameter["name"] for parameter in infer["parameters"]] == [
        "name",
        "version",
        "Inference-Header-Content-Length",
        "X-Request-Timeout",
    ]
    assert "relu" in infer["requestBody"]["content"]["application/json"]["examples"]


def test_an_apps_plugin_examples_stay_in_its_own_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compute routes' operations are shared by every app of a process: one app's plugins must
    not appear in another's document."""
    module = write_module(tmp_path, FRESH, monkeypatch)
    importlib.import_module(module)
    with_plugin = create_app(Settings(plugins=[f"{module}:soft_clip"], plugin_entry_points=False))
    assert "soft_clip" in examples_of(with_plugin.openapi(), "/activate")
    assert "soft_clip" not in examples_of(create_app(Settings(plugin_entry_points=False)).openapi(), "/activate")


def examples_of(document: dict[str, Any], path: str) -> dict[str, Any]:
    examples: dict[str, Any] = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"]
    return examples
