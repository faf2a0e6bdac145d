"""The inference response on the wire: the JSON header, then each binary output's bytes, sent as
they are (no concatenated copy of a large tensor)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.wire.oip_binary import HEADER_LENGTH, EncodedReply


class InferReply(Response):
    def __init__(self, reply: EncodedReply, headers: dict[str, str]) -> None:
        headers = {**headers, "content-length": str(reply.size)}
        if reply.binary:
            headers[HEADER_LENGTH] = str(len(reply.header))
        media_type = "application/octet-stream" if reply.binary else "application/json"
        super().__init__(None, status_code=200, headers=headers, media_type=media_type)
        self.reply = reply

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        parts = (self.reply.header, *self.reply.buffers)
        for index, part in enumerate(parts):
            await send({"type": "http.response.body", "body": part, "more_body": index < len(parts) - 1})
