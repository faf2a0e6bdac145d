"""What is noted about a traced request while it is served, for its spans: when each phase of the
road ended, which job it computed, and how it failed.

No OpenTelemetry here: the road (``app.serving.road``) and the error pipeline import this module
whether tracing is on or not, and find no trace (``current_trace`` is None) when it is off, or when
the request is not sampled. ``app.telemetry.tracing`` makes a ``RequestTrace`` when a request's
server span starts and turns its notes into spans when it ends: a few clock readings on the hot
path, the spans built once, at the end (cheaper than an SDK span kept open per phase).
"""

from __future__ import annotations

import traceback
from contextvars import ContextVar
from time import time_ns
from typing import NamedTuple

from app.core.errors import ServiceError

OUTSIDE, READING, DECODING, COMPUTING, ENCODING, ANSWERING = range(6)
"""Where a request is on the road: the number of marks taken (``RequestTrace.marks``). OUTSIDE:
before the road (or on a route that is not a compute route); ANSWERING: the road is done."""

MAX_MESSAGE = 1024
"""Of an error's message, the most recorded on a span."""


class Failure(NamedTuple):
    """How a request failed, noted when it did: what its spans record (never the exception itself,
    whose frames hold the request's tensors, and never the request's data)."""

    at: int
    """When (ns since the epoch)."""
    phase: int
    """Where the request was on the road (``READING``... or ``OUTSIDE``)."""
    type: str
    """The exception's qualified class name."""
    message: str
    """The service's own words for a ``ServiceError`` (what the client is told); "" for anything
    else, whose text could hold the request's data."""
    stacktrace: str
    """The frames of an unexpected error (code, not values); "" for a ``ServiceError`` (a refusal
    is not a bug, and formatting frames is dear on an overloaded path)."""


class RequestTrace:
    """A traced request's notes. The road marks the end of each phase; the compute observer of
    ``app.telemetry.tracing`` finds a request by its job (``decoded``) to note how it was computed;
    the transport's error handling notes a failure (``note_failure``)."""

    __slots__ = ("_jobs", "failure", "job_id", "marks")

    def __init__(self, jobs: dict[int, RequestTrace]) -> None:
        self._jobs = jobs
        """Traced requests by the id of the job they are computing (shared by every request)."""
        self.marks: list[int] = []
        """When the request entered the road, then when each phase ended (ns since the epoch)."""
        self.job_id = 0
        """``id`` of the request's job while it is known by it; 0 before."""
        self.failure: Failure | None = None

    def entered(self) -> None:
        """The road starts on the request (its first call): reading its body begins."""
        self.marks.append(time_ns())

    def read(self) -> None:
        self.marks.append(time_ns())

    def decoded(self, job: object) -> None:
        """Decoding ended with ``job``: the request is known by it until it is computed."""
        self.marks.append(time_ns())
        self.job_id = id(job)
        self._jobs[self.job_id] = self

    def computed(self) -> None:
        """The road has its job's result: the request is no longer known by its job."""
        self.marks.append(time_ns())
        self.forget_job()

    def encoded(self) -> None:
        self.marks.append(time_ns())

    def forget_job(self) -> None:
        """The job is done with (computed or refused): the request is no longer known by it. Only
        its own entry is removed: another request's job may have the id of a job freed since."""
        if self._jobs.get(self.job_id) is self:
            del self._jobs[self.job_id]
        self.job_id = 0

    def fail(self, error: BaseException) -> None:
        """Note how the request failed (the first failure noted wins)."""
        if self.failure is not None:
            return
        cls = type(error)
        name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
        if isinstance(error, ServiceError):
            message, stacktrace = str(error)[:MAX_MESSAGE], ""
        elif isinstance(error, Exception):
            message, stacktrace = "", "".join(traceback.format_tb(error.__traceback__))
        else:  # cancelled: the client went away, or the server cut the request off
            message, stacktrace = "", ""
        self.failure = Failure(time_ns(), len(self.marks), name, message, stacktrace)


current_trace: ContextVar[RequestTrace | None] = ContextVar("torchfn_trace", default=None)
"""The request being served, when it is traced and sampled; None otherwise."""


def note_failure(error: BaseException) -> None:
    """A transport's error handling: the request being served failed with ``error`` (nothing is
    done when it is not traced)."""
    trace = current_trace.get()
    if trace is not None:
        trace.fail(error)
