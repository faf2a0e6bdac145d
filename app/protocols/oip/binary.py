"""Triton's binary tensor data extension: a JSON header, then raw tensor bytes, in one body.

``Inference-Header-Content-Length`` gives the header's size in both directions; each binary
tensor names its size in ``parameters.binary_data_size``, in the order the tensors are listed.
"""

from __future__ import annotations

from typing import NamedTuple

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.api.body import Body
from app.api.headers import header_number
from app.api.responses import EncodedJSON
from app.core.errors import InvalidRequest, MalformedRequest

HEADER_LENGTH = "inference-header-content-length"
"""The header naming how many leading bytes of the body are the JSON object."""


class SplitBody(NamedTuple):
    json: Body
    binary: memoryview


_NO_BINARY = memoryview(b"")


def split_body(body: Body, header_length: str | None) -> SplitBody:
    """The JSON header and the binary part of a request body (views: nothing is copied). A body
    with binary tensors is a writable buffer (they are viewed in place, as torch wants)."""
    if header_length is None:
        return SplitBody(body, _NO_BINARY)
    view = memoryview(body)
    loc = ("header", HEADER_LENGTH)
    size = header_number(header_length)
    if size is None:
        raise MalformedRequest.at(loc, "must be a non-negative integer of ASCII digits", "invalid_header")
    if size > len(body):
        raise MalformedRequest.at(loc, f"is {size}, beyond the body's {len(body)} bytes", "invalid_header")
    return SplitBody(view[:size], view[size:])


class BinaryReader:
    """Hands out the binary part tensor by tensor, in order."""

    def __init__(self, binary: memoryview) -> None:
        self._binary = binary
        self._offset = 0

    def take(self, size: int, loc: tuple[str | int, ...]) -> memoryview:
        end = self._offset + size
        if end > len(self._binary):
            left = len(self._binary) - self._offset
            raise InvalidRequest.at(loc, f"is {size} but only {left} bytes of binary data are left", "size_mismatch")
        chunk = self._binary[self._offset : end]
        self._offset = end
        return chunk

    def finish(self) -> None:
        left = len(self._binary) - self._offset
        if left:
            raise InvalidRequest.at(
                ("body",),
                f"{left} bytes of binary data follow the inputs' binary_data_size (check {HEADER_LENGTH})",
                "size_mismatch",
            )


class EncodedReply(NamedTuple):
    """A reply: the JSON header and, when some outputs are binary, their bytes after it."""

    header: bytes
    buffers: tuple[memoryview, ...]

    @property
    def size(self) -> int:
        return len(self.header) + sum(len(buffer) for buffer in self.buffers)


def infer_reply(reply: EncodedReply, server_timing: str) -> Response:
    """The inference response on the wire: JSON alone as any encoded JSON reply, else the header
    and the binary outputs' bytes after it."""
    if not reply.buffers:
        return EncodedJSON(reply.header, server_timing)
    return BinaryReply(reply, server_timing)


class BinaryReply(Response):
    """The JSON header, then each binary output's bytes, sent as they are (no concatenated copy
    of a large tensor)."""

    def __init__(self, reply: EncodedReply, server_timing: str) -> None:
        """Builds its raw headers in one step, as ``EncodedJSON`` does (Starlette derives them from
        a header mapping, ~3 µs a request)."""
        self.status_code = 200
        self.background = None
        self.body = b""
        self.reply = reply
        self.raw_headers = [
            (b"content-length", str(reply.size).encode("latin-1")),
            (b"content-type", b"application/octet-stream"),
            (b"server-timing", server_timing.encode("latin-1")),
            (HEADER_LENGTH.encode("latin-1"), str(len(reply.header)).encode("latin-1")),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        parts = (self.reply.header, *self.reply.buffers)
        for index, part in enumerate(parts):
            await send({"type": "http.response.body", "body": part, "more_body": index < len(parts) - 1})
