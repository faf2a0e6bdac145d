"""What is known about the request being served, for logs and metrics, without passing it around."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


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
