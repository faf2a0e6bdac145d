"""OpenAPI descriptions of the error responses, shared by the routes."""

from __future__ import annotations

from typing import Any

from app.protocols.native.models import ErrorResponse

_DESCRIPTIONS = {
    400: "Malformed JSON or an unreadable body.",
    404: "No such function.",
    408: "The body stopped arriving before its declared length (the connection is then closed).",
    413: "The body or a tensor exceeds a configured limit.",
    415: "The body is not sent as application/json.",
    422: "The request is valid JSON but wrong: the details name each offending field.",
    499: "The client went away before its request was computed (logged; the client never reads it).",
    500: "The device failed (no traceback is ever returned).",
    503: "The service is not ready or the device is out of memory; retry after `Retry-After`.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse, "description": _DESCRIPTIONS[status]} for status in statuses}


COMPUTE_ERRORS = error_responses(400, 408, 413, 415, 422, 499, 500, 503)
