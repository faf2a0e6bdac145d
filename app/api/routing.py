"""A route class for endpoints that are request handlers already."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, cast

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

RequestHandler = Callable[[Request], Coroutine[Any, Any, Response]]


class RequestHandlerRoute(APIRoute):
    """A route whose endpoint takes the ``Request`` and returns a ``Response`` itself.

    FastAPI's wrapper around an endpoint (dependency solving, parameter and response
    validation, the exit stacks for dependencies with ``yield``, a per-route exception
    catcher) has nothing to do for such an endpoint, so the route calls it directly; its
    exceptions reach the app's exception handlers as any route's do. The route is declared,
    documented and routed like any other. Measured with ``bench/throughput.py``: the wrapper
    costs ~35 µs a request, a sixth of the hot path. Applies to routes on the app's own router
    (an included router builds its own wrapper). ``app.api.hot_routes`` calls ``handler``
    without going through the router at all.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        handler = self.handler = self.get_route_handler()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            response = await handler(Request(scope, receive, send))
            await response(scope, receive, send)

        self.app = app

    def get_route_handler(self) -> RequestHandler:
        return cast(RequestHandler, self.endpoint)
