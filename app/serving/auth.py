"""API keys, whatever the transport: HTTP's headers and gRPC's metadata carry a key the same way,
as ``authorization: Bearer <key>`` or ``x-api-key: <key>``, and every transport checks it here."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from app.core.limits import MAX_HEADER_VALUE

_BEARER = b"bearer "


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The key a request presents in its headers or metadata (names in lower case), if any: the
    first ``x-api-key``, or ``authorization``'s bearer token, whichever comes first."""
    for name, value in headers:
        if name == b"x-api-key":
            return value.strip()
        if name == b"authorization" and value[: len(_BEARER)].lower() == _BEARER:
            return value[len(_BEARER) :].strip()
    return None


class ApiKeys:
    """The configured keys (``TORCHFN_API_KEYS``)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = [key.encode() for key in keys]
        if not self.keys:
            raise ValueError("ApiKeys needs at least one key")

    def accepts(self, key: bytes | None) -> bool:
        if not key or len(key) > MAX_HEADER_VALUE:
            return False
        # compare with every key, so the time taken does not tell which one nearly matched
        return sum(hmac.compare_digest(key, known) for known in self.keys) > 0
