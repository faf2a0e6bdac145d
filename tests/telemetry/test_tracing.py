"""Tracing (``app/telemetry/tracing.py``), in process with the SDK's in-memory exporter: a request
joins its caller's W3C trace (or starts one) and says so on its reply; a span for the request and
each of its phases, with their attributes; failures recorded on the phase they happened in; a batch
is one span linked to each request it served; every log line about a request carries its trace;
and with tracing off, no OpenTelemetry code runs at all."""

from __future__ import annotations

import importlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from app.compute.service import ComputeService
from app.core.config import Settings
from app.main import create_app
from app.telemetry import request_trace
from app.telemetry.tracing import QuietWarnings, remote_parent
from app.transports.http import middleware
from app.transports.http import tracing as http_tracing
from tests.support.engine_gate import Gate
from tests.support.plugin_modules import FRESH, write_module
from tests.support.tracing import (
    PHASES,
    children,
    in_memory_tracing,
    json_lines,
    server_span,
    trace_of,
    traceparent_ids,
)

CALLER_TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CALLER_SPAN = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{CALLER_TRACE:032x}-{CALLER_SPAN:016x}-01"
RELU = {"function": "relu", "input": [1.0, -2.0, 3.0]}


@pytest.fixture(scope="module")
def plugins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        name = write_module(tmp_path_factory.mktemp("plugins"), FRESH, monkeypatch)
        importlib.import_module(name)
        yield name


@pytest.fixture(scope="module")
def traced(plugins: str) -> Iterator[tuple[TestClient, InMemorySpanExporter]]:
    tracing, exporter = in_memory_tracing()
    settings = Settings(tracing=True, plugins=[f"{plugins}:Fragile"], plugin_entry_points=False)
    with TestClient(create_app(settings, tracing)) as client:
        yield client, exporter


@pytest.fixture
def client(traced: tuple[TestClient, InMemorySpanExporter]) -> TestClient:
    traced[1].clear()
    return traced[0]


@pytest.fixture
def exporter(traced: tuple[TestClient, InMemorySpanExporter]) -> InMemorySpanExporter:
    return traced[1]


def spans_of(exporter: InMemorySpanExporter, reply: Any) -> list[ReadableSpan]:
    """The spans of the trace a reply names in its ``traceparent``."""
    trace_id, _, _ = traceparent_ids(reply.headers["traceparent"])
    return trace_of(exporter.get_finished_spans(), trace_id)


def names(spans: list[ReadableSpan]) -> list[str]:
    return [span.name for span in spans]


# The request's trace and its spans


def test_a_request_joins_its_callers_trace_and_says_so_on_its_reply(
    client: TestClient, exporter: InMemorySpanExporter
) -> None:
    reply = client.post("/activate", json=RELU, headers={"traceparent": TRACEPARENT, "x-request-id": "trace-1"})
    assert reply.status_code == 200
    trace_id, span_id, flags = traceparent_ids(reply.headers["traceparent"])
    assert (trace_id, flags) == (CALLER_TRACE, 1)
    spans = spans_of(exporter, reply)
    server = server_span(spans)
    assert server.context is not None
    assert server.context.span_id == span_id != CALLER_SPAN
    assert server.parent is not None
    assert server.parent.is_remote
    assert (server.parent.trace_id, server.parent.span_id) == (CALLER_TRACE, CALLER_SPAN)
    assert server.name == "POST /activate"
    assert server.kind is SpanKind.SERVER
    assert dict(server.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": "/activate",
        "http.response.status_code": 200,
        "url.path": "/activate",
        "url.scheme": "http",
    }
    assert server.status.status_code is StatusCode.UNSET
    phases = children(spans, server)
    assert names(phases) == PHASES
    assert len(spans) == 1 + len(PHASES)
    assert all(span.kind is SpanKind.INTERNAL and span.status.status_code is StatusCode.UNSET for span in phases)
    assert server.start_time is not None
    assert server.end_time is not None
    for phase in phases:  # within the request, one after the other
        assert phase.start_time is not None
        assert phase.end_time is not None
        assert server.start_time <= phase.start_time <= phase.end_time <= server.end_time
    for earlier, later in itertools.pairwise(phases):
        assert earlier.end_time is not None
        assert later.start_time is not None
        assert earlier.end_time <= later.start_time
    compute = phases[3]
    assert dict(compute.attributes or {}) == {
        "torchfn.function": "relu",
        "torchfn.dtype": "float32",
        "torchfn.device": str(client.app.state.compute.device),  # type: ignore[attr-defined]
        "torchfn.batch_size": 1,
    }
    assert compute.links == ()  # computed alone: no batch of its own


def test_the_open_inference_protocol_and_its_route_template(client: TestClient, exporter: InMemorySpanExporter) -> None:
    body = {"inputs": [{"name": "input", "shape": [2], "datatype": "FP64", "data": [1.0, -1.0]}]}
    reply = client.post("/v2/models/ReLU/infer", json=body)
    assert reply.status_code == 200
    spans = spans_of(exporter, reply)
    server = server_span(spans)
    assert server.name == "POST /v2/models/{name}/infer"
    assert (server.attributes or {})["http.route"] == "/v2/models/{name}/infer"
    assert (server.attributes or {})["url.path"] == "/v2/models/ReLU/infer"
    assert names(children(spans, server)) == PHASES
    compute = children(spans, server)[3]
    assert (compute.attributes or {})["torchfn.dtype"] == "float64"


def test_every_route_has_its_server_span(client: TestClient, exporter: InMemorySpanExporter) -> None:
    reply = client.get("/functions/relu", headers={"traceparent": TRACEPARENT})
    assert reply.status_code == 200
    assert traceparent_ids(reply.headers["traceparent"])[0] == CALLER_TRACE
    (server,) = spans_of(exporter, reply)
    assert server.name == "GET /functions/{name}"
    missing = client.get("/no/such/path")
    assert missing.status_code == 404
    (unmatched,) = spans_of(exporter, missing)
    assert unmatched.name == "GET"
    assert "http.route" not in (unmatched.attributes or {})
    assert (unmatched.attributes or {})["http.response.status_code"] == 404


@pytest.mark.parametrize(
    "traceparent",
    [
        None,
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # an invalid trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # an invalid parent id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # upper case
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # the forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # version 00 has 4 fields
        "garbage",
    ],
)
def test_a_request_without_a_valid_context_starts_a_trace(
    client: TestClient, exporter: InMemorySpanExporter, traceparent: str | None
) -> None:
    headers = {} if traceparent is None else {"traceparent": traceparent}
    reply = client.post("/activate", json=RELU, headers=headers)
    assert reply.status_code == 200
    trace_id, span_id, flags = traceparent_ids(reply.headers["traceparent"])
    assert trace_id != CALLER_TRACE
    assert flags & 1  # sampled
    server = server_span(spans_of(exporter, reply))
    assert server.parent is None
    assert server.context is not None
    assert server.context.span_id == span_id


def test_the_callers_tracestate_is_kept(client: TestClient, exporter: InMemorySpanExporter) -> None:
    reply = client.post(
        "/activate", json=RELU, headers={"traceparent": TRACEPARENT, "tracestate": "vendor=abc,other=1"}
    )
    server = server_span(spans_of(exporter, reply))
    assert server.context is not None
    assert dict(server.context.trace_state) == {"vendor": "abc", "other": "1"}
    assert all(
        span.context is not None and span.context.trace_state == server.context.trace_state
        for span in spans_of(exporter, reply)
    )


# Failures


def test_a_refusal_is_recorded_on_the_phase_it_happened_in(client: TestClient, exporter: InMemorySpanExporter) -> None:
    reply = client.post("/activate", json={"function": "relu", "input": "x"}, headers={"traceparent": TRACEPARENT})
    assert reply.status_code == 422
    spans = spans_of(exporter, reply)
    server = server_span(spans)
    phases = children(spans, server)
    assert names(phases) == ["read body", "decode"]  # it went no further
    decode = phases[1]
    assert decode.status.status_code is StatusCode.ERROR
    (event,) = decode.events
    assert event.name == "exception"
    (detail,) = reply.json()["details"]
    assert dict(event.attributes or {}) == {  # the service's words, as the client got them
        "exception.type": "app.core.errors.InvalidRequest",
        "exception.message": ".".join(map(str, detail["loc"])) + ": " + detail["msg"],
    }
    assert server.status.status_code is StatusCode.UNSET  # a client's error is not the server's
    assert (server.attributes or {})["http.response.status_code"] == 422
    assert "error.type" not in (server.attributes or {})


def test_a_refusal_before_the_body_is_read_is_recorded_on_the_server_span(
    client: TestClient, exporter: InMemorySpanExporter
) -> None:
    reply = client.post("/v2/models/no_such_model/infer", json={"inputs": []}, headers={"traceparent": TRACEPARENT})
    assert reply.status_code == 404
    spans = spans_of(exporter, reply)
    server = server_span(spans)
    assert children(spans, server) == []
    (event,) = server.events
    assert dict(event.attributes or {})["exception.type"] == "app.core.errors.UnknownFunction"
    assert server.status.status_code is StatusCode.UNSET


def test_a_plugin_failure_fails_its_compute_span_and_the_request(
    client: TestClient, exporter: InMemorySpanExporter
) -> None:
    with json_lines() as logged:
        reply = client.post(
            "/activate",
            json={"function": "fragile", "input": [1.0, 13.0]},
            headers={"traceparent": TRACEPARENT, "x-request-id": "plugin-failure-1"},
        )
    assert reply.status_code == 500
    spans = spans_of(exporter, reply)
    server = server_span(spans)
    phases = children(spans, server)
    assert names(phases) == ["read body", "decode", "queue", "compute"]
    compute = phases[3]
    assert compute.status.status_code is StatusCode.ERROR
    (event,) = compute.events
    attributes = dict(event.attributes or {})
    assert attributes["exception.type"] == "app.core.errors.PluginFailure"
    assert attributes["exception.message"] == "plugin.fragile: plugin fragile failed: KeyError"
    assert "exception.stacktrace" not in attributes  # a refusal in the service's words, not a bug
    assert "unlucky" not in str(attributes)  # what the plugin said stays in the log
    assert server.status.status_code is StatusCode.ERROR
    assert (server.attributes or {})["error.type"] == "app.core.errors.PluginFailure"
    # the plugin's traceback is logged on the request's task: with its id and its trace's
    (failure,) = [line for line in logged.lines if line.get("exception")]
    trace_id, span_id, _ = traceparent_ids(reply.headers["traceparent"])
    assert failure["request_id"] == "plugin-failure-1"
    assert (failure["trace_id"], failure["span_id"]) == (f"{trace_id:032x}", f"{span_id:016x}")
    assert "unlucky number" in failure["exception"]
    (access,) = [line for line in logged.lines if line["logger"] == "torchfn.access"]
    assert (access["request_id"], access["trace_id"], access["span_id"]) == (
        "plugin-failure-1",
        f"{trace_id:032x}",
        f"{span_id:016x}",
    )


def test_an_unexpected_error_records_its_frames(
    client: TestClient, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(service: ComputeService, job: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"a bug holding {job.arrays['input'].tolist()}")

    monkeypatch.setattr(ComputeService, "run", broken)
    with json_lines() as logged:
        reply = client.post("/activate", json=RELU, headers={"traceparent": TRACEPARENT})
    assert reply.status_code == 500
    assert reply.headers["traceparent"].startswith(f"00-{CALLER_TRACE:032x}-")
    spans = spans_of(exporter, reply)
    server = server_span(spans)
    queue = children(spans, server)[-1]
    assert queue.name == "queue"
    (event,) = queue.events
    attributes = dict(event.attributes or {})
    assert attributes["exception.type"] == "RuntimeError"
    assert "broken" in str(attributes["exception.stacktrace"])
    assert "exception.message" not in attributes  # its text could hold the request's data
    assert "-2.0" not in str(attributes)
    assert server.status.status_code is StatusCode.ERROR
    (line,) = [line for line in logged.lines if line["message"] == "unhandled error"]
    assert line["trace_id"] == f"{CALLER_TRACE:032x}"


# Batches


def test_a_batch_is_one_span_linked_to_each_request_it_served(gate: Gate) -> None:
    tracing, exporter = in_memory_tracing()
    replies: list[Any] = []
    with TestClient(create_app(Settings(tracing=True), tracing)) as client:
        compute = client.app.state.compute  # type: ignore[attr-defined]

        def call(value: float) -> None:
            replies.append(client.post("/activate", json={"function": "relu", "input": [value]}))

        first = threading.Thread(target=call, args=(1.0,))
        first.start()
        assert gate.entered.wait(10)
        queued = [threading.Thread(target=call, args=(float(n),)) for n in range(2, 5)]
        for thread in queued:
            thread.start()
        deadline = time.monotonic() + 10
        while compute.queue_depth < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.release.set()
        for thread in [first, *queued]:
            thread.join(10)
    assert [reply.status_code for reply in replies] == [200] * 4
    spans = exporter.get_finished_spans()
    batches = [span for span in spans if span.name == "compute batch"]
    (batch,) = batches
    assert batch.parent is None  # a trace of its own
    assert dict(batch.attributes or {}) == {
        "torchfn.function": "relu",
        "torchfn.dtype": "float32",
        "torchfn.device": tracing.device,
        "torchfn.batch_size": 3,
    }
    linked = {(link.context.trace_id, link.context.span_id) for link in batch.links}
    computes = {}
    for reply in replies:
        trace = spans_of(exporter, reply)
        (compute_span,) = [span for span in trace if span.name == "compute"]
        computes[reply.headers["traceparent"]] = compute_span
    batched = [span for span in computes.values() if (span.attributes or {})["torchfn.batch_size"] == 3]
    alone = [span for span in computes.values() if (span.attributes or {})["torchfn.batch_size"] == 1]
    assert len(batched) == 3
    assert len(alone) == 1
    assert linked == {(span.context.trace_id, span.context.span_id) for span in batched if span.context is not None}
    assert batch.context is not None
    for span in batched:  # each request's compute span links back to the batch's
        (link,) = span.links
        assert (link.context.trace_id, link.context.span_id) == (batch.context.trace_id, batch.context.span_id)
        assert span.start_time == batch.start_time
        assert span.end_time == batch.end_time
    assert alone[0].links == ()


# Sampling


def test_an_unsampled_request_makes_no_span_but_carries_its_trace() -> None:
    tracing, exporter = in_memory_tracing(ALWAYS_OFF)
    with TestClient(create_app(Settings(tracing=True), tracing)) as client, json_lines() as logged:
        reply = client.post("/activate", json=RELU, headers={"traceparent": TRACEPARENT})
        fresh = client.post("/activate", json=RELU)
    assert exporter.get_finished_spans() == ()
    trace_id, _, flags = traceparent_ids(reply.headers["traceparent"])
    assert (trace_id, flags) == (CALLER_TRACE, 0)
    assert traceparent_ids(fresh.headers["traceparent"])[2] & 1 == 0
    access = [line for line in logged.lines if line["logger"] == "torchfn.access"]
    assert access[0]["trace_id"] == f"{CALLER_TRACE:032x}"


def test_a_callers_unsampled_trace_is_not_sampled(client: TestClient, exporter: InMemorySpanExporter) -> None:
    """The SDK's default sampler follows the caller's decision."""
    reply = client.post("/activate", json=RELU, headers={"traceparent": TRACEPARENT[:-2] + "00"})
    assert reply.status_code == 200
    assert traceparent_ids(reply.headers["traceparent"])[::2] == (CALLER_TRACE, 0)
    assert spans_of(exporter, reply) == []


# The W3C context, as the SDK reads it


CONTEXTS: list[dict[str, list[str]]] = [
    {"traceparent": [TRACEPARENT]},
    {"traceparent": ["  " + TRACEPARENT + "\t"]},
    {"traceparent": [TRACEPARENT[:-2] + "00"]},
    {"traceparent": [TRACEPARENT[:-2] + "03"]},
    {"traceparent": ["01" + TRACEPARENT[2:] + "-a-later-field"]},
    {"traceparent": ["01" + TRACEPARENT[2:] + "x"]},
    {"traceparent": [TRACEPARENT + "-extra"]},
    {"traceparent": ["ff" + TRACEPARENT[2:]]},
    {"traceparent": [TRACEPARENT.upper()]},
    {"traceparent": ["00-" + "0" * 32 + TRACEPARENT[35:]]},
    {"traceparent": [TRACEPARENT[:36] + "0" * 16 + "-01"]},
    {"traceparent": [TRACEPARENT[:-1]]},
    {"traceparent": [TRACEPARENT + " " * 600]},
    {"traceparent": [""]},
    {"traceparent": [TRACEPARENT], "tracestate": ["a=1,b=2"]},
    {"traceparent": [TRACEPARENT], "tracestate": ["a=1", "b=2"]},
    {"traceparent": [TRACEPARENT], "tracestate": ["a=1,a=2"]},
    {"traceparent": [TRACEPARENT], "tracestate": ["not a member"]},
    {"traceparent": [TRACEPARENT], "tracestate": ["a=" + "x" * 9000]},
    {"traceparent": [TRACEPARENT, "00-" + "1" * 32 + "-" + "2" * 16 + "-01"]},
    {"tracestate": ["a=1"]},
]


@pytest.mark.parametrize("carrier", CONTEXTS)
def test_the_context_is_read_as_the_sdks_w3c_propagator_reads_it(carrier: dict[str, list[str]]) -> None:
    logging.getLogger("opentelemetry").setLevel(logging.ERROR)  # its warnings about what it refuses
    try:
        expected = get_current_span(TraceContextTextMapPropagator().extract(carrier)).get_span_context()
    finally:
        logging.getLogger("opentelemetry").setLevel(logging.NOTSET)
    pairs = [(name.encode(), value.encode()) for name, values in carrier.items() for value in values]
    found = remote_parent([(b"host", b"test"), *pairs])
    if not expected.is_valid:
        assert found is None
        return
    assert found == expected
    # gRPC's metadata: str names and values, read the same way
    assert remote_parent([(name, value) for name, values in carrier.items() for value in values]) == expected


def test_a_flood_of_the_sdks_warnings_logs_one_line_in_ten_seconds() -> None:
    """A client's malformed ``tracestate`` on every request (the SDK warns each time), or an
    exporter that cannot keep up (a warning for each request dropped), is one line, not a flood."""
    quiet = QuietWarnings()
    template = "Member doesn't match the w3c identifiers format %s"
    records = [
        logging.LogRecord("opentelemetry.trace.span", logging.WARNING, __file__, 0, template, (f"bad {n}",), None)
        for n in range(100)
    ]
    assert [quiet.filter(record) for record in records].count(True) == 1
    quiet.install()
    try:
        assert all(quiet in logging.getLogger(name).filters for name in QuietWarnings.LOGGERS)
    finally:
        quiet.remove()
    assert not any(quiet in logging.getLogger(name).filters for name in QuietWarnings.LOGGERS)


# The spans made here, as the SDK's pipeline takes them


def test_the_spans_encode_as_otlp(client: TestClient, exporter: InMemorySpanExporter) -> None:
    reply = client.post("/activate", json=RELU, headers={"traceparent": TRACEPARENT})
    spans = spans_of(exporter, reply)
    message = ExportTraceServiceRequest.FromString(encode_spans(spans).SerializeToString())
    (resource,) = message.resource_spans
    (scope,) = resource.scope_spans
    assert scope.scope.name == "torchfn"
    encoded = {span.name: span for span in scope.spans}
    assert set(encoded) == {"POST /activate", *PHASES}
    server = encoded["POST /activate"]
    assert server.parent_span_id == CALLER_SPAN.to_bytes(8, "big")
    assert server.trace_id == CALLER_TRACE.to_bytes(16, "big")
    assert all(encoded[name].parent_span_id == server.span_id for name in PHASES)
    assert server.kind == server.SPAN_KIND_SERVER


# Off


def test_with_tracing_off_no_opentelemetry_code_runs(plugins: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a tracer, span, context or sampler is made, per request or at start-up, and the reply
    carries no ``traceparent``; the road and the error pipeline find no trace."""

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("OpenTelemetry code ran with tracing off")

    import opentelemetry.sdk.trace as sdk
    import opentelemetry.trace as api

    import app.telemetry.tracing as tracing

    for target, name in [
        (sdk.TracerProvider, "__init__"),
        (sdk.ReadableSpan, "__init__"),
        (api.SpanContext, "__new__"),
        (api.TraceState, "from_header"),
        (tracing, "tracing_from_environment"),
        (tracing.Tracing, "server_span"),
        (http_tracing, "start_span"),
        (request_trace.RequestTrace, "__init__"),
        (request_trace.RequestTrace, "entered"),
        (request_trace.RequestTrace, "fail"),
    ]:
        monkeypatch.setattr(target, name, forbidden)
    settings = Settings(tracing=False, plugins=[f"{plugins}:Fragile"], plugin_entry_points=False)
    with TestClient(create_app(settings)) as client:
        replies = [
            client.post("/activate", json=RELU, headers={"traceparent": TRACEPARENT, "tracestate": "a=1"}),
            client.post("/activate", json={"function": "relu", "input": "x"}),
            client.post("/activate", json={"function": "fragile", "input": [13.0]}),
            client.post("/v2/models/nope/infer", json={"inputs": []}),
            client.get("/functions/relu"),
        ]
    assert [reply.status_code for reply in replies] == [200, 422, 500, 404, 200]
    assert not any("traceparent" in reply.headers for reply in replies)


def test_the_server_span_knows_an_unmatched_path_as_the_middleware_does() -> None:
    assert http_tracing.UNMATCHED == middleware.UNMATCHED


def test_fastapis_own_instrumentation_is_never_on() -> None:
    """One switch: the service traces its requests itself; FastAPI's instrumentation (which would
    add its own server spans, metrics and logs to any global provider) stays off either way."""
    for tracing in (False, True):
        app = create_app(Settings(tracing=tracing), in_memory_tracing()[0] if tracing else None)
        config = app._telemetry  # FastAPI's, as given to FastAPI()
        assert not any(config[signal] for signal in ("tracing", "metrics", "logs"))


def test_tracing_is_off_by_default_and_every_transport_finds_it_on_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    assert Settings.model_fields["tracing"].default is None
    assert Settings().tracing is False
    assert create_app(Settings()).state.tracing is None
    tracing, _ = in_memory_tracing()
    assert create_app(Settings(tracing=True), tracing).state.tracing is tracing
