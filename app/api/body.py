"""Read a request body with a byte limit enforced while it streams, and a content-type check."""

from __future__ import annotations

from fastapi import Request
from starlette.requests import ClientDisconnect

from app.api.headers import ComputeHeaders
from app.compute.batching import ClientGone
from app.core.errors import MalformedRequest, TooLarge, UnsupportedMediaType


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or media.endswith("+json")


async def read_json_body(request: Request, headers: ComputeHeaders, limit: int) -> bytes:
    """The raw body; 413 as soon as it exceeds ``limit``, whatever Content-Length claims."""
    if not _is_json(headers.content_type):
        raise UnsupportedMediaType.at(("header", "content-type"), "send the body as application/json", "media_type")
    declared = headers.content_length
    if declared is not None:
        if not declared.isdigit():
            raise MalformedRequest.at(("header", "content-length"), "not a valid length", "invalid_header")
        if int(declared) > limit:
            raise TooLarge.at(("body",), f"body of {declared} bytes exceeds the limit of {limit}", "body_too_large")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge.at(("body",), f"body exceeds the limit of {limit} bytes", "body_too_large")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone.at(("client",), "the client went away while sending its body", "client_gone") from None
    if declared is not None and size != int(declared):
        raise MalformedRequest.at(
            ("header", "content-length"), f"declares {declared} bytes but the body holds {size}", "invalid_header"
        )
    if size == 0:
        raise MalformedRequest.at(("body",), "the request body is empty", "json_invalid")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
