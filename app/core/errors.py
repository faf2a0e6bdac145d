"""Every error the service raises on purpose, in one place. Transport-neutral: each transport
maps them to its own statuses (HTTP in ``app.transports.http.errors``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Self

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: where (``loc``), what (``msg``) and its kind (``type``)."""

    loc: Loc
    msg: str
    type: str


class ServiceError(Exception):
    """Base of every error the service layer raises on purpose."""

    code = "service_error"

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{'.'.join(map(str, p.loc))}: {p.msg}" for p in problems))

    @classmethod
    def at(cls, loc: Loc, msg: str, type_: str) -> Self:
        return cls([Problem(loc, msg, type_)])

    def __reduce__(self) -> tuple[type[Self], tuple[list[Problem]]]:
        """Pickled with its problems (it crosses from the parse process, ``app.serving.apart``)."""
        return (type(self), (self.problems,))

    def relocated(self, prefix: Loc) -> Self:
        """The same error, its problems' locations under ``prefix``."""
        return type(self)([Problem((*prefix, *p.loc), p.msg, p.type) for p in self.problems])


class InvalidRequest(ServiceError):
    """The request is well-formed JSON but its content is wrong (HTTP 422)."""

    code = "invalid_request"


class MalformedRequest(ServiceError):
    """The body cannot be parsed at all (HTTP 400)."""

    code = "malformed_request"


class TooLarge(ServiceError):
    """A body or tensor exceeds a configured limit (HTTP 413)."""

    code = "too_large"


class UnsupportedDType(InvalidRequest):
    """Torch has no kernel for the function in this dtype on this device (HTTP 422)."""

    code = "unsupported_dtype"


class UnknownFunction(ServiceError):
    """No function of that name in the catalogue (HTTP 404 on lookups, 422 in a request body)."""

    code = "unknown_function"


@dataclass
class ProblemList:
    """Collects problems and raises them together."""

    problems: list[Problem] = field(default_factory=list)

    def add(self, loc: Loc, msg: str, type_: str) -> None:
        self.problems.append(Problem(loc, msg, type_))

    def raise_if_any(self) -> None:
        if self.problems:
            raise InvalidRequest(self.problems)


class Overloaded(ServiceError):
    """The service cannot take this work now; the client may retry (HTTP 503)."""

    code = "overloaded"


class QueueFull(Overloaded):
    """The compute queue holds its most requests already."""

    code = "queue_full"


class DeadlineExceeded(Overloaded):
    """The request was not served within its deadline (its own, or the service's)."""

    code = "deadline_exceeded"

    @classmethod
    def after(cls, timeout: float) -> DeadlineExceeded:
        return cls.at(("service",), f"not served within the deadline of {timeout:.3f} s", "deadline_exceeded")


class MemoryBusy(Overloaded):
    """The memory budget is held by other requests for longer than this one may wait."""

    code = "memory_busy"


class ClientGone(ServiceError):
    """The caller went away before its request was served; its work was dropped (logged as 499)."""

    code = "client_gone"


class DeviceFailure(ServiceError):
    """The device is in a failed state (HTTP 500 with a generic message; liveness fails)."""

    code = "device_failure"


class PluginFailure(ServiceError):
    """An operator's plugin function raised an error that is not the request's fault (HTTP 500,
    naming the plugin; the traceback goes to the log, never to the client)."""

    code = "plugin_error"


class InputRejected(Exception):
    """What an operator's plugin raises to refuse its input: ``message`` reaches the client (422,
    naming ``argument``, a tensor or parameter name), the one way a plugin's own words do.
    Exported as ``app.plugins.InputRejected``."""

    def __init__(self, message: str, argument: str = "input") -> None:
        super().__init__(message)
        self.message = message
        self.argument = argument


class BodyTimeout(ServiceError):
    """The body stopped arriving before it was complete (HTTP 408; the connection is closed)."""

    code = "body_timeout"


class UnsupportedMediaType(ServiceError):
    """The body is not JSON by its content type (HTTP 415)."""

    code = "unsupported_media_type"
