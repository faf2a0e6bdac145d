"""Tracing as the standard ``OTEL_*`` variables configure it, read by the SDK itself: its sampler,
resource, exporters and their batch processors; ``OTEL_SDK_DISABLED`` keeps it off; a server asked
for an exporter the SDK does not know refuses to start."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Sequence

import pytest
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from app import serve
from app.core.config import Settings
from app.main import create_app
from app.telemetry.tracing import RequestSpans, Tracing, tracing_from_environment


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ``OTEL_*`` variable but those the test sets."""
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_the_sdk_reads_the_sampler_and_the_resource(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    environment.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    environment.setenv("OTEL_SERVICE_NAME", "torchfn-test")
    environment.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    environment.setenv("OTEL_TRACES_EXPORTER", "none")
    tracing = tracing_from_environment()
    assert tracing is not None
    assert isinstance(tracing.sampler, ParentBased)
    assert isinstance(tracing.sampler._root, TraceIdRatioBased)  # the SDK's own structure
    assert tracing.sampler._root.rate == 0.25
    attributes = tracing.resource.attributes
    assert attributes["service.name"] == "torchfn-test"
    assert attributes["deployment.environment"] == "test"
    assert tracing.exporters == []


def test_each_exporter_is_behind_a_batch_processor(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("OTEL_TRACES_EXPORTER", "otlp")
    environment.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    environment.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    tracing = tracing_from_environment()
    assert tracing is not None
    tracing.open("cpu")
    try:
        (processor,) = tracing.processors
        assert isinstance(processor, BatchSpanProcessor)  # spans exported off the request path
        wrapped = processor.span_exporter
        assert isinstance(wrapped, RequestSpans)
        assert isinstance(wrapped.exporter, OTLPSpanExporter)
    finally:
        asyncio.run(tracing.close())


def test_a_collector_that_does_not_answer_does_not_hold_the_shutdown(environment: pytest.MonkeyPatch) -> None:
    """What is left to export gets a moment at shutdown, not the exporters' retries."""
    released = threading.Event()

    class Stuck(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            released.wait(60)
            return SpanExportResult.FAILURE

        def shutdown(self) -> None:
            released.wait(60)

    tracing = Tracing(TracerProvider(shutdown_on_exit=False), (), [Stuck])
    tracing.open("cpu")
    started = time.monotonic()
    try:
        asyncio.run(tracing.close(within=0.2))
        assert time.monotonic() - started < 30  # not the 60 s the exporter holds
    finally:
        released.set()


def test_otel_sdk_disabled_keeps_tracing_off(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing_from_environment() is None
    with TestClient(create_app(Settings(tracing=True))) as client:
        reply = client.post("/activate", json={"function": "relu", "input": [1.0]})
    assert reply.status_code == 200
    assert "traceparent" not in reply.headers


def test_the_server_refuses_an_exporter_the_sdk_does_not_know(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("TORCHFN_TRACING", "true")
    environment.setenv("OTEL_TRACES_EXPORTER", "zipkin_json")
    assert serve.main() == serve.BAD_SETTINGS
    complaint = capsys.readouterr().err
    assert "invalid setting OTEL_TRACES_EXPORTER" in complaint
    assert "zipkin_json" in complaint


@pytest.mark.parametrize(
    ("variables", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console, otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "None", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({"OTEL_SERVICE_NAME": "torchfn", "OTEL_TRACES_SAMPLER": "always_on"}, False),
        ({"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "console"}, True),
    ],
)
def test_unset_tracing_follows_the_standard_variables(
    environment: pytest.MonkeyPatch, variables: dict[str, str], on: bool
) -> None:
    for name, value in variables.items():
        environment.setenv(name, value)
    assert Settings().tracing is on


def test_the_service_switch_says_so_outright(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    environment.setenv("TORCHFN_TRACING", "false")
    assert Settings().tracing is False
    environment.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    environment.setenv("TORCHFN_TRACING", "true")
    assert Settings().tracing is True
