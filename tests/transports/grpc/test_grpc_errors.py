"""Every error the service raises, as the gRPC status its call ends with: the code, the protocol's
message, and the retry delay where HTTP would say ``Retry-After`` (or, over a limit, not to retry)."""

from __future__ import annotations

import logging

import grpc
import pytest

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
    QueueFull,
    ServiceError,
    TooLarge,
    UnknownFunction,
    UnsupportedDType,
    UnsupportedMediaType,
)
from app.transports.grpc.errors import DO_NOT_RETRY, RETRY_LATER, CallStatus, call_status

CASES: list[tuple[ServiceError, grpc.StatusCode, tuple[tuple[str, str], ...]]] = [
    (MalformedRequest.at(("body",), "not JSON", "json_invalid"), grpc.StatusCode.INVALID_ARGUMENT, ()),
    (InvalidRequest.at(("inputs", "x"), "bad", "invalid"), grpc.StatusCode.INVALID_ARGUMENT, ()),
    (UnsupportedDType.at(("dtype",), "no kernel", "unsupported_dtype"), grpc.StatusCode.INVALID_ARGUMENT, ()),
    (UnsupportedMediaType.at(("header",), "not JSON", "media"), grpc.StatusCode.INVALID_ARGUMENT, ()),
    (UnknownFunction.at(("model",), "unknown model 'x'", "unknown_model"), grpc.StatusCode.NOT_FOUND, ()),
    (TooLarge.at(("body",), "over the limit", "body_too_large"), grpc.StatusCode.RESOURCE_EXHAUSTED, DO_NOT_RETRY),
    (QueueFull.at(("service",), "full", "queue_full"), grpc.StatusCode.RESOURCE_EXHAUSTED, RETRY_LATER),
    (MemoryBusy.at(("body",), "busy", "memory_busy"), grpc.StatusCode.RESOURCE_EXHAUSTED, RETRY_LATER),
    (Overloaded.at(("device",), "out of memory", "out_of_memory"), grpc.StatusCode.RESOURCE_EXHAUSTED, RETRY_LATER),
    (Overloaded.at(("service",), "not accepting work", "not_ready"), grpc.StatusCode.UNAVAILABLE, RETRY_LATER),
    (DeadlineExceeded.after(0.5), grpc.StatusCode.DEADLINE_EXCEEDED, ()),
    (BodyTimeout.at(("body",), "stalled", "body_timeout"), grpc.StatusCode.DEADLINE_EXCEEDED, ()),
    (ClientGone.at(("client",), "gone", "client_gone"), grpc.StatusCode.CANCELLED, ()),
    (PluginFailure.at(("function",), "plugin p failed: ValueError", "plugin_error"), grpc.StatusCode.INTERNAL, ()),
    (DeviceFailure.at(("device",), "the device failed", "device_failure"), grpc.StatusCode.INTERNAL, ()),
]


@pytest.mark.parametrize(("error", "code", "trailing"), CASES, ids=lambda case: type(case).__name__)
def test_each_error_has_its_status_and_the_protocols_message(
    error: ServiceError, code: grpc.StatusCode, trailing: tuple[tuple[str, str], ...]
) -> None:
    status = call_status(error, max_details=10)
    problem = error.problems[0]
    where = ".".join(str(part) for part in problem.loc if part != "body")  # as the REST face writes it
    assert status == CallStatus(code, f"{where}: {problem.msg}" if where else problem.msg, trailing)


def test_the_retry_delays_are_https_and_grpcs() -> None:
    assert dict(RETRY_LATER) == {"retry-after": "1", "grpc-retry-pushback-ms": "1000"}
    assert dict(DO_NOT_RETRY) == {"grpc-retry-pushback-ms": "-1"}


def test_problems_are_listed_within_the_limit() -> None:
    error = InvalidRequest.at(("a",), "one", "x")
    error.problems.extend(InvalidRequest.at((name,), "more", "x").problems[0] for name in "bcd")
    assert call_status(error, max_details=2).message == "a: one; b: more (and 2 more)"


def test_running_out_of_host_memory_is_resource_exhausted() -> None:
    status = call_status(MemoryError(), max_details=10)
    assert (status.code, status.trailing) == (grpc.StatusCode.RESOURCE_EXHAUSTED, RETRY_LATER)
    assert "out of memory" in status.message


def test_anything_else_is_internal_with_no_word_of_it_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        status = call_status(KeyError("/srv/secret"), max_details=10)
    assert status == CallStatus(grpc.StatusCode.INTERNAL, "internal error")
    (record,) = caplog.records
    assert record.exc_info is not None
