"""Optional API-key auth as pure ASGI middleware, installed only when keys are configured (so it
costs nothing when off). A key comes as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.errors import Problem
from app.core.limits import MAX_HEADER_VALUE
from app.transports.http.errors import ErrorPipeline, Refusal

UNAUTHORIZED = Refusal(
    401,
    "unauthorized",
    [
        Problem(
            ("header", "authorization"),
            "a valid API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            "unauthorized",
        )
    ],
    {"WWW-Authenticate": 'Bearer realm="torchfn"'},
)

_BEARER = b"bearer "


def presented_key(scope: Scope) -> bytes | None:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"x-api-key":
            return value.strip()
        if name == b"authorization" and value[: len(_BEARER)].lower() == _BEARER:
            return value[len(_BEARER) :].strip()
    return None


class ApiKeyAuth:
    def __init__(self, app: ASGIApp, keys: Iterable[str], open_paths: Iterable[str], errors: ErrorPipeline) -> None:
        self.app = app
        self.errors = errors
        self.keys = [key.encode() for key in keys]
        self.open_paths = frozenset(open_paths)
        if not self.keys:
            raise ValueError("ApiKeyAuth needs at least one key")

    def accepts(self, key: bytes | None) -> bool:
        if not key or len(key) > MAX_HEADER_VALUE:
            return False
        # compare with every key, so the time taken does not tell which one nearly matched
        return sum(hmac.compare_digest(key, known) for known in self.keys) > 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or self.accepts(presented_key(scope)):
            await self.app(scope, receive, send)
            return
        response = self.errors.render(scope["path"], UNAUTHORIZED)
        await response(scope, receive, send)
