"""Tracing against the real server process, started as the container starts it with the standard
``OTEL_*`` variables pointing at an OTLP receiver that the test starts (HTTP, and gRPC): a request
carrying a ``traceparent`` gets the trace id on its reply, the spans of that trace reach the
receiver, and the server's log lines for that request carry its trace."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from bench.otlp_receiver import OtlpGrpcReceiver, OtlpReceiver, Received, attributes_of
from tests.support.server_process import RunningServer, running_server
from tests.support.tracing import PHASES, traceparent_ids

pytestmark = pytest.mark.server

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
ARRIVAL_S = 30.0
"""Longest the spans may take to reach the receiver (exported every 100 ms here; a loaded machine)."""


@pytest.fixture(scope="module", params=["http/protobuf", "grpc"])
def traced(request: pytest.FixtureRequest) -> Iterator[tuple[RunningServer, Received]]:
    protocol: str = request.param
    receiver: OtlpReceiver | OtlpGrpcReceiver = OtlpReceiver() if protocol == "http/protobuf" else OtlpGrpcReceiver()
    # Over OTLP/HTTP the standard variables alone turn tracing on, as an operator's collector setup
    # would; over gRPC the service's own switch says so too.
    switch = {"TORCHFN_TRACING": "true"} if protocol == "grpc" else {}
    env = {
        **switch,
        "TORCHFN_LOG_FORMAT": "json",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": "torchfn-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    with receiver, running_server(env) as server:
        yield server, receiver


def arrived(receiver: Received, trace_id: str, count: int) -> list[Span]:
    """The spans of ``trace_id`` once ``count`` of them have reached the receiver."""
    deadline = time.monotonic() + ARRIVAL_S
    while True:
        spans = [span for _, span in receiver.spans() if span.trace_id.hex() == trace_id]
        if len(spans) >= count or time.monotonic() > deadline:
            return spans
        time.sleep(0.05)


def test_a_traced_request_reaches_the_collector_and_its_log_lines(traced: tuple[RunningServer, Received]) -> None:
    server, receiver = traced
    request_id = f"traced-{time.monotonic_ns()}"
    reply = httpx.post(
        f"{server.url}/activate",
        json={"function": "relu", "input": [1.0, -2.0, 3.0]},
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "x-request-id": request_id},
        timeout=30,
    )
    assert reply.status_code == 200
    trace_id, span_id, flags = traceparent_ids(reply.headers["traceparent"])
    assert (f"{trace_id:032x}", flags) == (CALLER_TRACE, 1)
    spans = arrived(receiver, CALLER_TRACE, 1 + len(PHASES))
    by_name = {span.name: span for span in spans}
    assert set(by_name) == {"POST /activate", *PHASES}
    server_span = by_name["POST /activate"]
    assert server_span.span_id == span_id.to_bytes(8, "big")
    assert server_span.parent_span_id.hex() == CALLER_SPAN
    assert server_span.kind == Span.SPAN_KIND_SERVER
    assert attributes_of(server_span)["http.route"] == "/activate"
    assert all(by_name[name].parent_span_id == server_span.span_id for name in PHASES)
    assert attributes_of(by_name["compute"])["torchfn.function"] == "relu"
    resources = [resource for resource, span in receiver.spans() if span.trace_id.hex() == CALLER_TRACE]
    assert all(resource["service.name"] == "torchfn-under-test" for resource in resources)
    lines = server.json_lines_about(request_id)
    assert lines
    assert all(line["trace_id"] == CALLER_TRACE for line in lines)
    assert all(line["span_id"] == f"{span_id:016x}" for line in lines)


def test_a_failure_reaches_the_collector_on_its_phase(traced: tuple[RunningServer, Received]) -> None:
    server, receiver = traced
    trace = "1bf92f3577b34da6a3ce929d0e0e4736"
    reply = httpx.post(
        f"{server.url}/activate",
        json={"function": "relu", "input": [[1.0], [1.0, 2.0]]},
        headers={"traceparent": f"00-{trace}-{CALLER_SPAN}-01"},
        timeout=30,
    )
    assert reply.status_code == 422
    assert reply.headers["traceparent"].startswith(f"00-{trace}-")
    by_name = {span.name: span for span in arrived(receiver, trace, 3)}
    assert set(by_name) == {"POST /activate", "read body", "decode"}
    decode = by_name["decode"]
    assert decode.status.code == Status.STATUS_CODE_ERROR
    (event,) = decode.events
    assert event.name == "exception"
    assert attributes_of(event)["exception.type"] == "app.core.errors.InvalidRequest"
