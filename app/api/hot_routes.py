"""The compute routes' own lane through the ASGI stack.

``HotRoutes`` sits inside the production middleware (request id, metrics, access log, CORS,
auth: they apply to every request alike) and answers ``POST /activate`` and ``POST /loss`` itself,
with the app's own exception handlers; every other request goes on to Starlette's exception layer
and router as before. What it skips on the hot path: FastAPI's exit-stack layer, Starlette's
exception layer with its per-request ``send`` wrapper, and route matching (a regular expression
per route tried). Measured in process with a driver on the app (``bench/throughput.py``'s
payloads): ~15 µs of a ~165 µs cross_entropy request.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from fastapi import Request, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.routing import RequestHandlerRoute

ExceptionHandler = Callable[[Request, Any], Response | Awaitable[Response]]
"""As Starlette keeps them in ``app.exception_handlers``."""


class HotRoutes:
    def __init__(
        self, app: ASGIApp, routes: Iterable[BaseRoute], exception_handlers: Mapping[Any, ExceptionHandler]
    ) -> None:
        """``routes``: the request-handler routes to serve here (others are ignored: the router
        keeps them). ``exception_handlers``: the app's own mapping (read at each error, so
        handlers installed later apply too)."""
        self.app = app
        self.routes = {
            route.path: route
            for route in routes
            if isinstance(route, RequestHandlerRoute) and route.methods == {"POST"}
        }
        self.exception_handlers = exception_handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(_route_path(scope)) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        request = Request(scope, receive, send)
        try:
            response = await route.handler(request)
        except Exception as error:
            handled = self._handler_for(error)(request, error)
            response = await handled if inspect.isawaitable(handled) else handled
        await response(scope, receive, send)

    def _handler_for(self, error: Exception) -> ExceptionHandler:
        for cls in type(error).__mro__:
            handler = self.exception_handlers.get(cls)
            if handler is not None:
                return handler
        raise error  # no handler, not even for Exception: the server's own error layer answers 500


def _route_path(scope: Scope) -> str:
    """The path the router would match: without the ``root_path`` a proxy mounts the app under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
