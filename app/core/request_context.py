"""What is known about the request being served, for logs and metrics, without passing it around;
and its id, whatever its transport."""

from __future__ import annotations

import random
import re
from contextvars import ContextVar
from dataclasses import dataclass

from app.core.limits import MAX_REQUEST_ID

_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:/+=@-]{1,%d}$" % MAX_REQUEST_ID)


@dataclass(slots=True)
class RequestContext:
    request_id: str
    function: str = ""
    """The catalogue function the request computed, once known ("" until then)."""
    trace_id: str = ""
    """The request's W3C trace id (32 hex digits) when tracing is on, set once when its server
    span starts; "" otherwise. Every log line about the request carries it."""
    span_id: str = ""
    """Its server span's id (16 hex digits), beside ``trace_id``."""


current_request: ContextVar[RequestContext | None] = ContextVar("torchfn_request", default=None)


def request_id(given: bytes | None) -> str:
    """The client's request id when it is a sane token (up to ``MAX_REQUEST_ID`` letters, digits
    and ``._:/+=@-``), else a fresh one."""
    if given is not None and _VALID_REQUEST_ID.match(given):
        return given.decode("ascii")
    # 128 random bits from Python's generator (reseeded in forked workers): unique enough for a
    # request id, and no getrandom() system call per request, which py-spy showed costing more
    # than any other line of the app under load.
    return f"{random.getrandbits(128):032x}"
