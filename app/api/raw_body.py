"""Read a request body of any content type into one writable buffer, with a byte limit enforced
while it streams. Binary tensors are then viewed in place (numpy and torch want them writable).

``Content-Encoding: gzip`` or ``deflate`` bodies (as Triton's client can send) are inflated, with
the same limit on the inflated size."""

from __future__ import annotations

import zlib

from fastapi import Request
from starlette.requests import ClientDisconnect

from app.compute.batching import ClientGone
from app.core.errors import MalformedRequest, TooLarge, UnsupportedMediaType

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _too_large(limit: int) -> TooLarge:
    return TooLarge.at(("body",), f"body exceeds the limit of {limit} bytes", "body_too_large")


async def _stream(request: Request, limit: int) -> bytearray:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise MalformedRequest.at(("header", "content-length"), "not a valid length", "invalid_header")
        if int(declared) > limit:
            raise _too_large(limit)
    buffer = bytearray(int(declared)) if declared is not None else bytearray()
    size = 0
    try:
        async for chunk in request.stream():
            end = size + len(chunk)
            if end > limit:
                raise _too_large(limit)
            if declared is not None and end <= len(buffer):
                buffer[size:end] = chunk
            else:
                buffer[size:] = chunk
            size = end
    except ClientDisconnect:
        raise ClientGone.at(("client",), "the client went away while sending its body", "client_gone") from None
    if declared is not None and size != int(declared):
        raise MalformedRequest.at(
            ("header", "content-length"), f"declares {declared} bytes but the body holds {size}", "invalid_header"
        )
    return buffer


def _inflate(body: bytearray, encoding: str, limit: int) -> bytearray:
    inflater = zlib.decompressobj(_WBITS[encoding])
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise MalformedRequest.at(
            ("header", "content-encoding"), f"the body is not valid {encoding}", "invalid_body"
        ) from None
    if len(inflated) > limit or inflater.unconsumed_tail:
        raise _too_large(limit)
    return bytearray(inflated)


async def read_raw_body(request: Request, limit: int) -> bytearray:
    """The whole body, inflated if it was compressed; 413 beyond ``limit`` bytes, 400 when empty."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", *_WBITS):
        raise UnsupportedMediaType.at(
            ("header", "content-encoding"), "send the body as it is, or as gzip or deflate", "media_type"
        )
    body = await _stream(request, limit)
    if encoding in _WBITS:
        body = _inflate(body, encoding, limit)
    if not body:
        raise MalformedRequest.at(("body",), "the request body is empty", "json_invalid")
    return body
