"""One error pipeline for HTTP: every refusal (a domain error, validation, limits, auth, 404/405,
health, anything unexpected) becomes one ``Refusal`` (status, code, problems, headers), and the
protocol the path belongs to writes its body. Never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import URL
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from app.core.errors import (
    BodyTimeout,
    ClientGone,
    DeviceFailure,
    InvalidRequest,
    MalformedRequest,
    Overloaded,
    PluginFailure,
    Problem,
    ServiceError,
    TooLarge,
    UnknownFunction,
    UnsupportedMediaType,
)
from app.protocols.native.errors import error_document
from app.protocols.oip.errors import PREFIX as OIP_PREFIX
from app.protocols.oip.errors import problems_message
from app.telemetry.request_trace import note_failure

logger = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[ServiceError], int] = {
    ClientGone: 499,
    MalformedRequest: 400,
    BodyTimeout: 408,
    UnknownFunction: 404,
    TooLarge: 413,
    UnsupportedMediaType: 415,
    InvalidRequest: 422,
    Overloaded: 503,
    DeviceFailure: 500,
    PluginFailure: 500,
}
JSON = "application/json"


@dataclass(frozen=True)
class Refusal:
    """What went wrong, before any protocol has written it down."""

    status: int
    code: str
    problems: Sequence[Problem]
    headers: dict[str, str] | None = None


ErrorFormat = Callable[[Refusal, int], Response]
"""Writes a refusal in a protocol's error body, listing at most the given number of problems."""


def status_of(error: ServiceError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def status_headers(status: int) -> dict[str, str] | None:
    """503 says when to retry; 408 closes the connection (the rest of the body may still come)."""
    if status == 503:
        return {"Retry-After": "1"}
    return {"Connection": "close"} if status == 408 else None


def service_format(refusal: Refusal, max_details: int) -> Response:
    """The service's own error document (``app.protocols.native.errors``)."""
    body = error_document(refusal.code, refusal.problems, max_details)
    return Response(body, status_code=refusal.status, media_type=JSON, headers=refusal.headers)


def oip_format(refusal: Refusal, max_details: int) -> Response:
    """The Open Inference Protocol's ``{"error": "..."}``. The protocol has no 422: a request wrong
    in content is a 400."""
    status = 400 if refusal.status == 422 else refusal.status
    body = orjson.dumps({"error": problems_message(refusal.problems, max_details)})
    return Response(body, status_code=status, media_type=JSON, headers=refusal.headers)


def refusal_of(error: Exception) -> Refusal:
    """Every exception a request can end in, as a refusal."""
    if isinstance(error, ServiceError):
        status = status_of(error)
        if isinstance(error, DeviceFailure):
            logger.error("device failure: %s", error)
        return Refusal(status, error.code, error.problems, status_headers(status))
    if isinstance(error, RequestValidationError):
        problems = [
            Problem(tuple(e.get("loc", ())), str(e.get("msg", "")), str(e.get("type", ""))) for e in error.errors()
        ]
        return Refusal(422, "invalid_request", problems)
    if isinstance(error, StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        headers = dict(error.headers or {})
        message = str(error.detail)
        if error.status_code == 405 and headers.get("Allow"):
            message += f": use {' or '.join(headers['Allow'].split(', '))} for this path"
        return Refusal(error.status_code, code, [Problem(("request",), message, code)], headers)
    if isinstance(error, MemoryError):  # the host ran out outside the compute layer (decoding, encoding)
        logger.warning("out of memory while serving a request")
        problem = Problem(("service",), "the server ran out of memory; retry later or send less", "out_of_memory")
        return Refusal(503, Overloaded.code, [problem], status_headers(503))
    logger.error("unhandled error", exc_info=error)
    return Refusal(500, "internal_error", [Problem(("server",), "internal error", "internal_error")])


class ErrorPipeline:
    """Renders every refusal in the format of the protocol whose routes the path belongs to."""

    def __init__(self, max_details: int) -> None:
        self.protocol_formats: tuple[tuple[str, ErrorFormat], ...] = ((OIP_PREFIX, oip_format),)
        """(path prefix, format) of each protocol with an error body of its own; every other path
        gets the service's."""
        self.max_details = max_details

    def format_for(self, path: str) -> ErrorFormat:
        for prefix, error_format in self.protocol_formats:
            if path == prefix or path.startswith(prefix + "/"):
                return error_format
        return service_format

    def render(self, path: str, refusal: Refusal) -> Response:
        return self.format_for(path)(refusal, self.max_details)

    def response_to(self, path: str, error: Exception) -> Response:
        note_failure(error)  # tracing: the request's span records it (nothing when it is not traced)
        return self.render(path, refusal_of(error))

    async def handle(self, request: Request, error: Exception) -> Response:
        """The app's one exception handler."""
        if isinstance(error, StarletteHTTPException) and error.status_code == 404:
            twin = slash_twin(request)
            if twin is not None:
                return self.render(request.url.path, _redirect_to(twin))
        return self.response_to(request.url.path, error)

    def install(self, app: FastAPI) -> None:
        for error_class in (ServiceError, RequestValidationError, StarletteHTTPException, MemoryError, Exception):
            app.add_exception_handler(error_class, self.handle)
        # The router's own answer to a path with a trailing slash too many or too few is an empty
        # 307; the 404 it raises instead comes here, and ``handle`` answers a 307 that says why.
        app.router.redirect_slashes = False


def slash_twin(request: Request) -> dict[str, Any] | None:
    """For a path no route matched (a matched route leaves its ``endpoint`` in the scope), the
    scope of the same path with its trailing slash removed (or added) where a route takes that
    one; the test Starlette's router makes before its redirect."""
    scope = request.scope
    path: str = scope["path"]
    if "endpoint" in scope or path.rstrip("/") == scope.get("root_path", "").rstrip("/"):
        return None  # a route's own 404, or the root
    path = path.rstrip("/") if path.endswith("/") else path + "/"
    twin = {**scope, "path": path}
    if any(route.matches(twin)[0] != Match.NONE for route in request.app.router.routes):
        return twin
    return None


def _redirect_to(twin: dict[str, Any]) -> Refusal:
    path = twin["path"]
    slash = "without" if not path.endswith("/") else "with"
    problem = Problem(
        ("request",),
        f"use {path}, {slash} the trailing slash (this answer redirects there; a client that follows "
        "redirects sends the request again)",
        "trailing_slash",
    )
    return Refusal(307, "trailing_slash", [problem], {"Location": str(URL(scope=twin))})


def error_pipeline(request: Request) -> ErrorPipeline:
    pipeline: ErrorPipeline = request.app.state.errors
    return pipeline
