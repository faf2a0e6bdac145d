"""Long and odd strings (and values of the wrong type) at every field of both protocols, over
real sockets against the real server process: every answer is a 4xx in the protocol's error
format (or a 200 where the change still makes a valid request), never a 500, always short.
Strings over their limits (``app/core/limits.py``) are refused before any work that grows with
their length: no close-match suggestion is worked out for a name over the limit."""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from app.compute.catalogue import CATALOGUE
from app.core import limits
from app.core.limits import MAX_HEADER_VALUE, MAX_NAME, MAX_PARAM_STRING
from tests.support.error_bodies import MAX_ERROR_BYTES, check_error_body
from tests.support.paths import ROOT
from tests.support.server_process import RunningServer, running_server

pytestmark = pytest.mark.server

LONG = "x" * 70_000
HOSTILE_STRINGS = [
    "a" * (MAX_NAME + 1),
    LONG,
    "",
    " ",
    "\u0000",
    "é" * (MAX_NAME + 1),
    "😀" * (MAX_NAME + 1),
    "NaN",
    "-Infinity",
    "__class__",
    "inplace",
    "relu" * 40,
    "../../etc/passwd",
    "%s%n{0}",
    "<script>alert(1)</script>",
]
HOSTILE_VALUES: list[Any] = [*HOSTILE_STRINGS, 1, -1.5, 10**30, True, None, [], {}, [["a"]], {"a": {"b": 1}}]
HOSTILE_KEYS = ["k" * (MAX_NAME + 1), LONG, "", "\u0000", "activation." + "a" * MAX_NAME, "inplace", "_stacklevel"]

X = [[0.5, -1.0], [2.0, -0.25]]
NATIVE: list[tuple[str, dict[str, Any]]] = [
    (
        "/activate",
        {
            "function": "gelu",
            "input": X,
            "params": {"approximate": "tanh"},
            "grad": True,
            "grad_output": X,
            "dtype": "float32",
            "encoding": "json",
        },
    ),
    (
        "/activate",
        {"function": "prelu", "input": {"shape": [2, 2], "dtype": "float32", "data": [1.0, -1.0, 2.0, -2.0]}},
    ),
    (
        "/loss",
        {
            "function": "mse_loss",
            "input": X,
            "target": X,
            "params": {"reduction": "sum"},
            "activation": {"function": "elu", "params": {"alpha": 0.5}},
            "grad": True,
            "encoding": "base64",
        },
    ),
    (
        "/loss",
        {
            "function": "gaussian_nll_loss",
            "input": X,
            "target": X,
            "inputs": {"var": [[1.0, 2.0]]},
            "activation": "sigmoid",
        },
    ),
]


def oip_input(name: str, data: list[Any], datatype: str = "FP32") -> dict[str, Any]:
    return {"name": name, "shape": [len(data)], "datatype": datatype, "data": data}


OIP: list[tuple[str, dict[str, Any]]] = [
    (
        "/v2/models/mse_loss/infer",
        {
            "id": "request-1",
            "parameters": {"grad": True, "reduction": "sum", "activation": "elu", "activation.alpha": 0.5},
            "inputs": [oip_input("input", [0.5, -1.0]), oip_input("target", [1.0, 0.0])],
            "outputs": [{"name": "loss", "parameters": {"binary_data": False}}, {"name": "grad_input"}],
        },
    ),
    (
        "/v2/models/gelu/versions/1/infer",
        {"parameters": {"approximate": "tanh", "binary_data_output": False}, "inputs": [oip_input("input", [1.0])]},
    ),
    ("/v2/models/nll_loss/infer", {"inputs": [oip_input("input", [-0.5, -1.0]), oip_input("target", [1], "INT64")]}),
]


def value_paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every field of a request: each value in each object, and the first element of each list."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from value_paths(value, (*prefix, key))
    elif isinstance(node, list) and node:
        yield (*prefix, 0)
        yield from value_paths(node[0], (*prefix, 0))


def object_paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every object of a request (where a key can be added)."""
    if isinstance(node, dict):
        yield prefix
        for key, value in node.items():
            yield from object_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from object_paths(value, (*prefix, index))


def replaced(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    node = changed
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return changed


def with_key(body: dict[str, Any], path: tuple[Any, ...], key: str) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    node = changed
    for part in path:
        node = node[part]
    node[key] = 1.0
    return changed


def encoded(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()  # integers past 64 bits included


def variants(bodies: list[tuple[str, dict[str, Any]]]) -> Iterator[tuple[str, bytes]]:
    for route, body in bodies:
        for path in value_paths(body):
            for value in HOSTILE_VALUES:
                yield route, encoded(replaced(body, path, value))
        for path in object_paths(body):
            for key in HOSTILE_KEYS:
                yield route, encoded(with_key(body, path, key))


def check_oip_error(raw: bytes) -> None:
    assert len(raw) < MAX_ERROR_BYTES, raw[:300]
    body = orjson.loads(raw)
    assert set(body) == {"error"}, body
    assert isinstance(body["error"], str)
    assert body["error"]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def answers(http: httpx.Client, route: str, content: bytes) -> httpx.Response:
    return http.post(route, content=content, headers={"content-type": "application/json"})


def test_the_base_requests_are_valid(http: httpx.Client) -> None:
    """Each change below is made to a request the service serves."""
    for route, body in [*NATIVE, *OIP]:
        reply = answers(http, route, orjson.dumps(body))
        assert reply.status_code == 200, (route, reply.text)


@pytest.mark.parametrize(("protocol", "bodies"), [("native", NATIVE), ("oip", OIP)])
def test_hostile_values_and_keys_at_every_field_are_refused_with_a_4xx(
    http: httpx.Client, server: RunningServer, protocol: str, bodies: list[tuple[str, dict[str, Any]]]
) -> None:
    seen = 0
    for route, content in variants(bodies):
        reply = answers(http, route, content)
        seen += 1
        where = f"{route} {content[:300]!r}"
        assert reply.status_code in (200, 400, 404, 413, 422), f"{reply.status_code} for {where}: {reply.text[:300]}"
        if reply.status_code == 200:  # the change still makes a valid request
            continue
        assert reply.headers["content-type"].startswith("application/json"), where
        if protocol == "oip":
            assert reply.status_code != 422, where  # the protocol's 4xx is a 400
            check_oip_error(reply.content)
        else:
            check_error_body(reply.content, reply.status_code)
    assert seen > 500
    assert server.process.poll() is None
    assert "Traceback" not in server.log()


def test_a_long_chained_activation_name_is_a_4xx_on_both_protocols(http: httpx.Client) -> None:
    body = {"function": "mse_loss", "input": [1.0], "target": [0.0]}
    for activation in ("a" * (MAX_NAME + 1), {"function": "a" * (MAX_NAME + 1)}):
        reply = answers(http, "/loss", orjson.dumps({**body, "activation": activation}))
        assert reply.status_code == 422, reply.text
        assert check_error_body(reply.content, 422)["details"][0]["type"] == "string_too_long"
    inputs = [oip_input("input", [1.0]), oip_input("target", [0.0])]
    for name in ("a" * (MAX_PARAM_STRING + 1), LONG):
        request = {"parameters": {"activation": name}, "inputs": inputs}
        reply = answers(http, "/v2/models/mse_loss/infer", orjson.dumps(request))
        assert reply.status_code == 400
        assert reply.json() == {"error": f"parameters.activation: String should have at most {MAX_NAME} characters"}


@pytest.mark.parametrize("path", ["/functions/{}", "/v2/models/{}", "/v2/models/{}/ready", "/v2/models/{}/infer"])
def test_a_long_name_in_a_path_is_a_404(http: httpx.Client, path: str) -> None:
    url = path.format("relu" * 1000)
    reply = http.post(url, json={"inputs": []}) if url.endswith("/infer") else http.get(url)
    assert reply.status_code == 404
    assert len(reply.content) < MAX_ERROR_BYTES
    assert "closest" not in reply.text


@pytest.mark.parametrize("header", ["content-type", "content-encoding", "x-request-timeout"])
@pytest.mark.parametrize("route", ["/activate", "/v2/models/relu/infer"])
def test_a_header_over_its_limit_is_a_4xx(http: httpx.Client, header: str, route: str) -> None:
    body = {"function": "relu", "input": [1.0]} if route == "/activate" else {"inputs": [oip_input("input", [1.0])]}
    headers = {"content-type": "application/json", header: "1" * (MAX_HEADER_VALUE + 1)}
    reply = http.post(route, content=orjson.dumps(body), headers=headers)
    assert reply.status_code == (422 if route == "/activate" else 400), reply.text
    assert f"longer than {MAX_HEADER_VALUE} characters" in reply.text
    assert header in reply.text


def test_a_long_request_id_is_replaced(http: httpx.Client) -> None:
    reply = http.get("/healthz", headers={"x-request-id": "a" * 129})
    assert reply.status_code == 200
    assert reply.headers["x-request-id"] != "a" * 129
    assert http.get("/healthz", headers={"x-request-id": "a" * 128}).headers["x-request-id"] == "a" * 128


def test_no_suggestion_is_worked_out_for_a_name_over_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Matching is quadratic in the name's length (a 16 MB name once took 10 s): past the limit,
    no name is even compared."""
    compared: list[str] = []

    def counting(word: str, *args: Any, **kwargs: Any) -> list[str]:
        compared.append(word)
        return []

    monkeypatch.setattr(difflib, "get_close_matches", counting)
    assert CATALOGUE.suggest("r" * (MAX_NAME + 1)) == []
    assert CATALOGUE.find("relu" + " " * MAX_NAME) is None
    assert compared == []
    CATALOGUE.suggest("rleu")
    assert compared == ["rleu"]


def test_the_documented_limits_are_the_codes() -> None:
    api = (ROOT / "docs" / "api.md").read_text()
    table = api.split("## Limits on strings", 1)[1].split("\n## ", 1)[0]
    for limit in (limits.MAX_NAME, limits.MAX_PARAM_STRING, limits.MAX_REQUEST_ID, limits.MAX_HEADER_VALUE):
        assert f"| {limit} characters" in table
    oip = " ".join((ROOT / "docs" / "open-inference-protocol.md").read_text().split())
    named = f"at most {limits.MAX_NAME} characters, `datatype` {limits.MAX_TYPE_NAME}, the request's `id`"
    assert f"{named} {limits.MAX_INFERENCE_ID}" in oip
