"""The server span of an HTTP request, when tracing is on (``TORCHFN_TRACING``): started and ended
by ``RequestObservability`` (``middleware.py``), whose request context gets the trace's ids and
whose replies, every one, carry the span's ``traceparent``. The spans themselves are
``app.telemetry.tracing``'s; nothing here imports OpenTelemetry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import Scope

from app.core.request_context import RequestContext

if TYPE_CHECKING:
    from app.telemetry.tracing import ServerSpan, Tracing

TRACEPARENT = b"traceparent"
UNMATCHED = "unmatched"
"""``EndpointNames``' name for a path no route matched (``middleware.UNMATCHED``)."""


def start_span(tracing: Tracing, scope: Scope, context: RequestContext) -> tuple[ServerSpan, tuple[bytes, bytes]]:
    """The request's server span (its parent the ``traceparent`` among its headers, if any), and
    the ``traceparent`` header its reply carries."""
    method: str = scope["method"]
    attributes = {"http.request.method": method, "url.path": scope["path"], "url.scheme": scope["scheme"]}
    span = tracing.server_span(context, scope["headers"], method, attributes)
    return span, (TRACEPARENT, span.traceparent.encode("ascii"))


def end_span(span: ServerSpan, method: str, status: int, route: str) -> None:
    """End the server span: named and attributed by the route template matched (none for an
    unmatched path); a failure for a 5xx (500 too for a request that never answered)."""
    answered: dict[str, str | int] = {"http.response.status_code": status}
    if route == UNMATCHED:
        name = method
    else:
        name = f"{method} {route}"
        answered["http.route"] = route
    span.end(name, answered, None if status < 500 else str(status))
