"""What a protocol tells the road (``app.serving.road``), whatever the transport: how a request's
bytes become a ``Job`` and a ``Result`` becomes the reply's bytes. A protocol knows its wire
format and nothing of HTTP or gRPC; a transport knows how bytes and metadata travel and nothing
of the wire format."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

from app.compute.catalogue import Catalogue, FunctionSpec
from app.compute.jobs import Job, Result
from app.core.config import FloatDType
from app.core.limits import TensorLimits

Body = bytes | bytearray | memoryview
"""A request body as read: the bytes as they came, or a writable buffer whose binary tensors are
viewed in place."""
Subject = FunctionSpec | None
"""What a request's path names, resolved before its body is read (the Open Inference Protocol's
model); None where the path names nothing."""


class RequestMeta(NamedTuple):
    """What the transport read about a request besides its body, each value parsed once."""

    content_type: str = ""
    """The media type as sent ("" when none was)."""
    content_length: int | None = None
    """The body's declared size, when the transport knows it before reading it."""
    content_encoding: str | None = None
    """``gzip`` or ``deflate`` when the body is compressed (lower case); None when it is not."""
    binary_header_length: int | None = None
    """The Open Inference Protocol's binary tensor data extension: how many leading bytes of the
    body are its JSON header (None: all of it)."""
    timeout: float | None = None
    """Seconds the client is willing to wait for its result, when it says."""


@dataclass(frozen=True)
class DecodeOptions:
    """What decoding a request needs, whatever its protocol."""

    catalogue: Catalogue
    limits: TensorLimits
    max_total_elements: int
    default_dtype: FloatDType


class Encoded(NamedTuple):
    """A reply's bytes: a header and, where the protocol sends raw tensors, their bytes after it
    (sent as they are, never concatenated into a copy)."""

    parts: tuple[bytes | memoryview, ...]
    content_type: str
    header_length: int | None = None
    """The size of the first part, when raw parts follow it (the binary tensor data extension)."""

    @property
    def size(self) -> int:
        parts = self.parts
        return len(parts[0]) if len(parts) == 1 else sum(len(part) for part in parts)


class Decoded(Protocol):
    """A request decoded: its checked ``Job`` and whatever its encoding needs."""

    @property
    def job(self) -> Job: ...


DecodedT = TypeVar("DecodedT", bound=Decoded)
ParseApart = Callable[[bytes, TensorLimits], Any]
"""A protocol's parser for a large JSON text, run in the parse process: the text's object, its
large lists of numbers decoded already (``app.protocols.parsing``)."""


class Codec(Protocol[DecodedT]):
    """A protocol's part of the road."""

    protocol: str
    """The protocol's name in logs and metrics (``native``, ``oip``)."""

    def subject(self, options: DecodeOptions, path: tuple[str, ...]) -> Subject:
        """What the path parameters name; a refusal (404) when nothing. Before the body is read."""

    def check(self, meta: RequestMeta) -> None:
        """Refuse a request the protocol cannot read (e.g. 415 for a media type), before its body."""

    @property
    def parse_apart(self) -> ParseApart | None:
        """Parses a large ``parsed_text`` in the parse process (``app.serving.apart``): picklable.
        None for a format whose parser does not hold the interpreter lock for long (protobuf)."""

    def parsed_text(self, body: Body, meta: RequestMeta) -> bytes:
        """The part of the body that is parsed (binary tensors after a JSON header are only
        viewed): decoded on the loop when small, in a thread past ``inline_decode_bytes``."""

    def decoding_bytes(self, body: Body, text: bytes) -> int:
        """What holding the body and decoding it (its ``text``) takes at most: held in the memory
        budget while a large body is decoded."""

    def decode(
        self, body: Body, meta: RequestMeta, subject: Subject, options: DecodeOptions, parsed: Any = None
    ) -> DecodedT:
        """The body as a checked job; ``parsed``: its text's object when ``parse_apart`` parsed it.
        Pure: it may run in a thread."""

    def reply_bytes(self, decoded: DecodedT) -> int:
        """A bound on the encoded reply's text, to encode a large one in a thread."""

    def encode(self, decoded: DecodedT, result: Result) -> Encoded:
        """The reply. Pure: it may run in a thread."""
