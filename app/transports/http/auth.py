"""Optional API-key auth as pure ASGI middleware, installed only when keys are configured (so it
costs nothing when off). A key comes as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``,
checked as gRPC's metadata is (``app.serving.auth``)."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.errors import Problem
from app.serving.auth import ApiKeys
from app.serving.auth import presented_key as presented_header_key
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


def presented_key(scope: Scope) -> bytes | None:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    return presented_header_key(headers)


class ApiKeyAuth:
    def __init__(self, app: ASGIApp, keys: Iterable[str], open_paths: Iterable[str], errors: ErrorPipeline) -> None:
        self.app = app
        self.errors = errors
        self.keys = ApiKeys(keys)
        self.open_paths = frozenset(open_paths)

    def accepts(self, key: bytes | None) -> bool:
        return self.keys.accepts(key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or self.accepts(presented_key(scope)):
            await self.app(scope, receive, send)
            return
        response = self.errors.render(scope["path"], UNAUTHORIZED)
        await response(scope, receive, send)
