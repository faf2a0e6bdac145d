"""Read a request body of any content type into one writable buffer, with a byte limit enforced
while it streams. Binary tensors are then viewed in place (numpy and torch want them writable,
and aligned).

``Content-Encoding: gzip`` or ``deflate`` bodies (as Triton's client can send) are inflated, with
the same limit on the inflated size, off the event loop, and must end exactly where their stream
does."""

from __future__ import annotations

import asyncio
import zlib

import numpy as np
from fastapi import Request

from app.api.body import Body, declared_length, hold_body, read_body, receive_body
from app.api.headers import ComputeHeaders, header_number
from app.compute.memory import Reservation
from app.core.config import Settings
from app.core.errors import MalformedRequest, TooLarge, UnsupportedMediaType

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
INLINE_INFLATE_BYTES = 512
"""Compressed bodies up to this size are inflated on the event loop (at most ~0.5 MB out, well
under a millisecond); larger ones in a worker thread."""


def _too_large(limit: int) -> TooLarge:
    return TooLarge.at(("body",), f"body exceeds the limit of {limit} bytes", "body_too_large")


BINARY_ALIGNMENT = 64
"""Where the binary part of a body starts in its buffer: a multiple of this address, so its
tensors are viewed in place whatever the JSON header's length (misaligned, each is copied)."""


def aligned_buffer(size: int, binary_from: int) -> memoryview:
    """``size`` writable bytes, not zeroed (every byte is about to be written), the byte at
    ``binary_from`` aligned to ``BINARY_ALIGNMENT``."""
    block = np.empty(size + BINARY_ALIGNMENT, dtype=np.uint8)
    start = -(block.ctypes.data + binary_from) % BINARY_ALIGNMENT
    return block.data[start : start + size]


def _binary_from(headers: ComputeHeaders, size: int) -> int:
    """Where the binary part of a body of ``size`` bytes starts (its end when there is none)."""
    declared = header_number(headers.inference_header_length or "")
    return size if declared is None else min(declared, size)


async def _stream(
    request: Request,
    headers: ComputeHeaders,
    limit: int,
    idle_timeout: float | None,
    memory: Reservation,
    wait: float,
) -> Body:
    """The body in one writable buffer: laid out so its binary part starts aligned when its length
    was declared, else grown as it comes."""
    declared = declared_length(headers.content_length, limit)
    await hold_body(memory, declared, limit, wait)
    if declared is None:
        grown = bytearray()
        await receive_body(request, declared, limit, idle_timeout, grown.extend)
        return grown
    buffer = aligned_buffer(declared, _binary_from(headers, declared))
    end = 0

    def take(chunk: bytes) -> None:
        nonlocal end
        start, end = end, end + len(chunk)
        if end > declared:  # an HTTP/1.1 server frames the body by its length; another might not
            raise _length_mismatch(declared)
        buffer[start:end] = chunk

    await receive_body(request, declared, limit, idle_timeout, take)
    return buffer


def _length_mismatch(declared: int) -> MalformedRequest:
    return MalformedRequest.at(
        ("header", "content-length"), f"declares {declared} bytes but the body holds more", "invalid_header"
    )


def _inflate(body: Body, encoding: str, limit: int, headers: ComputeHeaders) -> Body:
    """The inflated body, laid out as ``_stream`` lays one out: 413 past ``limit`` bytes, 400
    unless the stream ends exactly where the body does (a truncated stream, or bytes after its end)."""
    inflater = zlib.decompressobj(_WBITS[encoding])
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise _not_valid(encoding, "is not valid") from None
    if len(inflated) > limit or inflater.unconsumed_tail:
        raise _too_large(limit)
    if not inflater.eof:
        raise _not_valid(encoding, "ends before its stream does (truncated)")
    if inflater.unused_data:
        raise _not_valid(encoding, f"has {len(inflater.unused_data)} bytes after the end of its stream")
    buffer = aligned_buffer(len(inflated), _binary_from(headers, len(inflated)))
    buffer[:] = inflated
    return buffer


def _not_valid(encoding: str, problem: str) -> MalformedRequest:
    return MalformedRequest.at(("header", "content-encoding"), f"the {encoding} body {problem}", "invalid_body")


async def read_raw_body(request: Request, headers: ComputeHeaders, settings: Settings, memory: Reservation) -> Body:
    """The whole body, inflated if it was compressed, held in the memory budget before it is read;
    writable (a ``bytearray``) where binary tensors are to be viewed in place
    (inflated, at most the body limit); 413 beyond the limit, 408 when it stalls past the idle
    timeout, 400 when empty."""
    if headers.content_encoding is None and headers.inference_header_length is None:
        return await read_body(request, headers, settings, memory)  # JSON alone: parsed, never viewed
    limit, idle_timeout, wait = settings.max_body_bytes, settings.body_idle_timeout_s, settings.memory_wait_s
    encoding = (headers.content_encoding or "identity").strip().lower()
    if encoding not in ("identity", *_WBITS):
        raise UnsupportedMediaType.at(
            ("header", "content-encoding"), "send the body as it is, or as gzip or deflate", "media_type"
        )
    if encoding == "identity" and headers.inference_header_length is None:
        return await read_body(request, headers, settings, memory)  # JSON alone: parsed, never viewed
    body = await _stream(request, headers, limit, idle_timeout, memory, wait)
    if encoding in _WBITS:
        await memory.resize(len(body) + limit, wait, ("body",), "inflating the body")
        # Inflating is work in proportion to the inflated size (up to ~1,000 times the
        # compressed one): off the event loop (zlib lets go of the GIL) past a few hundred bytes.
        if len(body) > INLINE_INFLATE_BYTES:
            body = await asyncio.to_thread(_inflate, body, encoding, limit, headers)
        else:
            body = _inflate(body, encoding, limit, headers)
    if not body:
        raise MalformedRequest.at(("body",), "the request body is empty", "json_invalid")
    return body
