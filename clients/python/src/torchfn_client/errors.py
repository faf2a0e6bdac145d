"""Typed exceptions: one per kind of refusal, each carrying what the service said.

Every error reply of the service has one shape::

    {"error": "invalid_request", "message": "...",
     "details": [{"loc": ["body", "params", "negative_slope"], "msg": "...", "type": "..."}], "truncated": false}
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Any

import httpx


class TorchfnError(Exception):
    """Base of every exception this client raises about the service."""


class TransportError(TorchfnError):
    """The service could not be reached, or the exchange broke off (connection, TLS, protocol)."""


class Timeout(TransportError):
    """No answer within the client's timeout."""


@dataclass(frozen=True)
class ErrorDetail:
    loc: tuple[str | int, ...]
    """Where in the request: ``("body", "params", "negative_slope")``, ``("body", "input", 3)``..."""
    msg: str
    type: str


class APIError(TorchfnError):
    """The service answered with an error status."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        details: tuple[ErrorDetail, ...] = (),
        *,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        """The service's machine-readable code: ``invalid_request``, ``queue_full``..."""
        self.message = message
        self.details = details
        self.request_id = request_id
        """The ``X-Request-ID`` of the reply, to find the request in the service's logs."""
        self.retry_after = retry_after
        """Seconds the service asked to wait before trying again (``Retry-After``), if it did."""

    @property
    def loc(self) -> tuple[str | int, ...] | None:
        """Where the first problem is, as the service locates it."""
        return self.details[0].loc if self.details else None

    @property
    def field(self) -> str | None:
        """The first offending field, dotted: ``body.params.negative_slope``."""
        return ".".join(str(part) for part in self.loc) if self.loc else None


class ClientError(APIError):
    """A 4xx: the request is wrong and sending it again will not help."""


class BadRequest(ClientError):
    """400: malformed JSON or an empty body."""


class Unauthorized(ClientError):
    """401: the service needs an API key (``api_key=``) and got none or a wrong one."""


class NotFound(ClientError):
    """404: an unknown path, or an unknown function in ``function(name)``."""


class PayloadTooLarge(ClientError):
    """413: the body or a tensor is over the service's limits."""


class InvalidInput(ClientError):
    """422: anything wrong with the content (function, parameter, shape, dtype, values)."""


class ServerError(APIError):
    """A 5xx: the service failed, or could not take the request now."""


class ServiceUnavailable(ServerError):
    """503: not ready, queue full, deadline passed, or out of device memory; retried by the
    client up to ``max_retries`` times when the service sends ``Retry-After``."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    413: PayloadTooLarge,
    422: InvalidInput,
    503: ServiceUnavailable,
}


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (it may be a number of seconds or an HTTP date), if present."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _details(body: Any) -> tuple[ErrorDetail, ...]:
    details = body.get("details") if isinstance(body, dict) else None
    if not isinstance(details, list):
        return ()
    return tuple(
        ErrorDetail(tuple(item.get("loc", ())), str(item.get("msg", "")), str(item.get("type", "")))
        for item in details
        if isinstance(item, dict)
    )


def error_from_response(response: httpx.Response) -> APIError:
    """The typed exception for an error reply, in the service's format or any other."""
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        error, message = body["error"], str(body.get("message") or body["error"])
    else:  # not the service's format (a proxy's page, say): keep what it said
        error, message = f"http_{status}", response.text[:500].strip() or response.reason_phrase
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else ClientError)
    return kind(
        status,
        error,
        message,
        _details(body),
        request_id=response.headers.get("x-request-id"),
        retry_after=retry_after_seconds(response),
    )
