"""Every refusal as a gRPC status, carrying the service's message (the Open Inference Protocol's:
every problem in one line, naming the offending fields). Never a traceback.

- malformed or invalid request (HTTP 400, 415, 422): INVALID_ARGUMENT;
- unknown model or version (404): NOT_FOUND;
- over a limit, of size, elements, cost or memory (413): RESOURCE_EXHAUSTED, with the trailing
  metadata ``grpc-retry-pushback-ms: -1``;
- queue full, memory busy, out of memory (503): RESOURCE_EXHAUSTED, with ``retry-after: 1`` and
  ``grpc-retry-pushback-ms: 1000``;
- not ready, shutting down, draining (503): UNAVAILABLE, with the same retry delay;
- deadline exceeded (503; or the call's gRPC deadline), body timeout (408): DEADLINE_EXCEEDED;
- no or wrong API key (401): UNAUTHENTICATED;
- client gone (499): CANCELLED;
- plugin error (its own words), device failure, anything unexpected ("internal error", logged
  with the request id) (500): INTERNAL.

A 413 will never fit however long the client waits: its pushback of -1 tells a retrying gRPC
client not to retry (gRPC's retry design, A6); a busy server's says when to.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import grpc

from app.core.errors import (
    BodyTimeout,
    ClientGone,
    DeadlineExceeded,
    DeviceFailure,
    InvalidRequest,
    MalformedRequest,
    MemoryBusy,
    Overloaded,
    PluginFailure,
    Problem,
    QueueFull,
    ServiceError,
    TooLarge,
    UnknownFunction,
    UnsupportedMediaType,
)
from app.protocols.oip.errors import problems_message

logger = logging.getLogger(__name__)

Metadata = tuple[tuple[str, str], ...]

RETRY_AFTER_S = 1
RETRY_LATER: Metadata = (("retry-after", str(RETRY_AFTER_S)), ("grpc-retry-pushback-ms", str(RETRY_AFTER_S * 1000)))
"""A busy or unready server's answer: retry after a second (HTTP's ``Retry-After``, and gRPC's own
pushback for clients with a retry policy)."""
DO_NOT_RETRY: Metadata = (("grpc-retry-pushback-ms", "-1"),)
"""A request over a limit: it will not fit on a retry either."""

CODE_BY_ERROR: dict[type[ServiceError], grpc.StatusCode] = {
    ClientGone: grpc.StatusCode.CANCELLED,
    MalformedRequest: grpc.StatusCode.INVALID_ARGUMENT,
    UnsupportedMediaType: grpc.StatusCode.INVALID_ARGUMENT,
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    UnknownFunction: grpc.StatusCode.NOT_FOUND,
    TooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    MemoryBusy: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    BodyTimeout: grpc.StatusCode.DEADLINE_EXCEEDED,
    Overloaded: grpc.StatusCode.UNAVAILABLE,
    DeviceFailure: grpc.StatusCode.INTERNAL,
    PluginFailure: grpc.StatusCode.INTERNAL,
}
OUT_OF_MEMORY = "out_of_memory"


class CallStatus(NamedTuple):
    """How a call ends when it is refused."""

    code: grpc.StatusCode
    message: str
    trailing: Metadata = ()


def code_of(error: ServiceError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in CODE_BY_ERROR:
            code = CODE_BY_ERROR[cls]
            if code is grpc.StatusCode.UNAVAILABLE and any(p.type == OUT_OF_MEMORY for p in error.problems):
                return grpc.StatusCode.RESOURCE_EXHAUSTED
            return code
    return grpc.StatusCode.INTERNAL


def _trailing(error: ServiceError, code: grpc.StatusCode) -> Metadata:
    if isinstance(error, Overloaded) and code is not grpc.StatusCode.DEADLINE_EXCEEDED:
        return RETRY_LATER
    if isinstance(error, TooLarge):
        return DO_NOT_RETRY
    return ()


def refusal(problems: list[Problem], code: grpc.StatusCode, max_details: int, trailing: Metadata = ()) -> CallStatus:
    return CallStatus(code, problems_message(problems, max_details), trailing)


def call_status(error: Exception, max_details: int) -> CallStatus:
    """Every exception a call can end in, as its status (an unexpected one logged, with its
    traceback, as the call's: its request id is in the log line)."""
    if isinstance(error, ServiceError):
        code = code_of(error)
        if isinstance(error, DeviceFailure):
            logger.error("device failure: %s", error)
        return refusal(error.problems, code, max_details, _trailing(error, code))
    if isinstance(error, MemoryError):  # the host ran out outside the compute layer (decoding, encoding)
        logger.warning("out of memory while serving a call")
        problem = Problem(("service",), "the server ran out of memory; retry later or send less", OUT_OF_MEMORY)
        return refusal([problem], grpc.StatusCode.RESOURCE_EXHAUSTED, max_details, RETRY_LATER)
    logger.error("unhandled error", exc_info=error)
    return CallStatus(grpc.StatusCode.INTERNAL, "internal error")
