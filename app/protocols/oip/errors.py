"""The Open Inference Protocol's error body, ``{"error": "..."}``: the format the error pipeline
(``app.api.errors``) writes every refusal under ``/v2`` in. The protocol has no 422: a request
wrong in content is a 400."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from starlette.responses import Response

from app.api.errors import Refusal
from app.core.errors import Problem

PREFIX = "/v2"
_MAX_MESSAGE = 1000
_MAX_PART = 64


def _where(loc: Sequence[str | int]) -> str:
    parts = [str(part)[:_MAX_PART] for part in loc if part != "body"]
    return ".".join(parts)


def problems_message(problems: Sequence[Problem], max_details: int) -> str:
    shown = [f"{_where(p.loc)}: {p.msg}" if _where(p.loc) else p.msg for p in problems[:max_details]]
    more = len(problems) - len(shown)
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def oip_format(refusal: Refusal, max_details: int) -> Response:
    status = 400 if refusal.status == 422 else refusal.status
    body = orjson.dumps({"error": problems_message(refusal.problems, max_details)[:_MAX_MESSAGE]})
    return Response(body, status_code=status, media_type="application/json", headers=refusal.headers)
