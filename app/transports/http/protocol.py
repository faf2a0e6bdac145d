"""uvicorn's httptools protocol with the connection-level limits it lacks: a bounded request head
(bytes and header count, 431 beyond), a deadline for the head to arrive (the connection is closed
after it), a cap on open connections that makes room for a newcomer by closing a connection that
is idle or stalling, and every refusal of its own in the service's JSON error format (a malformed
request's 400 included, where uvicorn writes plain text).

httptools hands a header to Python only once it is whole, joining the pieces of it that came in
separate reads by concatenation: a 64 MiB header line arriving in 64 KiB reads cost seconds of
event-loop time, quadratic in its size. So the head's bytes are counted here, before the parser
sees them, and the parser is never fed more head than the limit allows: it is fed in pieces no
larger than what the head may still grow by.

At the cap, a new connection takes the place of, in this order: the connection idle the longest
between requests; the one that has spent the longest over an unfinished head (past
``STALL_GRACE_S``); the one whose body arrives the slowest, when slower than
``SLOW_BODY_BYTES_S`` on average (past ``STALL_GRACE_S``), which is answered 408. Only when none
qualifies is the newcomer refused with 503: trickling connections cannot hold the server's
connections against honest clients.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE
from uvicorn.server import ServerState

from app.core.internals import HttpToolsHooks

STALL_GRACE_S = 1.0
"""How long a head or body may take before its connection can make room for a newcomer."""
SLOW_BODY_BYTES_S = 16 * 1024
"""A body arriving slower than this on average is stalling (when the connection cap is reached)."""
NOSNIFF = b"x-content-type-options: nosniff\r\n"


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
            NOSNIFF,
            headers,
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class _TooManyHeaders(Exception):
    """Raised from a parser callback to stop the parser at the header over the count."""


_IDLE, _HEAD, _BODY, _ANSWERING = range(4)


class LimitedHttpProtocol(HttpToolsHooks):
    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits: ConnectionLimits = getattr(config, "connection_limits", None) or ConnectionLimits()
        self.phase = _IDLE
        """Between requests, in a head, in a body, or answering a request read whole."""
        self.since = time.monotonic()
        """When the current phase began."""
        self.head_bytes = 0
        """Bytes fed to the parser while in the current head (see ``data_received`` for the bound)."""
        self.header_count = 0
        self.too_many_headers = False
        self.body_left: int | None = None
        """Bytes of a Content-Length body still to come; None for a chunked body."""
        self.body_bytes = 0
        self.head_timer: asyncio.TimerHandle | None = None
        self.unreadable = False
        """The parser has failed: nothing more is read from this connection, which closes once
        the request being answered (if any) has its reply."""
        self.unreadable = False
        """The parser has failed: nothing more is read from this connection, which closes once
        the request being answered (if any) has its reply."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self.open_connections >= self.limits.max_connections and not self._make_room():
            self.transport = transport
            self.logger.warning("Refused a connection: %d are open already.", self.open_connections)
            message = f"too many open connections (at most {self.limits.max_connections}); retry"
            transport.write(refusal(503, "overloaded", "connection", message, b"retry-after: 1\r\n"))
            transport.close()
            return
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _make_room(self) -> bool:
        """Close the open connection that deserves it least (the module's docstring says which);
        whether one was."""
        now = time.monotonic()
        ranked = [(peer.stalling(now), peer) for peer in self.peers() if isinstance(peer, LimitedHttpProtocol)]
        candidates = [(rank, peer) for rank, peer in ranked if rank is not None]
        if not candidates:
            return False
        _, victim = min(candidates, key=lambda candidate: candidate[0])
        victim.give_way()
        return True

    def stalling(self, now: float) -> tuple[int, float] | None:
        """(rank, order) when this connection may be closed to make room: lowest first."""
        if self.transport.is_closing():
            return None
        age = now - self.since
        if self.phase == _IDLE and not self.answering:
            return (0, -age)
        if self.phase == _HEAD and age > STALL_GRACE_S and not self.answering:
            return (1, -age)
        if self.phase == _BODY and age > STALL_GRACE_S:
            rate = self.body_bytes / age
            if rate < SLOW_BODY_BYTES_S:
                return (2, rate)
        return None

    def give_way(self) -> None:
        if self.phase == _BODY:
            self.logger.warning("Closed a connection whose body stalled, to make room for a new one.")
            message = f"the body arrived at {self.body_bytes} bytes in {time.monotonic() - self.since:.1f} s"
            self.transport.write(refusal(408, "body_timeout", "body", message))
            self.end_request()
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        """Feed the parser piece by piece: while in a head, no more than the head may still grow
        by; in a Content-Length body, exactly the body (so the next head is counted from its first
        byte); in a chunked body, pieces of the head limit. A head is thus refused after at most
        ``max_head_bytes`` read, or twice that for a head pipelined in the same piece behind a
        request without a body."""
        if self.unreadable:
            return
        if self.phase == _IDLE:
            self._enter(_HEAD)
        if self.phase != _BODY and self.head_timer is None:
            self._arm_head_timer()
        view = memoryview(data)
        limit = self.limits.max_head_bytes
        while view and not self.transport.is_closing():
            in_head = self.phase != _BODY  # the bytes after a whole request are the next one's head
            if in_head:
                size = limit - self.head_bytes
            elif self.body_left:
                size = self.body_left
            else:
                size = limit
            piece, view = view[:size], view[size:]
            if in_head:
                self.head_bytes += len(piece)
            self.feed(piece)
            if self.phase != _BODY and self.head_bytes >= limit and not self.transport.is_closing():
                self._refuse_head(f"the request head exceeds {limit} bytes")
                return

    def send_400_response(self, msg: str) -> None:
        """What uvicorn answers a request the parser refuses: a 431 when the parser was stopped at
        one header too many, else a 400 in the service's error format (uvicorn's own is plain
        text), and the connection closes. A request broken in its body (a bad chunk) gets the 400,
        and what its app sends is dropped. When a reply to an earlier, pipelined request is still
        owed, that reply is written first, then the connection closes with no 400 (written now, it
        could be read as that reply)."""
        if self.too_many_headers:
            self._refuse_head(f"more than {self.limits.max_headers} headers")
            return
        self.unreadable = True
        if self.answering:
            owed_first = self.phase != _BODY or self.pipelined
            if self.phase == _BODY:  # this request broke in its body: its app sees a client gone
                self.end_request()
            if owed_first:
                return  # closed once that reply is written (``on_response_complete``)
            if self.response_started:
                self.transport.close()
                return
        message = "not a valid HTTP/1.1 request (its framing cannot be read: request line, headers or chunks)"
        self.transport.write(refusal(400, "malformed_request", "request", message))
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.header_count = 0
        self._enter(_HEAD)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > self.limits.max_headers:
            self.too_many_headers = True
            raise _TooManyHeaders
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.head_bytes = 0
        self._cancel_head_timer()
        self.body_left = None
        self.body_bytes = 0
        for name, value in self.headers:
            if name == b"content-length":  # the parser has checked it is one number
                self.body_left = int(value)
                break
        self._enter(_BODY)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.body_left is not None:
            self.body_left -= len(body)
        self.body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._enter(_ANSWERING)
        self.body_left = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self.unreadable:  # the reply owed before a broken request is written: nothing follows it
            self.transport.close()
        super().on_response_complete()
        if self.phase == _ANSWERING:
            self._enter(_IDLE)

    def _enter(self, phase: int) -> None:
        self.phase = phase
        self.since = time.monotonic()

    def _refuse_head(self, message: str) -> None:
        """431 and close; only close while an earlier pipelined request is being answered (a
        431 written now could be read as its reply)."""
        self.logger.warning("Refused a request head: %s.", message)
        if not self.answering:
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
        if self.answering:
            self._arm_head_timer()  # a request is being answered: its reply is not cut off
            return
        self.transport.close()
