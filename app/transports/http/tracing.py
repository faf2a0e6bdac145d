"""The server span of every HTTP request, when tracing is on (``TORCHFN_TRACING``): installed right
inside ``RequestObservability`` (whose request context gets the trace's ids), so that every reply
but a shutdown's cut-off 503 passes through it and carries the span's ``traceparent``. The spans
themselves are ``app.telemetry.tracing``'s; nothing here imports OpenTelemetry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.request_context import current_request
from app.telemetry.request_trace import note_failure
from app.transports.http.errors import ErrorPipeline
from app.transports.http.middleware import UNMATCHED, EndpointNames

if TYPE_CHECKING:
    from app.telemetry.tracing import Tracing

TRACEPARENT = b"traceparent"


class TracedRequests:
    def __init__(self, app: ASGIApp, tracing: Tracing, errors: ErrorPipeline) -> None:
        self.app = app
        self.tracing = tracing
        self.errors = errors
        self.endpoint_of = EndpointNames()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        attributes = {"http.request.method": method, "url.path": scope["path"], "url.scheme": scope["scheme"]}
        span = self.tracing.server_span(current_request.get(), scope["headers"], method, attributes)
        header = (TRACEPARENT, span.traceparent.encode("ascii"))
        status = 0  # until the app answers

        async def send_traced(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_traced)
        except Exception as error:
            if status:
                note_failure(error)
                raise
            # Answered here as RequestObservability would (the pipeline notes the failure and logs
            # its traceback), so that the reply carries the trace too.
            await self.errors.response_to(scope["path"], error)(scope, receive, send_traced)
        except BaseException as error:  # cancelled: the client went away, or shutdown cut it off
            note_failure(error)
            raise
        finally:
            route = self.endpoint_of(scope)
            name = method if route == UNMATCHED else f"{method} {route}"
            answered: dict[str, str | int] = {"http.response.status_code": status} if status else {}
            if route != UNMATCHED:
                answered["http.route"] = route
            span.end(name, answered, None if 0 < status < 500 else str(status or "incomplete"))
