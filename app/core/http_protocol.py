"""uvicorn's httptools protocol with the connection-level limits it lacks: a bounded request head
(bytes and header count, 431 beyond), a deadline for the head to arrive (the connection is closed
after it), and a cap on open connections (503 at accept time).

httptools hands a header to Python only once it is whole, joining the pieces of it that came in
separate reads by concatenation: a 64 MiB header line arriving in 64 KiB reads cost seconds of
event-loop time, quadratic in its size. So the head's bytes are counted here, before the parser
sees them, and the parser is never fed more head than the limit allows: it is fed in pieces no
larger than what the head may still grow by.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState


@dataclass(frozen=True)
class ConnectionLimits:
    max_head_bytes: int = 16 * 1024
    """Most bytes in a request head (request line and headers)."""
    max_headers: int = 100
    """Most header lines in a request head."""
    head_timeout_s: float = 10.0
    """Longest a connection may take to send a whole request head."""
    max_connections: int = 2048
    """Most open connections per process."""


class LimitedConfig(uvicorn.Config):
    """uvicorn's configuration with the connection limits, and the protocol that keeps them.
    The limits travel with the configuration (it is pickled to each worker process)."""

    def __init__(self, app: str, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, http=LimitedHttpProtocol, **kwargs)
        self.connection_limits = limits


def refusal(status: int, code: str, loc: str, message: str, headers: bytes = b"") -> bytes:
    """A whole response in the service's error format, that closes the connection (with
    ``X-Content-Type-Options: nosniff``, as every reply of the app has)."""
    body = orjson.dumps(
        {
            "error": code,
            "message": f"{loc}: {message}",
            "details": [{"loc": [loc], "msg": message, "type": code}],
            "truncated": False,
        }
    )
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-content-type-options: nosniff\r\n",
            headers,
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class _TooManyHeaders(Exception):
    """Raised from a parser callback to stop the parser at the header over the count."""


class LimitedHttpProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits: ConnectionLimits = getattr(config, "connection_limits", None) or ConnectionLimits()
        self.in_head = True
        """Between requests or inside a request head (not in a body)."""
        self.head_bytes = 0
        """Bytes fed to the parser while in the current head (see ``data_received`` for the bound)."""
        self.header_count = 0
        self.body_left: int | None = None
        """Bytes of a Content-Length body still to come; None for a chunked body."""
        self.head_timer: asyncio.TimerHandle | None = None
        self.unreadable = False
        """The parser has failed: nothing more is read from this connection, which closes once
        the request being answered (if any) has its reply."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.transport = transport
            self.logger.warning("Refused a connection: %d are open already.", len(self.connections))
            message = f"too many open connections (at most {self.limits.max_connections}); retry"
            transport.write(refusal(503, "overloaded", "connection", message, b"retry-after: 1\r\n"))
            transport.close()
            return
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed the parser piece by piece: while in a head, no more than the head may still grow
        by; in a Content-Length body, exactly the body (so the next head is counted from its first
        byte); in a chunked body, pieces of the head limit. A head is thus refused after at most
        ``max_head_bytes`` read, or twice that for a head pipelined in the same piece behind a
        request without a body."""
        if self.unreadable:
            return
        self._unset_keepalive_if_required()
        if self.in_head and self.head_timer is None:
            self._arm_head_timer()
        view = memoryview(data)
        limit = self.limits.max_head_bytes
        while view and not self.transport.is_closing():
            if self.in_head:
                size = limit - self.head_bytes
            elif self.body_left:
                size = self.body_left
            else:
                size = limit
            piece, view = view[:size], view[size:]
            if self.in_head:
                self.head_bytes += len(piece)
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserCallbackError as error:
                if isinstance(error.__context__, _TooManyHeaders):
                    self._refuse_head(f"more than {self.limits.max_headers} headers")
                    return
                self._bad_request()
                return
            except httptools.HttpParserError:
                self._bad_request()
                return
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
                return
            if self.in_head and self.head_bytes >= limit:
                self._refuse_head(f"the request head exceeds {limit} bytes")
                return

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > self.limits.max_headers:
            raise _TooManyHeaders
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        self._cancel_head_timer()
        self.body_left = None
        for name, value in self.headers:
            if name == b"content-length":  # the parser has checked it is one number
                self.body_left = int(value)
                break
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.body_left is not None:
            self.body_left -= len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self.in_head = True
        self.body_left = None
        super().on_message_complete()

    def _bad_request(self) -> None:
        """400 in the service's error format (uvicorn's own is plain text), and close. A request
        broken in its body (a bad chunk) gets the 400, and what its app sends is dropped. When a
        reply to an earlier, pipelined request is still owed, that reply is written first, then
        the connection closes with no 400 (written now, it could be read as that reply)."""
        self.logger.warning("Invalid HTTP request received.")
        self.unreadable = True
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            owed_first = self.in_head or bool(self.pipeline)
            if not self.in_head:  # this request broke in its body: its app sees a client gone
                cycle.disconnected = True
                cycle.message_event.set()
            if owed_first:
                return  # closed once that reply is written (``on_response_complete``)
            if cycle.response_started:
                self.transport.close()
                return
        message = "not a valid HTTP/1.1 request (its framing cannot be read: request line, headers or chunks)"
        self.transport.write(refusal(400, "malformed_request", "request", message))
        self.transport.close()

    def on_response_complete(self) -> None:
        if self.unreadable:  # the reply owed before a broken request is written: nothing follows it
            self.transport.close()
        super().on_response_complete()

    def _refuse_head(self, message: str) -> None:
        """431 and close; only close while an earlier pipelined request is being answered (a
        431 written now could be read as its reply)."""
        self.logger.warning("Refused a request head: %s.", message)
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(refusal(431, "request_header_too_large", "header", message))
        self.transport.close()

    def _arm_head_timer(self) -> None:
        self.head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm_head_timer()  # a request is being answered: its reply is not cut off
            return
        self.transport.close()
