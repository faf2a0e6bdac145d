"""One road for every compute request, whatever its protocol.

``serve`` takes a request from admission to reply: the queue's room is checked before the body
is read, the request's memory is held in the budget from its first byte to its reply, the body is
read within its limits, decoded (in a thread when large), computed within its deadline (the job's
estimated cost checked first), encoded, and answered with ``Server-Timing``. A protocol
contributes only its ``Codec``: how its body is read, how it becomes a ``Job``, how a ``Result``
becomes its reply. A fix here reaches every protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from fastapi import Request, Response

from app.api.body import Body, hold_parsing
from app.api.deps import hot_path_resources
from app.api.headers import ComputeHeaders, compute_headers, request_timeout, server_timing
from app.compute.jobs import Job, Result
from app.compute.memory import Reservation
from app.core.config import Settings
from app.protocols.decoding import DecodeOptions


class Decoded(Protocol):
    @property
    def job(self) -> Job: ...


DecodedT = TypeVar("DecodedT", bound=Decoded)
EncodedT = TypeVar("EncodedT")
Subject = Any
"""What the request's path names, resolved before its body is read (the Open Inference Protocol's
model)."""


def _no_subject(options: DecodeOptions, path: tuple[str, ...]) -> Subject:
    return None


@dataclass(frozen=True)
class Codec(Generic[DecodedT, EncodedT]):
    """A protocol's part of the road."""

    read: Callable[[Request, ComputeHeaders, Settings, Reservation], Awaitable[Body]]
    """The body, read within the limits and held in the request's memory reservation."""
    parsed_bytes: Callable[[Body, ComputeHeaders], int]
    """How much of the body must be parsed (binary tensors are only viewed)."""
    decode: Callable[[Body, ComputeHeaders, Subject, DecodeOptions], DecodedT]
    """The body as a checked job; pure, so it may run in a thread."""
    reply_bytes: Callable[[DecodedT], int]
    """A bound on the encoded reply's text, to encode large ones in a thread."""
    encode: Callable[[DecodedT, Result], EncodedT]
    respond: Callable[[EncodedT, str], Response]
    """The 200 reply, with its ``Server-Timing`` value."""
    subject: Callable[[DecodeOptions, tuple[str, ...]], Subject] = _no_subject
    """The ``Subject`` the path parameters name (a refusal when none)."""


async def serve(request: Request, codec: Codec[DecodedT, EncodedT], *path: str) -> Response:
    """``path``: the route's path parameters, in order."""
    # The compute routes skip FastAPI's endpoint wrapper (``RequestHandlerRoute``), dependencies
    # included, so the road reads its resources from the app's state.
    compute, options, settings = hot_path_resources(request)
    subject = codec.subject(options, path)
    headers = compute_headers(request)
    timeout = request_timeout(headers.request_timeout)
    compute.admit()
    inline = settings.inline_decode_bytes
    async with compute.memory.reservation() as memory:
        body = await codec.read(request, headers, settings, memory)
        parsed = codec.parsed_bytes(body, headers)
        if parsed > inline:  # a small body's parsing (at most ~1 MiB) is not worth the count
            await hold_parsing(memory, body, parsed, settings.memory_wait_s)
        # Small payloads are decoded and encoded on the loop; large ones in a thread, so the loop
        # stays responsive.
        if parsed > inline:
            decoded = await asyncio.to_thread(codec.decode, body, headers, subject, options)
        else:
            decoded = codec.decode(body, headers, subject, options)
        del body
        served = await compute.run(decoded.job, timeout, request.is_disconnected, memory)
        if codec.reply_bytes(decoded) > inline:
            encoded = await asyncio.to_thread(codec.encode, decoded, served.result)
        else:
            encoded = codec.encode(decoded, served.result)
    return codec.respond(encoded, server_timing(served))
