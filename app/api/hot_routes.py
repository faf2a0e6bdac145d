"""The compute routes' own lane through the ASGI stack.

``RequestHandlerRoute`` declares a compute route (documented and routed like any other) whose
endpoint is a request handler already: FastAPI's endpoint wrapper (dependency solving, parameter
and response validation, exit stacks, a per-route exception catcher) has nothing to do for it and
cost ~35 µs of a small request (measured with ``bench/throughput.py``).

``HotRoutes`` sits inside the production middleware (request id, metrics, access log, CORS,
auth: they apply to every request alike) and answers the compute routes of every protocol
itself, refusals through the error pipeline; every other request goes on to Starlette's exception
layer and router. What it skips: FastAPI's exit-stack layer, Starlette's exception layer with its
per-request ``send`` wrapper, and the router's matching (a regular expression per route tried):
~15 µs of a ~165 µs cross_entropy request, in process.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any, cast

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import ErrorPipeline

RequestHandler = Callable[[Request], Coroutine[Any, Any, Response]]
_NO_PARAMETERS: dict[str, Any] = {}
MATCHED_PATHS = 1024
"""Templated paths remembered with their match (one per model and version in use)."""


class RequestHandlerRoute(APIRoute):
    """A route whose endpoint takes the ``Request`` (and its path parameters, as strings) and
    returns a ``Response`` itself; its exceptions reach the error pipeline as any route's do.
    Called the same way by the router (``app``) and by ``HotRoutes``."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            request = Request(scope, receive, send)
            response = await endpoint(request, **request.path_params)
            await response(scope, receive, send)

        self.app = app

    def get_route_handler(self) -> RequestHandler:
        """What ``APIRoute`` wraps at construction: the endpoint itself, none of FastAPI's
        machinery (``app`` above replaces the wrapped one)."""
        return cast(RequestHandler, self.endpoint)


class HotRoutes:
    def __init__(self, app: ASGIApp, routes: Iterable[BaseRoute], errors: ErrorPipeline) -> None:
        """``routes``: the request-handler routes to serve here (others are ignored: the router
        keeps them); those with path parameters are matched after the fixed paths."""
        self.app = app
        hot = [route for route in routes if isinstance(route, RequestHandlerRoute) and route.methods == {"POST"}]
        self.fixed = {route.path: route for route in hot if not route.param_convertors}
        self.templated = [route for route in hot if route.param_convertors]
        self.prefixes = tuple({route.path.split("{", 1)[0] for route in self.templated})
        self._matched: dict[str, tuple[RequestHandlerRoute, dict[str, Any]]] = {}
        """Paths matched to a templated route already, with their parameters: a dictionary look-up
        instead of each route's regular expression."""
        self.errors = errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._match(scope) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request, **scope.get("path_params", _NO_PARAMETERS))
        except Exception as error:
            response = self.errors.response_to(_route_path(scope), error)
        await response(scope, receive, send)

    def _match(self, scope: Scope) -> RequestHandlerRoute | None:
        path = _route_path(scope)
        route = self.fixed.get(path)
        if route is not None or not path.startswith(self.prefixes):
            return route
        matched = self._matched.get(path)
        if matched is None:
            matched = self._match_templated(path)
            if matched is None:
                return None
            if len(self._matched) >= MATCHED_PATHS:  # many distinct paths: start over, bounded
                self._matched.clear()
            self._matched[path] = matched
        route, params = matched
        scope["path_params"] = dict(params)
        return route

    def _match_templated(self, path: str) -> tuple[RequestHandlerRoute, dict[str, Any]] | None:
        for candidate in self.templated:  # the route's own pattern and convertors, as Starlette matches
            found = candidate.path_regex.match(path)
            if found is not None:
                convertors = candidate.param_convertors
                return candidate, {key: convertors[key].convert(value) for key, value in found.groupdict().items()}
        return None


def _route_path(scope: Scope) -> str:
    """The path the router would match: without the ``root_path`` a proxy mounts the app under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
