"""Triton's binary tensor data extension: a JSON header, then raw tensor bytes, in one body.

``Inference-Header-Content-Length`` gives the header's size in both directions; each binary
tensor names its size in ``parameters.binary_data_size``, in the order the tensors are listed.
"""

from __future__ import annotations

from typing import NamedTuple

from app.core.errors import InvalidRequest, MalformedRequest
from app.serving.codec import Body

HEADER_LENGTH = "inference-header-content-length"
"""The header naming how many leading bytes of a body are its JSON object (requests and replies)."""


class SplitBody(NamedTuple):
    json: Body
    binary: memoryview


_NO_BINARY = memoryview(b"")


def split_body(body: Body, header_length: int | None) -> SplitBody:
    """The JSON header and the binary part of a request body (views: nothing is copied). A body
    with binary tensors is a writable buffer (they are viewed in place, as torch wants)."""
    if header_length is None:
        return SplitBody(body, _NO_BINARY)
    if header_length > len(body):
        raise MalformedRequest.at(
            ("header", HEADER_LENGTH), f"is {header_length}, beyond the body's {len(body)} bytes", "invalid_header"
        )
    view = memoryview(body)
    return SplitBody(view[:header_length], view[header_length:])


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
