"""Compressed bodies (``Content-Encoding: gzip`` or ``deflate``, as Triton's client can send):
inflated in steps, each held in the memory budget before it is produced, within the body limit
on the inflated size, off the event loop past a few hundred compressed bytes; the stream must end
exactly where the body does. The result is laid out as a streamed body is: its binary part
aligned, so that binary tensors are viewed in place."""

from __future__ import annotations

import asyncio
import zlib

import numpy as np

from app.compute.memory import Reservation
from app.core.config import Settings
from app.core.errors import MalformedRequest, TooLarge, UnsupportedMediaType

WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
"""The content codings read, with zlib's window bits for each."""
INLINE_INFLATE_BYTES = 512
"""Compressed bodies up to this size are inflated on the event loop (at most ~0.5 MB out, well
under a millisecond); larger ones in a worker thread."""
INFLATE_STEP = 8 * 1024 * 1024
"""Inflated bytes produced per step, each held in the budget before it is produced."""
_SHOWN = 64
"""Characters of an unknown coding quoted back to the client."""
BINARY_ALIGNMENT = 64
"""Where the binary part of a body starts in its buffer: a multiple of this address, so its
tensors are viewed in place whatever the JSON header's length (misaligned, each is copied)."""


def content_encoding(value: str | None) -> str | None:
    """``gzip`` or ``deflate`` from a Content-Encoding value; None for none or ``identity``; 415
    for any other."""
    if value is None:
        return None
    encoding = value.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding not in WBITS:
        shown = encoding[:_SHOWN]
        raise UnsupportedMediaType.at(
            ("header", "content-encoding"), f"{shown!r}: send the body as it is, or as gzip or deflate", "media_type"
        )
    return encoding


def aligned_buffer(size: int, binary_from: int) -> memoryview:
    """``size`` writable bytes, not zeroed (every byte is about to be written), the byte at
    ``binary_from`` aligned to ``BINARY_ALIGNMENT``."""
    block = np.empty(size + BINARY_ALIGNMENT, dtype=np.uint8)
    start = -(block.ctypes.data + binary_from) % BINARY_ALIGNMENT
    return block.data[start : start + size]


def _not_valid(encoding: str, problem: str) -> MalformedRequest:
    return MalformedRequest.at(("header", "content-encoding"), f"the {encoding} body {problem}", "invalid_body")


def _step(inflater: zlib._Decompress, data: bytes | memoryview, encoding: str) -> bytes:
    try:
        return inflater.decompress(data, INFLATE_STEP)
    except zlib.error:
        raise _not_valid(encoding, "is not valid") from None


async def inflate(
    body: bytes | bytearray | memoryview,
    encoding: str,
    binary_header_length: int | None,
    settings: Settings,
    memory: Reservation,
) -> bytes | memoryview:
    """The inflated body: 413 past the body limit, 400 unless the stream ends exactly where the
    body does (a truncated stream, or bytes after its end)."""
    limit, wait = settings.max_body_bytes, settings.memory_wait_s
    inflater = zlib.decompressobj(WBITS[encoding])
    in_thread = len(body) > INLINE_INFLATE_BYTES
    pieces: list[bytes] = []
    total = 0
    pending: bytes | memoryview = memoryview(body)
    while True:
        await memory.resize(len(body) + total + INFLATE_STEP, wait, ("body",), "inflating the body")
        if in_thread:
            piece = await asyncio.to_thread(_step, inflater, pending, encoding)
        else:
            piece = _step(inflater, pending, encoding)
        total += len(piece)
        if total > limit:
            raise TooLarge.at(("body",), f"body exceeds the limit of {limit} bytes", "body_too_large")
        pieces.append(piece)
        pending = inflater.unconsumed_tail
        if inflater.eof or not (pending or piece):
            break
    if not inflater.eof:
        raise _not_valid(encoding, "ends before its stream does (truncated)")
    if inflater.unused_data:
        raise _not_valid(encoding, f"has {len(inflater.unused_data)} bytes after the end of its stream")
    if binary_header_length is None:
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)
    await memory.resize(len(body) + 2 * total, wait, ("body",), "inflating the body")
    buffer = aligned_buffer(total, min(binary_header_length, total))
    offset = 0
    for piece in pieces:
        buffer[offset : offset + len(piece)] = piece
        offset += len(piece)
    return buffer
