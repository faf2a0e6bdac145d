"""Read a request body with a byte limit enforced while it streams, an idle timeout, and a
content-type check."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import Request
from starlette.requests import ClientDisconnect

from app.api.headers import ComputeHeaders
from app.compute.batching import ClientGone
from app.core.errors import BodyTimeout, MalformedRequest, TooLarge, UnsupportedMediaType


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or media.endswith("+json")


class _IdleWatch:
    """Cancels the reading task once no body data has arrived for ``seconds``.

    One timer per request, re-armed only when it fires early (data came meanwhile), so a body
    that arrives at once costs one ``call_later`` and one cancel (``asyncio.timeout`` with a
    reschedule per chunk measured ~20 µs a request; this ~2 µs).
    """

    __slots__ = ("_loop", "_seconds", "_task", "_timer", "fired", "last_data")

    def __init__(self, seconds: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._seconds = seconds
        self._task = asyncio.current_task()
        self.fired = False
        self.last_data = self._loop.time()
        self._timer = self._loop.call_later(seconds, self._fire)

    def saw_data(self) -> None:
        self.last_data = self._loop.time()

    def _fire(self) -> None:
        idle = self._loop.time() - self.last_data
        if idle < self._seconds:
            self._timer = self._loop.call_later(self._seconds - idle, self._fire)
            return
        if self._task is not None:
            self.fired = True
            self._task.cancel()

    def forgive(self) -> None:
        """Take back the cancellation this watch caused, so the task can answer 408."""
        if self._task is not None:
            self._task.uncancel()

    def stop(self) -> None:
        self._timer.cancel()


def declared_length(declared: str | None, limit: int) -> int | None:
    """The Content-Length, checked: 400 when it is not a number, 413 beyond ``limit``."""
    if declared is None:
        return None
    if not declared.isdigit():
        raise MalformedRequest.at(("header", "content-length"), "not a valid length", "invalid_header")
    length = int(declared)
    if length > limit:
        raise TooLarge.at(("body",), f"body of {declared} bytes exceeds the limit of {limit}", "body_too_large")
    return length


async def receive_body(
    request: Request, declared: int | None, limit: int, idle_timeout: float | None, take: Callable[[bytes], None]
) -> int:
    """Hand each chunk of the body to ``take`` and return the body's size: 413 as soon as it
    exceeds ``limit`` whatever Content-Length claimed, 408 when no data arrives for
    ``idle_timeout`` seconds (a Content-Length that claims more than is sent), 400 when the body
    and its Content-Length disagree, ``ClientGone`` when the client leaves mid-body."""
    size = 0
    watch = _IdleWatch(idle_timeout) if idle_timeout is not None else None
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge.at(("body",), f"body exceeds the limit of {limit} bytes", "body_too_large")
            take(chunk)
            if watch is not None:
                watch.saw_data()
    except ClientDisconnect:
        raise ClientGone.at(("client",), "the client went away while sending its body", "client_gone") from None
    except asyncio.CancelledError:
        if watch is None or not watch.fired:
            raise
        watch.forgive()
        expected = f"{declared} declared" if declared is not None else "no length declared"
        raise BodyTimeout.at(
            ("body",), f"no body data for {idle_timeout:g} s after {size} bytes ({expected})", "body_timeout"
        ) from None
    finally:
        if watch is not None:
            watch.stop()
    if declared is not None and size != declared:
        raise MalformedRequest.at(
            ("header", "content-length"), f"declares {declared} bytes but the body holds {size}", "invalid_header"
        )
    return size


async def read_json_body(
    request: Request, headers: ComputeHeaders, limit: int, idle_timeout: float | None = None
) -> bytes:
    """The raw JSON body, read with ``receive_body``'s limits; 415 for another media type."""
    if not _is_json(headers.content_type):
        raise UnsupportedMediaType.at(("header", "content-type"), "send the body as application/json", "media_type")
    declared = declared_length(headers.content_length, limit)
    chunks: list[bytes] = []
    size = await receive_body(request, declared, limit, idle_timeout, chunks.append)
    if size == 0:
        raise MalformedRequest.at(("body",), "the request body is empty", "json_invalid")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
