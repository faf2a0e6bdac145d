"""What is known about the request being served, for logs and metrics, without passing it around."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(slots=True)
class RequestContext:
    request_id: str
    function: str = ""
    """The catalogue function the request computed, once known ("" until then)."""


current_request: ContextVar[RequestContext | None] = ContextVar("torchfn_request", default=None)
