"""Tracing for tests: the service's tracing with spans kept in memory (the SDK's own exporter), and
log lines formatted as the server writes them, while the request they are about is served."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import DEFAULT_ON, Sampler

from app.core.logs import ACCESS_LOGGER, JsonFormatter
from app.telemetry.tracing import RequestSpans, Tracing

PHASES = ["read body", "decode", "queue", "compute", "encode"]
"""A compute request's spans under its server span, in the order they began."""


def in_memory_tracing(sampler: Sampler = DEFAULT_ON) -> tuple[Tracing, InMemorySpanExporter]:
    """The service's tracing (the SDK's default sampler: the caller's decision, else every request), every
    span handed at once to an in-memory exporter (a request's
    phases behind its server span, as they reach every exporter)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)
    return Tracing(provider, [SimpleSpanProcessor(RequestSpans(exporter))]), exporter


def trace_of(spans: Sequence[ReadableSpan], trace_id: int) -> list[ReadableSpan]:
    return [span for span in spans if span.context is not None and span.context.trace_id == trace_id]


def server_span(spans: Sequence[ReadableSpan]) -> ReadableSpan:
    (found,) = [span for span in spans if span.kind.name == "SERVER"]
    return found


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    """The spans whose parent is ``parent``, in the order they began."""
    assert parent.context is not None
    found = [span for span in spans if span.parent is not None and span.parent.span_id == parent.context.span_id]
    return sorted(found, key=lambda span: span.start_time or 0)


def traceparent_ids(header: str) -> tuple[int, int, int]:
    """(trace id, parent id, flags) of a W3C ``traceparent``."""
    version, trace_id, span_id, flags = header.split("-")
    assert version == "00"
    return int(trace_id, 16), int(span_id, 16), int(flags, 16)


class JsonLines(logging.Handler):
    """Every record, formatted as the server's JSON lines are, when it is logged (so in the
    context of the request it is about)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(self.format(record)))


@contextmanager
def json_lines() -> Iterator[JsonLines]:
    """The JSON lines of every logger (the access log's included) while the block runs."""
    handler = JsonLines()
    root, access = logging.getLogger(), logging.getLogger(ACCESS_LOGGER)
    levels = root.level, access.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    access.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        access.setLevel(levels[1])
