"""The compute requests' headers: those read, found in one pass (``ComputeHeaders``), the
per-request deadline in (``X-Request-Timeout``) and ``Server-Timing`` out."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from fastapi import Request

from app.compute.batching import Served
from app.compute.jobs import Result
from app.core.errors import InvalidRequest
from app.core.limits import MAX_HEADER_VALUE, longer_than

TIMEOUT_HEADER = "x-request-timeout"


@dataclass(frozen=True, slots=True)
class ComputeHeaders:
    content_type: str
    content_length: str | None
    request_timeout: str | None
    """``X-Request-Timeout``: seconds the client is willing to wait for compute."""
    content_encoding: str | None
    inference_header_length: str | None
    """The Open Inference Protocol's ``Inference-Header-Content-Length`` (binary tensor data)."""


def compute_headers(request: Request) -> ComputeHeaders:
    """One pass over the raw header list, the first of each name winning as in Starlette.

    ``request.headers.get`` builds a header map and scans the list once per name, raising and
    catching ``KeyError`` for each absent one: three lookups cost ~5 µs on the hot path.
    """
    found: dict[bytes, str] = {}
    for name, value in request.scope["headers"]:
        if name in _READ and name not in found:
            if len(value) > MAX_HEADER_VALUE:
                raise InvalidRequest.at(("header", name.decode()), longer_than(MAX_HEADER_VALUE), "header_too_long")
            found[name] = value.decode("latin-1")
    return ComputeHeaders(
        found.get(b"content-type", ""),
        found.get(b"content-length"),
        found.get(b"x-request-timeout"),
        found.get(b"content-encoding"),
        found.get(b"inference-header-content-length"),
    )


_READ = frozenset(
    (b"content-type", b"content-length", b"x-request-timeout", b"content-encoding", b"inference-header-content-length")
)


def request_timeout(raw: str | None) -> float | None:
    """Seconds the client is willing to wait for compute (``X-Request-Timeout``), if it says."""
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidRequest.at(("header", TIMEOUT_HEADER), "must be a positive number of seconds", "invalid_header")
    return seconds


def server_timing(served: Served[Result]) -> str:
    """How the request was served: queue wait, compute time (ms) and the batch it shared."""
    return f"queue;dur={served.queue_wait * 1000:.3f}, {_batch_timing(served.compute_time, served.batch_size)}"


@functools.lru_cache(maxsize=64)
def _batch_timing(compute_time: float, batch_size: int) -> str:
    """The part every request of a batch shares: formatted once per batch, not once per request."""
    return f'compute;dur={compute_time * 1000:.3f}, batch;desc="size={batch_size}"'


MAX_DIGITS = 18
"""Digits a header number may have: up to a billion gigabytes, and always within an int64.
Numbers in request headers are read strictly: ``str.isdigit`` accepts ``²`` (which ``int`` then
refuses), ``int`` accepts signs, ``_`` and non-ASCII digits, and ``int`` of thousands of digits is
slow and then refused for its length (a 500 where the client deserves a 400)."""


def header_number(value: str) -> int | None:
    """The value of a non-negative decimal header (ASCII digits only, at most ``MAX_DIGITS``, no
    sign), or None when it is anything else."""
    value = value.strip(" \t")
    if 0 < len(value) <= MAX_DIGITS and value.isascii() and value.isdigit():
        return int(value)
    return None
