"""Tracing for tests: the service's tracing with spans kept in memory (the SDK's own exporter)."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Sampler

from app.telemetry.tracing import Tracing


def in_memory_tracing(sampler: Sampler = ALWAYS_ON) -> tuple[Tracing, InMemorySpanExporter]:
    """The service's tracing, every span handed at once to an in-memory exporter."""
    exporter = InMemorySpanExporter()
    processor = SynchronousMultiSpanProcessor()  # type: ignore[no-untyped-call]
    provider = TracerProvider(sampler=sampler, active_span_processor=processor, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider, processor), exporter


def by_name(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found
