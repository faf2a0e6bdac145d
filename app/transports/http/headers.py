"""The compute requests' headers, read in one pass and each parsed once into the road's
``RequestMeta``; ``Server-Timing`` out."""

from __future__ import annotations

import contextlib
import functools
import math

from app.compute.batching import Served
from app.compute.jobs import Result
from app.core.errors import InvalidRequest, MalformedRequest
from app.core.limits import MAX_HEADER_VALUE, longer_than
from app.protocols.oip.binary import HEADER_LENGTH
from app.serving.codec import RequestMeta
from app.serving.inflate import content_encoding

TIMEOUT_HEADER = "x-request-timeout"
"""Seconds the client is willing to wait for compute."""
MAX_DIGITS = 18
"""Digits a header number may have: up to a billion gigabytes, and always within an int64.
Numbers in request headers are read strictly: ``str.isdigit`` accepts ``²`` (which ``int`` then
refuses), ``int`` accepts signs, ``_`` and non-ASCII digits, and ``int`` of thousands of digits is
slow and then refused for its length (a 400 where the client deserves it, never a 500)."""
MAX_TIMEOUT_CHARS = 32
"""A timeout longer than this is not a number of seconds anyone means."""

_HEADER_LENGTH = HEADER_LENGTH.encode("latin-1")
_READ = frozenset((b"content-type", b"content-length", b"x-request-timeout", b"content-encoding", _HEADER_LENGTH))


def header_number(value: str) -> int | None:
    """The value of a non-negative decimal header (ASCII digits only, at most ``MAX_DIGITS``, no
    sign), or None when it is anything else."""
    value = value.strip(" \t")
    if 0 < len(value) <= MAX_DIGITS and value.isascii() and value.isdigit():
        return int(value)
    return None


def _length(raw: str | None, header: str) -> int | None:
    if raw is None:
        return None
    length = header_number(raw)
    if length is None:
        raise MalformedRequest.at(
            ("header", header), "must be a non-negative integer of ASCII digits", "invalid_header"
        )
    return length


def request_timeout(raw: str | None) -> float | None:
    """Seconds the client is willing to wait for compute (``X-Request-Timeout``), if it says."""
    if raw is None:
        return None
    seconds = math.nan
    if len(raw) <= MAX_TIMEOUT_CHARS:
        with contextlib.suppress(ValueError):
            seconds = float(raw)
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidRequest.at(("header", TIMEOUT_HEADER), "must be a positive number of seconds", "invalid_header")
    return seconds


def request_meta(headers: list[tuple[bytes, bytes]], binary_extension: bool) -> RequestMeta:
    """One pass over the raw header list, the first of each name winning as in Starlette
    (``Request.headers`` builds a map and scans the list once per name: ~5 µs for five). The
    binary tensor data extension's header is read only where ``binary_extension`` applies."""
    found: dict[bytes, str] = {}
    for name, value in headers:
        if name in _READ and name not in found:
            if len(value) > MAX_HEADER_VALUE:
                raise InvalidRequest.at(("header", name.decode()), longer_than(MAX_HEADER_VALUE), "header_too_long")
            found[name] = value.decode("latin-1")
    header_length = found.get(_HEADER_LENGTH) if binary_extension else None
    return RequestMeta(
        content_type=found.get(b"content-type", ""),
        content_length=_length(found.get(b"content-length"), "content-length"),
        content_encoding=content_encoding(found.get(b"content-encoding")),
        binary_header_length=_length(header_length, HEADER_LENGTH),
        timeout=request_timeout(found.get(b"x-request-timeout")),
    )


def server_timing(served: Served[Result]) -> bytes:
    """How the request was served: queue wait, compute time (ms) and the batch it shared."""
    return f"queue;dur={served.queue_wait * 1000:.3f}, {_batch_timing(served.compute_time, served.batch_size)}".encode(
        "latin-1"
    )


@functools.lru_cache(maxsize=64)
def _batch_timing(compute_time: float, batch_size: int) -> str:
    """The part every request of a batch shares: formatted once per batch, not once per request."""
    return f'compute;dur={compute_time * 1000:.3f}, batch;desc="size={batch_size}"'
