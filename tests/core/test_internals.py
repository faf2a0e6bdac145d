"""What ``app/core/internals.py`` reaches past uvicorn's, prometheus_client's and the OpenTelemetry
SDK's public interfaces for, pinned: the releases installed are the ones the lock names (a new
release is a reason to read these internals again and update this pin), and each hook does what it
says on the release installed, on real objects of the library."""

from __future__ import annotations

import asyncio
import math
import re
from importlib.metadata import version
from typing import Any

import pytest
import uvicorn
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from prometheus_client import CollectorRegistry, Histogram

from app.core.internals import HttpToolsHooks, add_to_histogram, histogram_bounds, trace_exporter_classes
from tests.support.paths import ROOT

REACHED_INTO = {
    "uvicorn": "uvicorn",
    "prometheus_client": "prometheus-client",
    "opentelemetry.sdk": "opentelemetry-sdk",
}
"""Import name: distribution name, for the libraries whose internals the service uses."""


def _locked_version(distribution: str) -> str:
    text = (ROOT / "requirements.txt").read_text()
    found = re.search(rf"^{re.escape(distribution)}(?:\[[^\]]*\])?==([^\s;#]+)", text, re.MULTILINE)
    assert found, f"{distribution} is not pinned in requirements.txt"
    return found.group(1)


@pytest.mark.parametrize(("module", "distribution"), sorted(REACHED_INTO.items()))
def test_the_release_installed_is_the_one_whose_internals_were_read(module: str, distribution: str) -> None:
    assert version(distribution) == _locked_version(distribution), (
        f"{distribution} changed: read app/core/internals.py against the new release, then update the lock"
    )


class _Transport(asyncio.Transport):
    """A transport that keeps what is written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _never_answering_app(scope: Any, receive: Any, send: Any) -> None:
    await asyncio.Event().wait()


def test_the_protocol_hooks_follow_a_request_on_the_installed_uvicorn() -> None:
    async def scenario() -> None:
        config = uvicorn.Config(_never_answering_app, http="httptools", lifespan="off", log_level="error")
        state = uvicorn.server.ServerState()
        first = HttpToolsHooks(config, state, {})
        second = HttpToolsHooks(config, state, {})
        transports = [_Transport(), _Transport()]
        first.connection_made(transports[0])
        second.connection_made(transports[1])
        assert first.open_connections == 2
        assert first.peers() == [second]
        assert not first.answering
        assert not first.response_started
        first.feed(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab")
        assert first.answering
        assert not first.response_started
        first.feed(b"cd")
        first.feed(b"GET /y HTTP/1.1\r\nHost: t\r\n\r\n")
        assert first.pipelined
        cycle = first.cycle
        assert cycle is not None
        first.end_request()
        assert cycle.disconnected
        assert cycle.message_event.is_set()
        for protocol in (first, second):
            protocol.connection_lost(None)
        for task in list(state.tasks):
            task.cancel()
        await asyncio.sleep(0)

    asyncio.run(scenario())


def _samples(histogram: Histogram, name: str) -> dict[tuple[str, str], float]:
    """(sample suffix, bucket bound): value, the creation time left out."""
    return {
        (sample.name.removeprefix(name), sample.labels.get("le", "")): sample.value
        for family in histogram.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_a_histograms_bounds_and_bulk_additions_are_what_observe_counts() -> None:
    buckets = (0.1, 0.5, 2.0)
    bulk = Histogram("bulk", "", buckets=buckets, registry=CollectorRegistry())
    one_by_one = Histogram("each", "", buckets=buckets, registry=CollectorRegistry())
    assert list(histogram_bounds(bulk)) == [*buckets, math.inf]
    values = [0.05, 0.1, 0.3, 0.5, 1.0, 7.0, 7.0]
    counts = [0] * 4
    for value in values:
        counts[next(i for i, bound in enumerate(histogram_bounds(bulk)) if value <= bound)] += 1
        one_by_one.observe(value)
    add_to_histogram(bulk, counts, sum(values))
    assert _samples(bulk, "bulk") == _samples(one_by_one, "each")
    assert _samples(bulk, "bulk")[("_count", "")] == len(values)


EXPORTER_VARIABLES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
)


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, [GrpcExporter]),  # the specification's exporter, the SDK's protocol
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, [HttpExporter]),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, [GrpcExporter]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, [GrpcExporter]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, [HttpExporter]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, [HttpExporter]),
        ({"OTEL_TRACES_EXPORTER": "otlp_proto_http"}, [HttpExporter]),
        (
            {"OTEL_TRACES_EXPORTER": "console,otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            [ConsoleSpanExporter, GrpcExporter],
        ),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": ""}, []),
    ],
)
def test_trace_exporters_are_read_as_the_sdks_configurator_reads_them(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: list[type[object]]
) -> None:
    for name in EXPORTER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert trace_exporter_classes() == expected


@pytest.mark.parametrize(
    ("environment", "complaint"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger_thrift"}, "jaeger_thrift"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "http/json"),
    ],
)
def test_an_exporter_or_protocol_the_sdk_does_not_know_is_refused(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], complaint: str
) -> None:
    for name in EXPORTER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError, match=complaint.replace("/", ".")):
        trace_exporter_classes()
