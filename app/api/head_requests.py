"""``HEAD`` wherever ``GET`` is served: the request goes through as a ``GET`` and the reply keeps
its status and headers (``Content-Length`` included) but drops its body (RFC 9110, 9.3.2).
FastAPI's routes answer only the methods they declare, so without this ``HEAD /healthz`` is 405."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_END = {"type": "http.response.body", "body": b"", "more_body": False}


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = _END
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_without_body)
