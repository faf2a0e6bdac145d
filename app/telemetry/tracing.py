"""Traces of requests with the OpenTelemetry SDK, whatever their transport (on when
``TORCHFN_TRACING`` is; imported only then).

A transport starts a request's server span with ``Tracing.server_span``, handing it the request's
headers or metadata (W3C ``traceparent`` and ``tracestate`` are read from them: a request without
a valid ``traceparent`` starts a new trace), returns the span's ``traceparent`` on its reply, tells
it how the request failed (``app.telemetry.request_trace.note_failure``) and ends it
(``ServerSpan.end``). In between, the road marks where each phase of a compute request ended and
the compute observer (``TracingObserver``) notes how its job was computed. The spans:

    POST /activate            (server: method, route, status; error.type on a 5xx)
    ├── read body
    ├── decode
    ├── queue                 (the cost check, room in the memory budget, the batcher's queue)
    ├── compute               (torchfn.function, dtype, device, batch_size; linked to its batch's span)
    └── encode

A compute call that served several requests (a batch) is one span of its own, ``compute batch``,
linked to the ``compute`` span of each traced request it served. A failure is recorded on the span
of the phase it happened in (or the server span): status ERROR and an ``exception`` event with the
exception's type, the service's own message for a refusal, the frames of an unexpected error,
never the request's data.

What it costs (``python -m bench.tracing``, ``docs/performance.md``): the request path makes one
object per request, the finished server span (``RequestSpan``, a ``ReadableSpan`` carrying its
notes), and hands it to the SDK's ``BatchSpanProcessor``; the spans of its phases are made from
its notes in the processor's export thread (``RequestSpans``, in front of each exporter), in bulk.
Made on the request path with the SDK's ``Tracer``, the six spans of a request cost ~25 µs each;
made there as ``ReadableSpan`` objects they still took ~180 Python calls a request, ~22 each, and
the request itself ~390. The SDK's sampler, ids, resource (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``), batch processor and exporters are used as they are, configured by
the standard ``OTEL_*`` variables, read by the SDK itself; ``tests/telemetry/test_tracing.py`` pins
that its exporters and OTLP encoder take the spans made here as they take their own.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import Token
from typing import NamedTuple

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    NoOpTracer,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)
from opentelemetry.util.types import AttributeValue

from app.compute.batching import Served
from app.compute.jobs import Job, Result
from app.core.errors import ServiceError
from app.core.internals import trace_exporter_classes
from app.core.request_context import RequestContext
from app.telemetry.request_trace import (
    ANSWERING,
    COMPUTING,
    DECODING,
    ENCODING,
    OUTSIDE,
    READING,
    Failure,
    RequestTrace,
    current_trace,
)

logger = logging.getLogger(__name__)

SCOPE = InstrumentationScope("torchfn")
"""The instrumentation scope of the service's spans."""
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_CONTEXT_NAMES = frozenset((TRACEPARENT, TRACESTATE, TRACEPARENT.encode(), TRACESTATE.encode()))
_NO_PARENT = Context()
_UNSET = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)
_NO_EVENTS: tuple[Event, ...] = ()
CLOSE_S = 2.0
"""Longest the spans left at shutdown have to reach the collector."""
_BATCH_FLAGS = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
"""A batch's span: sampled (it is made for sampled requests), its trace id random."""
_PHASES = ((READING, "read body"), (DECODING, "decode"), (COMPUTING, "queue"), (ENCODING, "encode"))
"""Each phase of the road and its span (``queue``, and ``compute`` once its job has been computed)."""

Metadata = Iterable[tuple[bytes, bytes]] | Iterable[tuple[str, str | bytes]]
"""A request's headers or metadata as (name, value) pairs, names in lower case: ASGI's header list
(bytes), or gRPC's ``invocation_metadata()`` (str names, str values but for ``-bin`` keys)."""

_TRACEPARENT_FORMAT = re.compile(r"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*")
"""W3C ``traceparent`` (the SDK's W3C propagator's pattern): version, trace id, parent id, flags,
and a later version's further fields."""
_INVALID_TRACE, _INVALID_SPAN = "0" * 32, "0" * 16
MAX_TRACEPARENT = 512
MAX_TRACESTATE = 8192
"""The SDK propagator's limits: a longer ``traceparent`` is ignored, a longer ``tracestate`` dropped."""


def remote_parent(metadata: Metadata) -> SpanContext | None:
    """The W3C trace context the caller sent: its ``traceparent``, and its ``tracestate`` when it
    sent one (several fields are combined); None when it sent no valid ``traceparent``. Read as
    the SDK's W3C propagator reads them (``tests/telemetry/test_tracing.py`` holds them to the
    same answers), without its per-request ``Context``, getter and ``re`` cache look-ups (~4 µs of
    the ~6 it takes, measured)."""
    traceparent: str | None = None
    tracestate: list[str] | None = None
    for name, value in metadata:
        if name in _CONTEXT_NAMES:
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            if name == TRACEPARENT or name == b"traceparent":
                if traceparent is None:
                    traceparent = text
            elif tracestate is None:
                tracestate = [text]
            else:
                tracestate.append(text)
    if traceparent is None or len(traceparent) > MAX_TRACEPARENT:
        return None
    match = _TRACEPARENT_FORMAT.fullmatch(traceparent)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if trace_id == _INVALID_TRACE or span_id == _INVALID_SPAN or version == "ff" or (version == "00" and rest):
        return None
    state = None
    if tracestate is not None and sum(map(len, tracestate)) + len(tracestate) - 1 <= MAX_TRACESTATE:
        state = TraceState.from_header(tracestate)
    return SpanContext(int(trace_id, 16), int(span_id, 16), True, TraceFlags(int(flags, 16)), state)


class Batch(NamedTuple):
    """A compute call that served several jobs: its span, made (off the request path) with the
    children of the first traced request it served, linked to the ``compute`` span of each."""

    trace_id: int
    span_id: int
    start: int
    end: int
    attributes: Mapping[str, AttributeValue]
    traced: Sequence[ServerSpan]
    """The traced requests it served."""


class Compute(NamedTuple):
    """How a traced request's job was computed, noted right after its compute call (on the loop:
    a tuple and an id, the spans are made later)."""

    start: int
    end: int
    span_id: int
    """Its ``compute`` span's id (known now, for its batch's links)."""
    attributes: Mapping[str, AttributeValue]
    batch: Batch | None
    """The compute call, when it served several jobs."""


class ServerSpan(RequestTrace):
    """A request's server span, from ``Tracing.server_span`` to ``end``; current (``current_trace``)
    in between when it is recorded."""

    __slots__ = (
        "attributes",
        "compute",
        "context",
        "ids",
        "name",
        "parent",
        "start",
        "token",
        "traceparent",
        "tracing",
    )

    def __init__(
        self,
        tracing: Tracing | None,
        context: SpanContext,
        parent: SpanContext | None,
        name: str,
        attributes: dict[str, AttributeValue],
        ids: tuple[str, str],
        flags: int,
    ) -> None:
        """``tracing``: None when the span is not recorded (not sampled); ``ids``: its trace's and
        its own id, in hex as W3C writes them; ``flags``: its trace flags."""
        super().__init__(tracing.jobs if tracing is not None else {})
        self.tracing = tracing
        self.context = context
        self.parent = parent
        self.name = name
        self.attributes = attributes
        self.start = time.time_ns()
        self.ids = ids
        self.traceparent = f"00-{ids[0]}-{ids[1]}-{flags:02x}"
        """The W3C ``traceparent`` of this span, for the reply (the caller's trace, this span as parent)."""
        self.compute: Compute | None = None
        self.token: Token[RequestTrace | None] = current_trace.set(self if tracing is not None else None)

    def end(
        self, name: str | None = None, attributes: Mapping[str, AttributeValue] | None = None, error: str | None = None
    ) -> None:
        """End the span, in the task that started it. ``name``: its final name (the route, once
        matched); ``attributes``: added now (the status); ``error``: the request failed (a 5xx, a
        gRPC error), and this is its ``error.type`` unless a failure was noted (its exception's type)."""
        current_trace.reset(self.token)
        tracing = self.tracing
        if tracing is None:
            return
        if self.job_id:
            self.forget_job()
        if name is not None:
            self.name = name
        if attributes:
            self.attributes.update(attributes)
        tracing.finish(self, time.time_ns(), error)


class RequestSpan(ReadableSpan):
    """A request's finished server span, as the SDK's processors and exporters take spans, carrying
    the notes its children are made from (``RequestSpans``, off the request path)."""

    def __init__(self, notes: ServerSpan, tracing: Tracing, end: int, status: Status, events: Sequence[Event]) -> None:
        super().__init__(
            notes.name,
            notes.context,
            notes.parent,
            tracing.resource,
            notes.attributes,
            events,
            (),
            SpanKind.SERVER,
            None,  # instrumentation_info, superseded by instrumentation_scope
            status,
            notes.start,
            end,
            SCOPE,
        )
        self.notes = notes
        self.tracing = tracing


class Tracing:
    """The service's tracing, built once per server process (``tracing_from_environment``)."""

    def __init__(
        self,
        provider: TracerProvider,
        processors: Sequence[SpanProcessor] = (),
        exporters: Sequence[Callable[[], SpanExporter]] = (),
    ) -> None:
        """``provider``: its sampler, id generator and resource are used (the SDK reads them from
        the environment); ``processors``: where finished spans go, each with ``RequestSpans`` in front
        of its exporter; ``exporters``: each started by ``open`` behind a ``BatchSpanProcessor``
        (and ``RequestSpans``)."""
        self.provider = provider
        self.processors = list(processors)
        self.exporters = exporters
        self.sampler = provider.sampler
        self.ids = provider.id_generator
        self.resource = provider.resource
        self.device = ""
        """Where compute runs (``torchfn.device``), known once the compute service has started."""
        self.jobs: dict[int, RequestTrace] = {}
        """Traced requests by the id of the job they are computing (``RequestTrace.decoded``)."""
        self.observer = TracingObserver(self)
        """The compute service's observer that notes how traced jobs were computed."""
        self._quiet = QuietWarnings()
        self._on_end: Callable[[ReadableSpan], None] = self._to_processors
        self._random_ids = TraceFlags.RANDOM_TRACE_ID if self.ids.is_trace_id_random() else TraceFlags.DEFAULT
        """The flag of the trace ids this service makes (the W3C ``random-trace-id``, as the SDK sets it)."""

    def open(self, device: str) -> None:
        """Start exporting (the lifespan's start)."""
        self.device = device
        self.resource = self.provider.resource
        self.processors.extend(BatchSpanProcessor(RequestSpans(exporter())) for exporter in self.exporters)
        # One processor (the usual case: one exporter) is called directly.
        self._on_end = self.processors[0].on_end if len(self.processors) == 1 else self._to_processors
        self._quiet.install()

    async def close(self, within: float = CLOSE_S) -> None:
        """Export what is left and stop (the lifespan's end), in ``within`` seconds at most: a
        collector that does not answer must not hold the process past its grace period (the
        exporters retry for ~10 s, the batch processor waits 30), so what it has not taken by then
        is lost."""

        def shut() -> None:
            for processor in self.processors:
                processor.shutdown()

        closing = threading.Thread(target=shut, name="tracing-close", daemon=True)
        closing.start()
        await asyncio.to_thread(closing.join, within)
        if closing.is_alive():
            logger.warning("spans not exported within %.1f s of shutting down; left behind", within)
        self._quiet.remove()

    def _to_processors(self, span: ReadableSpan) -> None:
        for processor in self.processors:
            processor.on_end(span)

    def server_span(
        self,
        request: RequestContext | None,
        metadata: Metadata,
        name: str,
        attributes: dict[str, AttributeValue],
        kind: SpanKind = SpanKind.SERVER,
    ) -> ServerSpan:
        """Start the server span of the request being served and make it current: its parent is
        the W3C context in ``metadata`` (a new trace when there is none), its sampling the SDK's
        sampler's (given ``name`` and ``attributes``, which it keeps), and the request's context
        (``request``) gets its trace and span ids for the log lines. End it with ``ServerSpan.end``,
        in the same task."""
        parent = remote_parent(metadata)
        ids = self.ids
        if parent is None:
            parent_context = _NO_PARENT
            trace_id = ids.generate_trace_id()
            flags = self._random_ids
        else:
            parent_context = set_span_in_context(NonRecordingSpan(parent), _NO_PARENT)
            trace_id = parent.trace_id
            flags = parent.trace_flags & TraceFlags.RANDOM_TRACE_ID
        sampling = self.sampler.should_sample(parent_context, trace_id, name, kind, attributes)
        decision = sampling.decision
        if decision is Decision.RECORD_AND_SAMPLE:
            flags |= TraceFlags.SAMPLED
        span_id = ids.generate_span_id()
        context = SpanContext(trace_id, span_id, False, TraceFlags(flags), sampling.trace_state)
        if sampling.attributes:
            attributes.update(sampling.attributes)
        hex_ids = (f"{trace_id:032x}", f"{span_id:016x}")
        if request is not None:
            request.trace_id, request.span_id = hex_ids
        recorded = self if decision is not Decision.DROP else None
        return ServerSpan(recorded, context, parent, name, attributes, hex_ids, flags)

    def finish(self, span: ServerSpan, end: int, error: str | None) -> None:
        """Hand a request's finished server span to the processors (its children are made later,
        from its notes, by ``RequestSpans``)."""
        status, events = _UNSET, _NO_EVENTS
        failure = span.failure
        if error is not None:
            span.attributes["error.type"] = failure.type if failure is not None else error
            status = _ERROR
        if failure is not None and failure.phase in (OUTSIDE, ANSWERING):  # in no phase's span
            status, events = _failed(failure, error is not None)
        self._on_end(RequestSpan(span, self, end, status, events))

    def computed(self, jobs: Sequence[Job], traced: Sequence[ServerSpan], start: int, end: int) -> None:
        """A compute call ran ``jobs`` from ``start`` to ``end``; ``traced`` are the recorded
        requests among them: each notes it (its compute span's id and attributes), and a call
        shared by several jobs is noted for its own span."""
        new_id = self.ids.generate_span_id
        size = len(jobs)
        first = jobs[0]
        function, dtype = first.spec.name, first.dtype
        alike = all(job.spec.name == function and job.dtype == dtype for job in jobs)
        shared = _compute_attributes(function, dtype, self.device, size) if alike else None
        batch = None
        if size > 1:
            names = [function] if alike else sorted({job.spec.name for job in jobs})
            batch_attributes: dict[str, AttributeValue] = {
                "torchfn.function": names[0] if len(names) == 1 else names,
                "torchfn.device": self.device,
                "torchfn.batch_size": size,
            }
            if alike:
                batch_attributes["torchfn.dtype"] = dtype
            batch = Batch(self.ids.generate_trace_id(), new_id(), start, end, batch_attributes, traced)
        for span in traced:
            attributes = shared
            if attributes is None:
                job = next(job for job in jobs if id(job) == span.job_id)
                attributes = _compute_attributes(job.spec.name, job.dtype, self.device, size)
            span.compute = Compute(start, end, new_id(), attributes, batch)

    def children(self, span: RequestSpan) -> list[ReadableSpan]:
        """The spans of a request's phases, from its notes. A phase the request did not finish ends
        when it failed (its failure recorded on it), or with the request when it was cancelled
        without a failure noted."""
        notes = span.notes
        marks = notes.marks
        if not marks:  # not a compute request, or refused before the road
            return []
        context = notes.context
        trace_id, flags, state = context.trace_id, context.trace_flags, context.trace_state
        new_id = self.ids.generate_span_id
        resource = self.resource
        failure = notes.failure
        where = failure.phase if failure is not None else OUTSIDE
        cut = failure.at if failure is not None else span.end_time or notes.start
        taken = len(marks)
        made: list[ReadableSpan] = []
        for phase, name in _PHASES:
            if taken < phase:  # the request never began this phase
                break
            start = marks[phase - 1]
            compute = notes.compute if phase == COMPUTING else None
            if compute is not None:
                child = SpanContext(trace_id, new_id(), False, flags, state)
                made.append(_span("queue", child, context, resource, start, compute.start))
                fault = failure if where == COMPUTING else None
                batch = compute.batch
                links = () if batch is None else (Link(_batch_context(batch)),)
                start, end, attributes = compute.start, compute.end, compute.attributes
                child = SpanContext(trace_id, compute.span_id, False, flags, state)
                made.append(_span("compute", child, context, resource, start, end, fault, attributes, links))
                if batch is not None and batch.traced[0] is notes:  # the batch's span goes with its first request's
                    made.append(_batch_span(batch, resource))
                continue
            child = SpanContext(trace_id, new_id(), False, flags, state)
            if taken > phase:
                made.append(_span(name, child, context, resource, start, marks[phase]))
            else:  # it ended in this phase
                made.append(_span(name, child, context, resource, start, cut, failure if where == phase else None))
        return made


def _batch_context(batch: Batch) -> SpanContext:
    return SpanContext(batch.trace_id, batch.span_id, False, _BATCH_FLAGS)


def _batch_span(batch: Batch, resource: Resource) -> ReadableSpan:
    """A batch's span, a trace of its own, linked to the ``compute`` span of each traced request."""
    links = []
    for span in batch.traced:
        parent, compute = span.context, span.compute
        if compute is not None:
            context = SpanContext(parent.trace_id, compute.span_id, False, parent.trace_flags, parent.trace_state)
            links.append(Link(context))
    return ReadableSpan(
        "compute batch",
        _batch_context(batch),
        None,
        resource,
        batch.attributes,
        _NO_EVENTS,
        links,
        SpanKind.INTERNAL,
        None,
        _UNSET,
        batch.start,
        batch.end,
        SCOPE,
    )


def _span(
    name: str,
    context: SpanContext,
    parent: SpanContext,
    resource: Resource,
    start: int,
    end: int,
    failure: Failure | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    links: Sequence[Link] = (),
) -> ReadableSpan:
    """A phase's finished span."""
    status, events = _UNSET, _NO_EVENTS
    if failure is not None:
        status, events = _failed(failure)
    return ReadableSpan(
        name,
        context,
        parent,
        resource,
        attributes,
        events,
        links,
        SpanKind.INTERNAL,
        None,
        status,
        start,
        max(start, end),
        SCOPE,
    )


class RequestSpans(SpanExporter):
    """In front of an exporter: each request's server span followed by the spans of its phases,
    made from its notes here, in the batch processor's export thread, off the request path."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        batch: list[ReadableSpan] = []
        for span in spans:
            if isinstance(span, RequestSpan):
                batch.extend(span.tracing.children(span))
            batch.append(span)
        return self.exporter.export(batch)

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


def _compute_attributes(function: str, dtype: str, device: str, size: int) -> dict[str, AttributeValue]:
    return {"torchfn.function": function, "torchfn.dtype": dtype, "torchfn.device": device, "torchfn.batch_size": size}


def _failed(failure: Failure, error: bool = True) -> tuple[Status, tuple[Event, ...]]:
    """The status (ERROR unless ``error`` is false: a server span's 4xx) and ``exception`` event of
    a failure (OpenTelemetry's semantic conventions for exceptions)."""
    attributes: dict[str, AttributeValue] = {"exception.type": failure.type}
    if failure.message:
        attributes["exception.message"] = failure.message
    if failure.stacktrace:
        attributes["exception.stacktrace"] = failure.stacktrace
    status = Status(StatusCode.ERROR, failure.message or failure.type) if error else _UNSET
    return status, (Event("exception", attributes, failure.at),)


class TracingObserver:
    """The compute service's observer (``app.compute.observer``) for tracing: each compute call
    that served a traced job (``computed``, told right after the call, on the loop)."""

    def __init__(self, tracing: Tracing) -> None:
        self._tracing = tracing
        self._jobs = tracing.jobs

    def computed(self, jobs: Sequence[Job], seconds: float) -> None:
        found = self._jobs
        if not found:  # no traced request is being computed
            return
        end = time.time_ns()
        traced = [span for job in jobs if isinstance(span := found.get(id(job)), ServerSpan)]
        if traced:
            self._tracing.computed(jobs, traced, end - int(seconds * 1e9), end)

    # A request is known by its job until the road has its result (``RequestTrace.computed``) or
    # its span ends, whichever comes first: nothing to do when the compute service is done with it.

    def served(self, job: Job, served: Served[Result], seconds: float) -> None:
        pass

    def refused(self, job: Job, error: ServiceError, seconds: float) -> None:
        pass

    def cancelled(self, job: Job, seconds: float) -> None:
        pass


class QuietWarnings(logging.Filter):
    """At most one line every ``INTERVAL_S`` for each of the SDK's warnings that can come once per
    request or per span: a full export queue (``Queue full, dropping Span``: once per request
    dropped, when the exporter cannot keep up) and a caller's malformed ``tracestate`` (once per
    request, in the client's hands)."""

    INTERVAL_S = 10.0
    LOGGERS = ("opentelemetry.sdk._shared_internal", "opentelemetry.trace.span")

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[object, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self._last.get(record.msg, -self.INTERVAL_S) < self.INTERVAL_S:
            return False
        self._last[record.msg] = now
        return True

    def install(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self)

    def remove(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeFilter(self)


def tracing_from_environment() -> Tracing | None:
    """The service's tracing as the standard ``OTEL_*`` variables configure it, read by the SDK:
    the sampler (``OTEL_TRACES_SAMPLER``, ``_ARG``), the resource (``OTEL_SERVICE_NAME``,
    ``OTEL_RESOURCE_ATTRIBUTES``), the exporters (``OTEL_TRACES_EXPORTER``, ``otlp`` when unset)
    and theirs (``OTEL_EXPORTER_OTLP_*``), the batch processor's (``OTEL_BSP_*``); None when
    ``OTEL_SDK_DISABLED`` is true. Raises ``RuntimeError`` for an exporter or OTLP protocol the SDK
    does not know."""
    provider = TracerProvider(shutdown_on_exit=False)
    if isinstance(provider.get_tracer(SCOPE.name), NoOpTracer):
        return None
    return Tracing(provider, (), trace_exporter_classes())
