"""Triton's binary tensor data extension: a JSON header, then raw tensor bytes, in one body.

``Inference-Header-Content-Length`` gives the header's size in both directions; each binary
tensor names its size in ``parameters.binary_data_size``, in the order the tensors are listed.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.errors import InvalidRequest, MalformedRequest
from app.core.header_numbers import header_number

HEADER_LENGTH = "inference-header-content-length"
"""The header naming how many leading bytes of the body are the JSON object."""


@dataclass(frozen=True)
class SplitBody:
    json: memoryview
    binary: memoryview


def split_body(body: bytearray, header_length: str | None) -> SplitBody:
    """The JSON header and the binary part of a request body (views: nothing is copied)."""
    view = memoryview(body)
    if header_length is None:
        return SplitBody(view, view[len(view) :])
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


@dataclass(frozen=True)
class EncodedReply:
    """A reply: the JSON header and, when some outputs are binary, their bytes after it."""

    header: bytes
    buffers: tuple[memoryview, ...]

    @property
    def binary(self) -> bool:
        return bool(self.buffers)

    @property
    def size(self) -> int:
        return len(self.header) + sum(len(buffer) for buffer in self.buffers)
