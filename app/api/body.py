"""Read a request body with a byte limit enforced while it streams, and a content-type check."""

from __future__ import annotations

import asyncio

from fastapi import Request
from starlette.requests import ClientDisconnect

from app.compute.batching import ClientGone
from app.core.errors import BodyTimeout, MalformedRequest, TooLarge, UnsupportedMediaType


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or media.endswith("+json")


async def read_json_body(request: Request, limit: int, idle_timeout: float | None = None) -> bytes:
    """The raw body; 413 as soon as it exceeds ``limit``, whatever Content-Length claims; 408 when
    no data arrives for ``idle_timeout`` seconds (a Content-Length that claims more than is sent)."""
    if not _is_json(request.headers.get("content-type", "")):
        raise UnsupportedMediaType.at(("header", "content-type"), "send the body as application/json", "media_type")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise MalformedRequest.at(("header", "content-length"), "not a valid length", "invalid_header")
        if int(declared) > limit:
            raise TooLarge.at(("body",), f"body of {declared} bytes exceeds the limit of {limit}", "body_too_large")
    chunks: list[bytes] = []
    size = 0
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(idle_timeout) as window:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise TooLarge.at(("body",), f"body exceeds the limit of {limit} bytes", "body_too_large")
                chunks.append(chunk)
                if idle_timeout is not None:
                    window.reschedule(loop.time() + idle_timeout)
    except ClientDisconnect:
        raise ClientGone.at(("client",), "the client went away while sending its body", "client_gone") from None
    except TimeoutError:
        expected = f"{declared} declared" if declared is not None else "no length declared"
        raise BodyTimeout.at(
            ("body",), f"no body data for {idle_timeout:g} s after {size} bytes ({expected})", "body_timeout"
        ) from None
    if declared is not None and size != int(declared):
        raise MalformedRequest.at(
            ("header", "content-length"), f"declares {declared} bytes but the body holds {size}", "invalid_header"
        )
    if size == 0:
        raise MalformedRequest.at(("body",), "the request body is empty", "json_invalid")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
