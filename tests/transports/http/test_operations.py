"""Production behaviour inside the app: request ids, metrics, auth, CORS, docs switch, 405s,
no tracebacks, readiness while draining, settings of the process model."""

from __future__ import annotations

import asyncio
import io
import logging
import math
import time
from collections.abc import Iterator
from typing import NoReturn

import orjson
import pytest
import torch
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.utils import floatToGoString
from pydantic import ValidationError

from app.compute.batching import Served
from app.compute.catalogue import CATALOGUE
from app.compute.jobs import Job, Result
from app.core import lifecycle
from app.core.config import Settings
from app.core.errors import ClientGone, QueueFull
from app.core.logs import JsonFormatter, LineBatches
from app.core.request_context import RequestContext, current_request
from app.main import create_app
from app.protocols.native.codec import ACTIVATE, decode_activation
from app.telemetry import access_log
from app.telemetry.access_log import access_logger, log_access
from app.telemetry.metrics import LATENCY_BUCKETS, Metrics, MetricsObserver
from tests.support.exposition import metric

RELU = {"function": "relu", "input": [1.0, -1.0]}


@pytest.fixture
def keyed() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(api_keys=["k1", "k2"], open_paths=["/healthz"]))) as client:
        yield client


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    assert client.post("/activate", json=RELU, headers={"x-request-id": "abc.123"}).headers["x-request-id"] == "abc.123"
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32
    assert generated != client.get("/healthz").headers["x-request-id"]
    unsafe = client.get("/healthz", headers={"x-request-id": "bad id\twith spaces"}).headers["x-request-id"]
    assert unsafe != "bad id\twith spaces"
    assert len(unsafe) == 32
    assert client.get("/no-such-path").headers["x-request-id"]


def test_metrics_count_requests_by_endpoint_function_and_status() -> None:
    with TestClient(create_app(Settings())) as client:
        client.post("/activate", json=RELU)
        client.post("/activate", json={"function": "relu", "input": [[1.0], [2.0, 3.0]]})  # ragged: 422
        client.post("/loss", json={"function": "mse_loss", "input": [1.0], "target": [0.0]})
        client.get("/functions/relu")
        client.get("/nowhere")
        reply = client.get("/metrics")
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/plain")
        text = reply.text
    assert (
        metric(text, "torchfn_requests_total", endpoint="/activate", function="relu", status="200", protocol="http")
        == 1
    )
    assert (
        metric(text, "torchfn_requests_total", endpoint="/activate", function="-", status="422", protocol="http") == 1
    )
    assert (
        metric(text, "torchfn_requests_total", endpoint="/loss", function="mse_loss", status="200", protocol="http")
        == 1
    )
    assert (
        metric(
            text, "torchfn_requests_total", endpoint="/functions/{name}", function="-", status="200", protocol="http"
        )
        == 1
    )
    assert (
        metric(text, "torchfn_requests_total", endpoint="unmatched", function="-", status="404", protocol="http") == 1
    )
    assert metric(text, "torchfn_request_duration_seconds_count", endpoint="/activate", protocol="http") == 2
    assert metric(text, "torchfn_batch_size_bucket", le="1.0") == 2
    assert metric(text, "torchfn_queue_wait_seconds_count", function="mse_loss") == 1
    assert metric(text, "torchfn_compute_seconds_count", function="relu") == 1
    assert metric(text, "torchfn_requests_in_flight") == 1  # the scrape itself
    assert metric(text, "torchfn_queue_depth") == 0


def _job(function: str = "relu") -> Job:
    spec = CATALOGUE.find(function)
    assert spec is not None
    return Job(spec=spec, arrays={}, params={}, locs={}, dtype="float32", grad=False)


def test_observer_counts_rejections_and_cancellations() -> None:
    metrics = Metrics()
    observer = MetricsObserver(metrics)
    observer.refused(_job(), QueueFull.at(("service",), "full", "queue_full"), 0.0)
    observer.refused(_job(), ClientGone.at(("client",), "gone", "client_gone"), 0.5)
    observer.cancelled(_job(), 0.5)
    observer.served(_job(), Served(Result(output=None, grads=None), 0.25, 0.5, 8), 0.75)  # type: ignore[arg-type]
    text = metrics.render().decode()
    assert metric(text, "torchfn_rejected_total", reason="queue_full") == 1
    assert metric(text, "torchfn_cancelled_total", reason="client_gone") == 1
    assert metric(text, "torchfn_cancelled_total", reason="cancelled") == 1
    assert metric(text, "torchfn_queue_wait_seconds_sum", function="relu") == 0.25


def test_observer_counts_each_compute_call_once_under_each_of_its_functions() -> None:
    metrics = Metrics()
    observer = MetricsObserver(metrics)
    observer.computed([_job()] * 8, 0.5)
    observer.computed([_job(), _job("mse_loss"), _job()], 0.125)
    text = metrics.render().decode()
    assert metric(text, "torchfn_batch_size_count") == 2
    assert metric(text, "torchfn_batch_size_bucket", le="2.0") == 0
    assert metric(text, "torchfn_batch_size_bucket", le="4.0") == 1
    assert metric(text, "torchfn_batch_size_bucket", le="8.0") == 2
    assert metric(text, "torchfn_compute_seconds_count", function="relu") == 2
    assert metric(text, "torchfn_compute_seconds_sum", function="relu") == 0.625
    assert metric(text, "torchfn_compute_seconds_count", function="mse_loss") == 1


def test_tallied_requests_read_as_prometheus_client_would_count_them() -> None:
    """Requests are tallied on the loop and folded in at each scrape: the exposition is what
    ``Histogram.observe`` and ``Counter.inc`` would have made of them, fold after fold."""
    metrics = Metrics()
    registry = CollectorRegistry()
    reference = Histogram("reference", "the same observations", buckets=LATENCY_BUCKETS, registry=registry)
    # on the bounds, between them, below the first and past the last
    batches = [[0.0, 0.0005, 0.0007, 0.001, 0.3], [29.0, 30.0, 31.0, 1e9, 0.0025]]
    for batch in batches:
        for seconds in batch:
            metrics.observe_request("/activate", "relu", 200, seconds)
            reference.observe(seconds)
        text = metrics.render().decode()
        for bound in (*LATENCY_BUCKETS, math.inf):
            le = floatToGoString(bound)  # type: ignore[no-untyped-call]
            expected = registry.get_sample_value("reference_bucket", {"le": le})
            assert (
                metric(text, "torchfn_request_duration_seconds_bucket", endpoint="/activate", le=le, protocol="http")
                == expected
            )
        assert metric(
            text, "torchfn_request_duration_seconds_sum", endpoint="/activate", protocol="http"
        ) == pytest.approx(registry.get_sample_value("reference_sum"))
    assert (
        metric(text, "torchfn_requests_total", endpoint="/activate", function="relu", status="200", protocol="http")
        == 10
    )


def test_device_memory_is_exported_when_the_service_reports_it() -> None:
    metrics = Metrics()
    metrics.device_memory = lambda: {"allocated": 1024, "reserved": 4096}
    text = metrics.render().decode()
    assert metric(text, "torchfn_device_memory_bytes", kind="allocated") == 1024
    assert metric(text, "torchfn_device_memory_bytes", kind="reserved") == 4096


def test_device_memory_is_exported_on_a_gpu_only(client: TestClient, device: torch.device) -> None:
    allocated = metric(client.get("/metrics").text, "torchfn_device_memory_bytes", kind="allocated")
    if device.type == "cuda":
        assert allocated > 0
    else:
        assert allocated == 0
        assert "torchfn_device_memory_bytes{" not in client.get("/metrics").text


def test_full_queue_is_counted_as_rejected() -> None:
    settings = Settings(max_queue_size=1, max_batch_delay_ms=200)
    with TestClient(create_app(settings)) as client:
        service = client.app.state.compute  # type: ignore[attr-defined]

        async def flood() -> None:
            jobs = [asyncio.ensure_future(service.run(_decoded_job(client, n))) for n in range(1, 6)]
            await asyncio.gather(*jobs, return_exceptions=True)

        client.portal.call(flood)  # type: ignore[union-attr]
        text = client.get("/metrics").text
    assert metric(text, "torchfn_rejected_total", reason="queue_full") >= 1


def _decoded_job(client: TestClient, size: int) -> Job:
    body = orjson.dumps({"function": "relu", "input": [1.0] * size})
    return decode_activation(body, client.app.state.road.options).job  # type: ignore[attr-defined]


def test_metrics_can_be_switched_off() -> None:
    with TestClient(create_app(Settings(metrics=False))) as client:
        assert client.get("/metrics").status_code == 404
        assert client.post("/activate", json=RELU).status_code == 200


def test_auth_refuses_without_a_valid_key_in_the_error_format(keyed: TestClient) -> None:
    for headers in ({}, {"authorization": "Bearer nope"}, {"x-api-key": ""}, {"authorization": "Basic azE6"}):
        reply = keyed.post("/activate", json=RELU, headers=headers)
        assert reply.status_code == 401, headers
        body = reply.json()
        assert set(body) == {"error", "message", "details", "truncated"}
        assert body["error"] == "unauthorized"
        assert body["details"][0]["loc"] == ["header", "authorization"]
        assert reply.headers["www-authenticate"].startswith("Bearer")


def test_auth_accepts_bearer_and_api_key_and_keeps_open_paths_open(keyed: TestClient) -> None:
    assert keyed.post("/activate", json=RELU, headers={"authorization": "Bearer k2"}).status_code == 200
    assert keyed.post("/activate", json=RELU, headers={"authorization": "bearer k1"}).status_code == 200
    assert keyed.post("/activate", json=RELU, headers={"x-api-key": "k1"}).status_code == 200
    assert keyed.get("/healthz").status_code == 200
    assert keyed.get("/readyz").status_code == 401  # not in this app's open paths
    assert keyed.get("/metrics").status_code == 401


def test_default_open_paths_are_health_and_metrics() -> None:
    settings = Settings(api_keys=["k"])
    assert settings.open_paths == ["/healthz", "/readyz", "/metrics"]
    with TestClient(create_app(settings)) as client:
        assert [client.get(p).status_code for p in settings.open_paths] == [200, 200, 200]
        assert client.get("/functions").status_code == 401
        assert client.get("/docs").status_code == 401


def test_settings_lists_come_from_comma_separated_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHFN_API_KEYS", " a , b,")
    monkeypatch.setenv("TORCHFN_OPEN_PATHS", "/healthz")
    monkeypatch.setenv("TORCHFN_CORS_ORIGINS", "https://a.example,https://b.example")
    settings = Settings()
    assert settings.api_keys == ["a", "b"]
    assert settings.open_paths == ["/healthz"]
    assert settings.cors_origins == ["https://a.example", "https://b.example"]


def test_cors_is_off_by_default(client: TestClient) -> None:
    reply = client.options(
        "/activate", headers={"origin": "https://a.example", "access-control-request-method": "POST"}
    )
    assert "access-control-allow-origin" not in reply.headers
    assert "access-control-allow-origin" not in client.get("/healthz", headers={"origin": "https://a.example"}).headers


def test_cors_allows_configured_origins_before_auth() -> None:
    settings = Settings(cors_origins=["https://a.example"], api_keys=["k"])
    with TestClient(create_app(settings)) as client:
        preflight = client.options(
            "/activate",
            headers={
                "origin": "https://a.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://a.example"
        reply = client.post("/activate", json=RELU, headers={"origin": "https://a.example", "x-api-key": "k"})
        assert reply.headers["access-control-allow-origin"] == "https://a.example"
        assert "x-request-id" in reply.headers["access-control-expose-headers"].lower()
        other = client.options(
            "/activate", headers={"origin": "https://evil.example", "access-control-request-method": "POST"}
        )
        assert "access-control-allow-origin" not in other.headers


def test_docs_can_be_switched_off() -> None:
    with TestClient(create_app(Settings(docs=False))) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(path).status_code == 404, path
        assert client.post("/activate", json=RELU).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("DELETE", "/activate"), ("GET", "/loss"), ("PUT", "/healthz"), ("POST", "/readyz"), ("POST", "/metrics")],
)
def test_undocumented_methods_answer_405(client: TestClient, method: str, path: str) -> None:
    reply = client.request(method, path)
    assert reply.status_code == 405
    assert reply.json()["error"] == "method_not_allowed"
    allowed = reply.headers["allow"]
    assert method not in allowed.split(", ")
    assert reply.json()["message"].endswith(f"use {' or '.join(allowed.split(', '))} for this path")


@pytest.mark.parametrize(
    ("method", "path", "there"),
    [
        ("POST", "/activate/", "/activate"),
        ("POST", "/activate//", "/activate"),
        ("GET", "/functions/relu/", "/functions/relu"),
    ],
)
def test_a_trailing_slash_is_a_307_that_says_where(client: TestClient, method: str, path: str, there: str) -> None:
    reply = client.request(method, path, json=RELU, follow_redirects=False)
    assert reply.status_code == 307
    assert reply.headers["location"] == f"http://testserver{there}"
    body = reply.json()
    assert body["error"] == "trailing_slash"
    assert body["details"][0]["msg"].startswith(f"use {there}, without the trailing slash")
    followed = client.request(method, path, json=RELU)
    assert followed.status_code == 200


def test_a_trailing_slash_keeps_the_path_prefix_and_an_unknown_path_stays_a_404() -> None:
    with TestClient(create_app(Settings()), root_path="/fn") as mounted:
        reply = mounted.post("/fn/activate/", json=RELU, follow_redirects=False)
        assert reply.status_code == 307
        assert reply.headers["location"] == "http://testserver/fn/activate"
        for path in ("/fn/nothing/", "/fn/static/explore/js/none.js/"):
            assert mounted.get(path, follow_redirects=False).status_code == 404, path


def test_an_unexpected_error_answers_500_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> NoReturn:
        raise RuntimeError("secret internals at /srv/app/secret.py line 1")

    monkeypatch.setattr(ACTIVATE, "_encode", broken)
    with TestClient(create_app(Settings()), raise_server_exceptions=False) as client:
        reply = client.post("/activate", json=RELU)
    assert reply.status_code == 500
    assert reply.json()["error"] == "internal_error"
    assert "secret" not in reply.text
    assert "Traceback" not in reply.text


READINESS = ["/readyz", "/v2/health/ready", "/v2/models/relu/ready", "/v2/models/relu/versions/1/ready"]
"""Every readiness endpoint of every protocol: the one health model answers them all."""


def test_every_readiness_endpoint_fails_at_once_while_draining(client: TestClient) -> None:
    assert [client.get(path).status_code for path in READINESS] == [200] * len(READINESS)
    lifecycle.begin_draining()
    try:
        assert [client.get(path).status_code for path in READINESS] == [503] * len(READINESS)
        assert client.get("/readyz").json()["error"] == "draining"
        assert client.get("/v2/health/ready").json() == {"ready": False}
        assert client.get("/v2/models/relu/ready").json() == {"name": "relu", "ready": False}
        assert all(client.get(path).headers["retry-after"] == "1" for path in READINESS)
        assert client.get("/healthz").status_code == 200
        assert client.get("/v2/health/live").status_code == 200
    finally:
        lifecycle._draining.clear()
        lifecycle._draining_since.clear()
    assert [client.get(path).status_code for path in READINESS] == [200] * len(READINESS)


def test_one_process_per_gpu() -> None:
    with pytest.raises(ValidationError, match="one process per GPU"):
        Settings(device="cuda", workers=2)
    assert Settings(device="cpu", workers=4).workers == 4


def test_json_log_lines_carry_the_request_id() -> None:
    record = logging.LogRecord("torchfn.access", logging.INFO, __file__, 1, "POST %s", ("/loss",), None)
    record.status = 200
    token = current_request.set(RequestContext("rid-7", "mse_loss"))
    try:
        line = orjson.loads(JsonFormatter().format(record))
    finally:
        current_request.reset(token)
    assert line["request_id"] == "rid-7"
    assert (line["level"], line["logger"], line["message"], line["status"]) == (
        "info",
        "torchfn.access",
        "POST /loss",
        200,
    )
    assert line["time"].endswith("Z")


@pytest.mark.parametrize(
    ("function", "client", "traced", "protocol", "status"),
    [
        ("relu", "127.0.0.1:5000", False, "http", 200),
        ("", None, False, "http", 413),
        ("tanh", "10.0.0.7:40184", True, "grpc", "OK"),
    ],
    ids=["function-and-client", "neither", "traced-grpc-call"],
)
def test_an_access_line_written_straight_is_the_line_its_record_gives(
    function: str, client: str | None, traced: bool, protocol: str, status: int | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's own handler gets the access line formatted straight (no record); any other
    configuration gets the record: both give the same line, trace and protocol included."""
    stream = io.StringIO()
    handler = LineBatches(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(access_logger, "handlers", [])
    monkeypatch.setattr(access_logger, "propagate", True)
    context = RequestContext("rid-9", function)
    if traced:
        context.trace_id, context.span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    token = current_request.set(context)
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.25)
    try:
        assert access_log._lone_json_handler() is handler
        log_access("POST", "/a\nb", status, 0.0012345, context, client, protocol)
        with monkeypatch.context() as patched:
            patched.setattr(access_log, "_lone_json_handler", lambda: None)
            log_access("POST", "/a\nb", status, 0.0012345, context, client, protocol)
        handler.addFilter(lambda record: True)
        assert access_log._lone_json_handler() is None
    finally:
        current_request.reset(token)
    handler.flush()
    straight, through_record = stream.getvalue().splitlines()
    assert straight == through_record
    line = orjson.loads(straight)
    assert (line["request_id"], line["status"], line["duration_ms"], line["protocol"]) == (
        "rid-9",
        status,
        1.234,
        protocol,
    )
    assert line.get("function") == (function or None)
    assert line.get("client") == client
    assert line.get("trace_id") == (context.trace_id if traced else None)


@pytest.mark.parametrize("metrics", [True, False])
def test_the_access_log_names_the_function_whether_metrics_are_on_or_not(
    metrics: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The road sets the facts of a request (its function), not an optional observer."""
    with TestClient(create_app(Settings(metrics=metrics))) as client, caplog.at_level(logging.INFO, "torchfn.access"):
        assert client.post("/activate", json=RELU).status_code == 200
        assert client.post("/v2/models/ReLU/infer", json={"inputs": []}).status_code == 400
    functions = [record.__dict__.get("function") for record in caplog.records if record.name == "torchfn.access"]
    assert functions == ["relu", "relu"]


def test_the_memory_budget_is_exported_and_what_is_held_goes_back(client: TestClient) -> None:
    limit = client.app.state.compute.memory.limit  # type: ignore[attr-defined]
    reply = client.post("/activate", json={"function": "relu", "input": [1.0] * 50_000})
    assert reply.status_code == 200
    text = client.get("/metrics").text
    assert metric(text, "torchfn_memory_budget_bytes", kind="limit") == limit
    assert metric(text, "torchfn_memory_budget_bytes", kind="held") == 0
    assert metric(text, "torchfn_memory_budget_bytes", kind="waiting") == 0
