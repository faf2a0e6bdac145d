"""One place that turns every error into the service's JSON error body. Never a traceback."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.compute.batching import ClientGone
from app.core.errors import (
    BodyTimeout,
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
_MAX_MESSAGE = 500
_MAX_NAME = 64
_MAX_LOC_PARTS = 12


def _short(part: str | int) -> str | int:
    """Field names come from the client: never echo a huge one back."""
    return part if isinstance(part, int) or len(part) <= _MAX_NAME else part[:_MAX_NAME] + "..."


def status_of(error: ServiceError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def error_response(
    status: int, code: str, problems: list[Problem], max_details: int, headers: dict[str, str] | None = None
) -> Response:
    shown = [
        Problem(tuple(_short(part) for part in p.loc[:_MAX_LOC_PARTS]), p.msg[:_MAX_MESSAGE], p.type[:_MAX_NAME])
        for p in problems[:max_details]
    ]
    message = "; ".join(f"{'.'.join(map(str, p.loc))}: {p.msg}" for p in shown) or code
    body = {
        "error": code,
        "message": message[:_MAX_MESSAGE],
        "details": [{"loc": list(p.loc), "msg": p.msg, "type": p.type} for p in shown],
        "truncated": len(problems) > len(shown),
    }
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def status_headers(status: int) -> dict[str, str] | None:
    """503 says when to retry; 408 closes the connection (the rest of the body may still come)."""
    if status == 503:
        return {"Retry-After": "1"}
    return {"Connection": "close"} if status == 408 else None


def max_details(request: Request) -> int:
    settings = getattr(request.app.state, "settings", None)
    return settings.max_reported_errors if settings is not None else 10


async def _service_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ServiceError)
    status = status_of(error)
    if isinstance(error, DeviceFailure):
        logger.error("device failure: %s", error)
    headers = status_headers(status)
    return error_response(status, error.code, error.problems, max_details(request), headers)


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    problems = [Problem(tuple(e.get("loc", ())), str(e.get("msg", "")), str(e.get("type", ""))) for e in error.errors()]
    return error_response(422, "invalid_request", problems, max_details(request))


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    problems = [Problem(("request",), str(error.detail), code)]
    return error_response(error.status_code, code, problems, max_details(request), dict(error.headers or {}))


async def _out_of_memory(request: Request, error: Exception) -> Response:
    """The host ran out of memory outside the compute layer (decoding, encoding): retry later."""
    logger.warning("out of memory on %s %s", request.method, request.url.path)
    overloaded = Overloaded.at(("service",), "the server ran out of memory; retry later or send less", "out_of_memory")
    return await _service_error(request, overloaded)


async def _unexpected(request: Request, error: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", [Problem(("server",), "internal error", "internal_error")], 1)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(MemoryError, _out_of_memory)
    app.add_exception_handler(Exception, _unexpected)
