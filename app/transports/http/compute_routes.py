"""The compute routes over HTTP: plain ASGI endpoints on the road, and their own lane.

A ``ComputeRoute`` is not a FastAPI route and does not pose as one. Its endpoint reads the
request's headers once into the road's ``RequestMeta``, hands the road the body as it arrives
(``AsgiBody``) and writes the road's reply as it is, every refusal through the service's error
pipeline. So it runs no dependencies, validates no response model and the app's exception
handlers never see its errors: a route declared with any of those is refused where it is
declared, and an app with app-wide dependencies refuses to install compute routes. It is still
documented in the OpenAPI document, from the operation it is declared with.

``ComputeLane``, inside the production middleware (request id, metrics, access log, CORS and
auth apply to every request alike), answers the compute routes itself; every other request goes
on to the framework. What it skips: FastAPI's exit-stack layer, Starlette's exception layer with
its per-request ``send`` wrapper, and the router's matching (a regular expression per route
tried): ~15 µs of a ~165 µs cross_entropy request, in process.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.errors import ClientGone
from app.protocols.oip.binary import HEADER_LENGTH
from app.serving.codec import Codec
from app.serving.road import Reply, Road
from app.transports.http.errors import ErrorPipeline
from app.transports.http.headers import request_meta, server_timing

_NO_PARAMETERS: dict[str, Any] = {}
MATCHED_PATHS = 1024
"""Templated paths remembered with their match (one per model and version in use)."""
_HEADER_LENGTH = HEADER_LENGTH.encode("latin-1")
_PROBE_SCOPE: Scope = {"type": "http"}


class AsgiBody:
    """The road's ``BodySource`` over ASGI's ``receive``."""

    __slots__ = ("_done", "_receive")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._done = False

    async def read(self) -> bytes | None:
        if self._done:
            return None
        message = await self._receive()
        if message["type"] != "http.request":  # http.disconnect
            raise ClientGone.at(("client",), "the client went away while sending its body", "client_gone")
        if not message.get("more_body", False):
            self._done = True
        body: bytes = message.get("body", b"")
        return body

    async def gone(self) -> bool:
        """Whether the client has disconnected since (asked of requests that have queued a while)."""
        return await Request(_PROBE_SCOPE, self._receive).is_disconnected()


class ComputeEndpoint:
    """The plain ASGI endpoint of one compute route."""

    def __init__(self, codec: Codec[Any], binary_extension: bool) -> None:
        self.codec = codec
        self.binary_extension = binary_extension
        """Whether the binary tensor data extension's header is read (the protocol's REST face)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        road: Road = scope["app"].state.road
        try:
            meta = request_meta(scope["headers"], self.binary_extension)
            path = tuple(scope.get("path_params", _NO_PARAMETERS).values())
            body = AsgiBody(receive)
            reply = await road.serve(self.codec, meta, body, path, body.gone)
        except Exception as error:
            errors: ErrorPipeline = scope["app"].state.errors
            await errors.response_to(_route_path(scope), error)(scope, receive, send)
            return
        await write_reply(send, reply)


async def write_reply(send: Send, reply: Reply) -> None:
    """The 200 reply, its parts sent as they are (no concatenated copy of a large tensor)."""
    encoded = reply.encoded
    headers = [
        (b"content-length", str(encoded.size).encode("latin-1")),
        (b"content-type", encoded.content_type.encode("latin-1")),
        (b"server-timing", server_timing(reply.served)),
    ]
    if encoded.header_length is not None:
        headers.append((_HEADER_LENGTH, str(encoded.header_length).encode("latin-1")))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    parts = encoded.parts
    last = len(parts) - 1
    for index, part in enumerate(parts):
        await send({"type": "http.response.body", "body": part, "more_body": index < last})


class ComputeRoute(Route):
    """A POST route served by the road (see the module's docstring for what it does not do)."""

    def __init__(
        self,
        path: str,
        codec: Codec[Any],
        *,
        operation: dict[str, Any],
        binary_extension: bool = False,
        **unsupported: Any,
    ) -> None:
        """``operation``: its OpenAPI operation object (summary, request body, responses...)."""
        if unsupported:
            raise TypeError(
                f"compute route {path}: {', '.join(sorted(unsupported))} cannot be honoured: compute routes are "
                "plain ASGI endpoints on the road, not FastAPI routes (no dependencies, response models or "
                "exception handlers); put cross-cutting work in middleware (app/transports/http/operations.py)"
            )
        super().__init__(path, ComputeEndpoint(codec, binary_extension), methods=["POST"], include_in_schema=False)
        self.operation = operation


def install_compute_routes(app: FastAPI, routes: Sequence[ComputeRoute]) -> None:
    """Route (and so document, and answer 405 for other methods) the compute routes in ``app``."""
    if app.router.dependencies:
        raise TypeError(
            "the app declares app-wide dependencies, which compute routes cannot honour: put them in middleware"
        )
    app.router.routes.extend(routes)


class ComputeLane:
    def __init__(self, app: ASGIApp, routes: Iterable[ComputeRoute]) -> None:
        """``routes``: the compute routes to answer here; those with path parameters are matched
        after the fixed paths."""
        self.app = app
        routes = list(routes)
        self.fixed = {route.path: route for route in routes if not route.param_convertors}
        self.templated = [route for route in routes if route.param_convertors]
        self.prefixes = tuple({route.path.split("{", 1)[0] for route in self.templated})
        self._matched: dict[str, tuple[ComputeRoute, dict[str, Any]]] = {}
        """Paths matched to a templated route already, with their parameters: a dictionary look-up
        instead of each route's regular expression."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._match(scope) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        await route.app(scope, receive, send)

    def _match(self, scope: Scope) -> ComputeRoute | None:
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

    def _match_templated(self, path: str) -> tuple[ComputeRoute, dict[str, Any]] | None:
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
