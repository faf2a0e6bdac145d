"""The request headers the compute endpoints read, found in one pass."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

TIMEOUT_HEADER = "x-request-timeout"


@dataclass(frozen=True, slots=True)
class ComputeHeaders:
    content_type: str
    content_length: str | None
    request_timeout: str | None
    """``X-Request-Timeout``: seconds the client is willing to wait for compute."""


def compute_headers(request: Request) -> ComputeHeaders:
    """One pass over the raw header list, the first of each name winning as in Starlette.

    ``request.headers.get`` builds a header map and scans the list once per name, raising and
    catching ``KeyError`` for each absent one: three lookups cost ~5 µs on the hot path.
    """
    content_type: str | None = None
    content_length: str | None = None
    timeout: str | None = None
    for name, value in request.scope["headers"]:
        if name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
        elif name == b"content-length" and content_length is None:
            content_length = value.decode("latin-1")
        elif name == b"x-request-timeout" and timeout is None:
            timeout = value.decode("latin-1")
    return ComputeHeaders(content_type or "", content_length, timeout)
