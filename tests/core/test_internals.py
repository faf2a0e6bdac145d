"""What the service takes from libraries past their public interfaces, pinned to the pinned
releases (``app/core/internals.py``)."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from app.core.internals import trace_exporter_classes

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
