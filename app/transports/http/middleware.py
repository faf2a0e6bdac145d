"""Pure ASGI middleware for every request: ``HEAD`` served as ``GET``, and a request id
(``X-Request-ID``, accepted or made and always echoed), ``X-Content-Type-Options: nosniff`` on
every reply, the request metrics and the access log. Pure ASGI rather than
``BaseHTTPMiddleware``: no extra task or body buffering on the hot path."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import Problem
from app.core.lifecycle import is_draining
from app.core.request_context import RequestContext, current_request, request_id
from app.telemetry.access_log import access_logger, log_access
from app.telemetry.metrics import Metrics
from app.transports.http.errors import ErrorPipeline, Refusal
from app.transports.http.tracing import end_span, start_span

if TYPE_CHECKING:
    from app.telemetry.tracing import Tracing

REQUEST_ID_HEADER = b"x-request-id"
NOSNIFF = (b"x-content-type-options", b"nosniff")
"""On every reply: a browser never reads a body as another type than the one it is sent as."""
UNMATCHED = "unmatched"
"""The ``endpoint`` label of requests no route matched (so unknown paths cannot grow the label set)."""

CUT_OFF = Refusal(
    503,
    "overloaded",
    [Problem(("service",), "the server shut down before this request was served; retry", "shutting_down")],
    {"Retry-After": "1"},
)


def incoming_request_id(scope: Scope) -> str:
    """The client's ``X-Request-ID`` when it is a sane token, else a fresh one."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            return request_id(value)
    return request_id(None)


def route_templates(routes: Iterable[BaseRoute]) -> list[tuple[re.Pattern[str], str]]:
    """Every route's path template and its pattern, included routers flattened."""
    found: list[tuple[re.Pattern[str], str]] = []
    for route in routes:
        path = getattr(route, "path", None)
        if isinstance(path, str):
            found.append((compile_path(path)[0], path))
        inner = getattr(route, "original_router", None) or getattr(route, "routes", None)
        inner_routes = getattr(inner, "routes", inner)
        if isinstance(inner_routes, list):
            found.extend(route_templates(inner_routes))
    return found


class EndpointNames:
    """The ``endpoint`` label: the matched route's path template (``/functions/{name}``), so
    unknown paths cannot grow the label set. Requests answered before routing (a 401) are
    matched against the app's routes here."""

    def __init__(self) -> None:
        self._templates: list[tuple[re.Pattern[str], str]] | None = None

    def __call__(self, scope: Scope) -> str:
        path = getattr(scope.get("route"), "path", None)
        if isinstance(path, str):
            return path
        if self._templates is None:
            self._templates = route_templates(getattr(scope.get("app"), "routes", []))
        return next((name for pattern, name in self._templates if pattern.match(scope["path"])), UNMATCHED)


class RequestObservability:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics | None,
        access_log: bool,
        errors: ErrorPipeline,
        tracing: Tracing | None = None,
    ) -> None:
        """``tracing``: the server span of each request when tracing is on (``tracing.py``)."""
        self.app = app
        self.tracing = tracing
        self.errors = errors
        self.metrics = metrics
        self.access_log = access_log
        self.endpoint_of = EndpointNames()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        context = RequestContext(incoming_request_id(scope))
        token = current_request.set(context)
        span, traceparent = start_span(self.tracing, scope, context) if self.tracing is not None else (None, None)
        id_header = (REQUEST_ID_HEADER, context.request_id.encode("ascii"))
        status = 0  # until the app answers

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header, NOSNIFF]
                if traceparent is not None:  # tracing
                    message["headers"].append(traceparent)
            await send(message)

        metrics = self.metrics
        if metrics is not None:
            metrics.in_flight_now += 1
        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            if status or not is_draining():
                raise
            # The shutdown grace period ran out before this request was served: the server
            # cancels it. Answer 503 (retry elsewhere) rather than uvicorn's bare 500.
            await self.errors.render(scope["path"], CUT_OFF)(scope, receive, send_with_id)
        except Exception as error:
            if status:
                raise
            # Answered here rather than by Starlette's outermost handler, so that the reply has
            # the request's id and nosniff like every other (the pipeline logs the traceback).
            await self.errors.response_to(scope["path"], error)(scope, receive, send_with_id)
        finally:
            status = status or 500  # the app raised before answering
            seconds = time.perf_counter() - started
            endpoint = self.endpoint_of(scope)
            if span is not None:  # tracing
                end_span(span, scope["method"], status, endpoint)
            if metrics is not None:
                metrics.in_flight_now -= 1
                metrics.observe_request(endpoint, context.function, status, seconds)
            if self.access_log and access_logger.isEnabledFor(logging.INFO):
                client = scope.get("client")
                address = f"{client[0]}:{client[1]}" if client else None
                log_access(scope["method"], scope["path"], status, seconds, context, address)
            current_request.reset(token)


_END = {"type": "http.response.body", "body": b"", "more_body": False}


class HeadAsGet:
    """``HEAD`` wherever ``GET`` is served: the request goes through as a ``GET`` and the reply keeps
    its status and headers (``Content-Length`` included) but drops its body (RFC 9110, 9.3.2).
    FastAPI's routes answer only the methods they declare, so without this ``HEAD /healthz`` is 405."""

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
