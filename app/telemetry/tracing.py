"""Traces of requests with the OpenTelemetry SDK, whatever their transport (on when
``TORCHFN_TRACING`` is; imported only then).

A transport starts a request's server span with ``Tracing.server_span``, handing it the request's
headers or metadata (W3C ``traceparent`` and ``tracestate`` are read from them: a request without
a valid ``traceparent`` starts a new trace), and ends it with ``ServerSpan.end``; it returns the
span's ``traceparent`` on its reply, and tells it how the request failed
(``app.telemetry.request_trace.note_failure``). In between, the road marks where each phase of a
compute request ended and the compute observer (``TracingObserver``) notes how its job was
computed. When the server span ends its children are made, all at once:

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

Spans are made as the SDK's exporters read them (``ReadableSpan``) and handed to the provider's
span processors (a ``BatchSpanProcessor`` per exporter: exported off the request path). The SDK's
``Tracer`` would keep a live span per phase: 25 µs a span, measured here, against 4 µs; the
SDK documents ``ReadableSpan`` as what its pipeline makes, and ``tests/telemetry/test_tracing.py``
pins that its processors, in-memory exporter and OTLP encoder take these. Everything else is the
SDK's: the sampler, ids, resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``), the
exporters and their settings, all read from the standard ``OTEL_*`` variables by the SDK itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import Token

from opentelemetry.context import Context
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    TracerProvider,
)
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NoOpTracer,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    get_current_span,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
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
_PROPAGATOR = TraceContextTextMapPropagator()
_NO_PARENT = Context()
_UNSET = Status(StatusCode.UNSET)
_NO_EVENTS: tuple[Event, ...] = ()

Metadata = Iterable[tuple[bytes, bytes]] | Iterable[tuple[str, str | bytes]]
"""A request's headers or metadata as (name, value) pairs, names in lower case: ASGI's header list
(bytes), or gRPC's ``invocation_metadata()`` (str names, str values but for ``-bin`` keys)."""


def remote_context(metadata: Metadata) -> Context | None:
    """The W3C trace context the caller sent (``traceparent``, and ``tracestate`` when it sent
    one; several ``tracestate`` fields are combined), read by the SDK's W3C propagator; None when it
    sent no valid ``traceparent``."""
    found: dict[str, list[str]] = {}
    for name, value in metadata:
        if name in _CONTEXT_NAMES:
            key = name.decode("latin-1") if isinstance(name, bytes) else name
            found.setdefault(key, []).append(value.decode("latin-1") if isinstance(value, bytes) else value)
    if TRACEPARENT not in found:
        return None
    context = _PROPAGATOR.extract(found)
    return context if get_current_span(context).get_span_context().is_valid else None


class ServerSpan(RequestTrace):
    """A request's server span, from ``Tracing.server_span`` to ``end``; current (``current_trace``)
    in between when it is recorded."""

    __slots__ = (
        "attributes",
        "batch",
        "compute",
        "compute_attributes",
        "compute_context",
        "context",
        "name",
        "parent",
        "recording",
        "start",
        "token",
        "traceparent",
        "tracing",
    )

    def __init__(
        self,
        tracing: Tracing,
        context: SpanContext,
        parent: SpanContext | None,
        name: str,
        attributes: dict[str, AttributeValue],
        recording: bool,
    ) -> None:
        super().__init__(tracing.jobs)
        self.tracing = tracing
        self.context = context
        self.parent = parent
        self.name = name
        self.attributes = attributes
        self.recording = recording
        self.start = time.time_ns()
        self.traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
        """The W3C ``traceparent`` of this span, for the reply (the caller's trace, this span as parent)."""
        self.compute: tuple[int, int] | None = None
        """When its job's compute call started and ended (ns since the epoch), once it has."""
        self.compute_context: SpanContext | None = None
        self.compute_attributes: Mapping[str, AttributeValue] | None = None
        self.batch: SpanContext | None = None
        """The span of the batch its job was computed in, when it shared its compute call."""
        self.token: Token[RequestTrace | None] = current_trace.set(self if recording else None)

    def end(
        self, name: str | None = None, attributes: Mapping[str, AttributeValue] | None = None, error: str | None = None
    ) -> None:
        """End the span, in the task that started it. ``name``: its final name (the route, once
        matched); ``attributes``: added now (the status); ``error``: the request failed (a 5xx, a
        gRPC error), and this is its ``error.type`` unless a failure was noted (its exception's type)."""
        current_trace.reset(self.token)
        self.forget_job()
        if not self.recording:
            return
        if name is not None:
            self.name = name
        if attributes:
            self.attributes.update(attributes)
        self.tracing.emit(self, time.time_ns(), error)


class Tracing:
    """The service's tracing, built once per server process (``tracing_from_environment``)."""

    def __init__(
        self,
        provider: TracerProvider,
        processor: SpanProcessor,
        exporters: Sequence[Callable[[], SpanExporter]] = (),
    ) -> None:
        """``provider``: its sampler, id generator and resource are used; ``processor``: where
        finished spans go, the provider's own (its ``active_span_processor``, to which
        ``provider.add_span_processor`` adds); ``exporters``: each started behind a
        ``BatchSpanProcessor`` by ``open``."""
        self.provider = provider
        self.processor = processor
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

    def open(self, device: str) -> None:
        """Start exporting (the lifespan's start)."""
        self.device = device
        self.resource = self.provider.resource
        for exporter in self.exporters:
            self.provider.add_span_processor(BatchSpanProcessor(exporter()))
        self._quiet.install()

    def close(self) -> None:
        """Export what is left and stop (the lifespan's end; blocks up to the exporters' timeouts)."""
        self.provider.shutdown()
        self._quiet.remove()

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
        parent_context = remote_context(metadata)
        ids = self.ids
        if parent_context is None:
            parent = None
            trace_id = ids.generate_trace_id()
            random_id = ids.is_trace_id_random()
        else:
            parent = get_current_span(parent_context).get_span_context()
            trace_id = parent.trace_id
            random_id = parent.trace_flags.random_trace_id
        sampling = self.sampler.should_sample(parent_context or _NO_PARENT, trace_id, name, kind, attributes)
        decision = sampling.decision
        flags = TraceFlags.SAMPLED if decision is Decision.RECORD_AND_SAMPLE else TraceFlags.DEFAULT
        if random_id:
            flags |= TraceFlags.RANDOM_TRACE_ID
        context = SpanContext(trace_id, ids.generate_span_id(), False, TraceFlags(flags), sampling.trace_state)
        if sampling.attributes:
            attributes.update(sampling.attributes)
        span = ServerSpan(self, context, parent, name, attributes, decision is not Decision.DROP)
        if request is not None:
            request.trace_id = f"{trace_id:032x}"
            request.span_id = f"{context.span_id:016x}"
        return span

    def child(self, of: SpanContext) -> SpanContext:
        """A new span's context in the trace of ``of``."""
        return SpanContext(of.trace_id, self.ids.generate_span_id(), False, of.trace_flags, of.trace_state)

    def finished(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        start: int,
        end: int,
        attributes: Mapping[str, AttributeValue] | None = None,
        links: Sequence[Link] = (),
        failure: Failure | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> None:
        """One finished span, handed to the span processors (the one place spans are made)."""
        status, events = _UNSET, _NO_EVENTS
        if failure is not None:
            status, events = _failed(failure)
        self.processor.on_end(
            ReadableSpan(
                name=name,
                context=context,
                parent=parent,
                resource=self.resource,
                attributes=attributes,
                events=events,
                links=links,
                kind=kind,
                status=status,
                start_time=start,
                end_time=max(start, end),
                instrumentation_scope=SCOPE,
            )
        )

    def emit(self, span: ServerSpan, end: int, error: str | None) -> None:
        """The spans of a request whose server span has ended: its phases', then its own."""
        context = span.context
        marks = span.marks
        failure = span.failure
        where = failure.phase if failure is not None else OUTSIDE
        taken = len(marks)
        if taken > OUTSIDE:
            self._phase("read body", span, marks[0], marks[1] if taken > READING else None, READING, end)
        if taken > READING:
            self._phase("decode", span, marks[1], marks[2] if taken > DECODING else None, DECODING, end)
        if taken > DECODING:
            compute = span.compute
            if compute is None:
                self._phase("queue", span, marks[2], marks[3] if taken > COMPUTING else None, COMPUTING, end)
            else:
                self.finished("queue", self.child(context), context, marks[2], compute[0])
                compute_context = span.compute_context or self.child(context)
                self.finished(
                    "compute",
                    compute_context,
                    context,
                    compute[0],
                    compute[1],
                    span.compute_attributes,
                    (Link(span.batch),) if span.batch is not None else (),
                    failure if where == COMPUTING else None,
                )
        if taken > COMPUTING:
            self._phase("encode", span, marks[3], marks[4] if taken > ENCODING else None, ENCODING, end)
        attributes = span.attributes
        status, events = _UNSET, _NO_EVENTS
        if error is not None:
            attributes["error.type"] = failure.type if failure is not None else error
            status = Status(StatusCode.ERROR)
        if failure is not None and where in (OUTSIDE, ANSWERING):
            status, events = _failed(failure, error is not None)
        self.processor.on_end(
            ReadableSpan(
                name=span.name,
                context=context,
                parent=span.parent,
                resource=self.resource,
                attributes=attributes,
                events=events,
                kind=SpanKind.SERVER,
                status=status,
                start_time=span.start,
                end_time=end,
                instrumentation_scope=SCOPE,
            )
        )

    def _phase(self, name: str, span: ServerSpan, start: int, stop: int | None, phase: int, end: int) -> None:
        """A phase of the road: ended at ``stop``, or cut short by the request's failure (or by its
        end, when it was cancelled without one)."""
        failure = span.failure
        if stop is not None:
            self.finished(name, self.child(span.context), span.context, start, stop)
        elif failure is not None and failure.phase == phase:
            self.finished(name, self.child(span.context), span.context, start, failure.at, failure=failure)
        else:
            self.finished(name, self.child(span.context), span.context, start, end)

    def computed(self, jobs: Sequence[Job], traced: Sequence[ServerSpan], start: int, end: int) -> None:
        """A compute call ran ``jobs`` from ``start`` to ``end``; ``traced`` are the recorded
        requests among them: each gets its compute span's context and attributes, and a call
        shared by several jobs gets its own span, linked to each of theirs."""
        first = jobs[0]
        function, dtype = first.spec.name, first.dtype
        size = len(jobs)
        alike = all(job.spec.name == function and job.dtype == dtype for job in jobs)
        shared = _compute_attributes(function, dtype, self.device, size) if alike else None
        for span in traced:
            span.compute = (start, end)
            span.compute_context = self.child(span.context)
            if shared is None:
                job = next(job for job in jobs if id(job) == span.job_id)
                span.compute_attributes = _compute_attributes(job.spec.name, job.dtype, self.device, size)
            else:
                span.compute_attributes = shared
        if size == 1:
            return
        ids = self.ids
        flags = TraceFlags.SAMPLED | (TraceFlags.RANDOM_TRACE_ID if ids.is_trace_id_random() else 0)
        batch = SpanContext(ids.generate_trace_id(), ids.generate_span_id(), False, TraceFlags(flags))
        links = [Link(span.compute_context) for span in traced if span.compute_context is not None]
        for span in traced:
            span.batch = batch
        names = sorted({job.spec.name for job in jobs}) if not alike else [function]
        attributes: dict[str, AttributeValue] = {
            "torchfn.function": names[0] if len(names) == 1 else names,
            "torchfn.device": self.device,
            "torchfn.batch_size": size,
        }
        if alike:
            attributes["torchfn.dtype"] = dtype
        self.finished("compute batch", batch, None, start, end, attributes, links)


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
    """The compute service's observer (``app.compute.observer``) for tracing: the compute call of
    each traced job (``computed``, right after the call, on the loop), and the end of each job's
    time in the compute service."""

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

    def served(self, job: Job, served: Served[Result], seconds: float) -> None:
        self._forget(job)

    def refused(self, job: Job, error: ServiceError, seconds: float) -> None:
        self._forget(job)

    def cancelled(self, job: Job, seconds: float) -> None:
        self._forget(job)

    def _forget(self, job: Job) -> None:
        trace = self._jobs.get(id(job))
        if trace is not None:
            trace.forget_job()


class QuietWarnings(logging.Filter):
    """At most one line every ``INTERVAL_S`` for each of the SDK's warnings that can come once per
    request or per span: a full export queue (``Queue full, dropping Span``: once per span dropped,
    when the exporter cannot keep up) and a caller's malformed ``tracestate`` or oversized context
    (once per request, in the client's hands)."""

    INTERVAL_S = 10.0
    LOGGERS = ("opentelemetry.sdk._shared_internal", "opentelemetry.trace.span", "opentelemetry.trace.propagation")

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
    processor = SynchronousMultiSpanProcessor()  # type: ignore[no-untyped-call]  # the SDK's, unannotated
    provider = TracerProvider(active_span_processor=processor, shutdown_on_exit=False)
    if isinstance(provider.get_tracer(SCOPE.name), NoOpTracer):
        return None
    return Tracing(provider, processor, trace_exporter_classes())
