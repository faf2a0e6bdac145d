"""Errors under ``/v2`` in the Open Inference Protocol's format: ``{"error": "..."}``.

The service's own handlers stay in charge of every other path: each is wrapped so that a request
under ``/v2`` gets the protocol's body and status codes (400 for a bad request where the rest of
the service says 422; 404 for an unknown model), everything else the service's error format.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.api.errors import max_details, status_headers, status_of
from app.core.errors import DeviceFailure, InvalidRequest, Problem, ServiceError

logger = logging.getLogger(__name__)

PREFIX = "/v2"
_MAX_MESSAGE = 1000
_MAX_PART = 64

Handler = Callable[[Request, Exception], Awaitable[Response]]


def is_oip(request: Request) -> bool:
    path = request.url.path
    return path == PREFIX or path.startswith(PREFIX + "/")


def oip_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps({"error": message[:_MAX_MESSAGE]})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _where(loc: Sequence[str | int]) -> str:
    parts = [str(part)[:_MAX_PART] for part in loc if part != "body"]
    return ".".join(parts)


def problems_message(problems: Sequence[Problem], max_details: int) -> str:
    shown = [f"{_where(p.loc)}: {p.msg}" if _where(p.loc) else p.msg for p in problems[:max_details]]
    more = len(problems) - len(shown)
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def oip_status(error: ServiceError) -> int:
    """The protocol's status for a service error: a request wrong in content is a 400."""
    status = status_of(error)
    return 400 if status == 422 or isinstance(error, InvalidRequest) else status


async def _service_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ServiceError)
    status = oip_status(error)
    if isinstance(error, DeviceFailure):
        logger.error("device failure: %s", error)
    headers = status_headers(status)
    return oip_error(status, problems_message(error.problems, max_details(request)), headers)


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    problems = [Problem(tuple(e.get("loc", ())), str(e.get("msg", "")), str(e.get("type", ""))) for e in error.errors()]
    return oip_error(400, problems_message(problems, max_details(request)))


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    return oip_error(error.status_code, str(error.detail), dict(error.headers or {}))


async def _unexpected(request: Request, error: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return oip_error(500, "internal error")


def _under_v2(oip_handler: Handler, service_handler: Handler) -> Handler:
    async def handler(request: Request, error: Exception) -> Response:
        if is_oip(request):
            return await oip_handler(request, error)
        return await service_handler(request, error)

    return handler


def install_oip_error_format(app: FastAPI) -> None:
    """Call after the service's own handlers are installed: they keep every other path."""
    for error_class, oip_handler in (
        (ServiceError, _service_error),
        (RequestValidationError, _validation_error),
        (StarletteHTTPException, _http_error),
        (Exception, _unexpected),
    ):
        service_handler = app.exception_handlers[error_class]
        app.exception_handlers[error_class] = _under_v2(oip_handler, service_handler)  # type: ignore[arg-type]
