"""The service's own error document, ``{"error", "message", "details", "truncated"}``: what every
refusal outside the Open Inference Protocol is written in. Field names and messages come from the
client, so each is shortened before it is echoed back."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from app.core.errors import Problem

MAX_MESSAGE = 500
_MAX_NAME = 64
_MAX_LOC_PARTS = 12


def _short(part: str | int) -> str | int:
    return part if isinstance(part, int) or len(part) <= _MAX_NAME else part[:_MAX_NAME] + "..."


def error_document(code: str, problems: Sequence[Problem], max_details: int) -> bytes:
    """At most ``max_details`` problems, each shortened; ``truncated`` says whether more were found."""
    shown = [
        Problem(tuple(_short(part) for part in p.loc[:_MAX_LOC_PARTS]), p.msg[:MAX_MESSAGE], p.type[:_MAX_NAME])
        for p in problems[:max_details]
    ]
    message = "; ".join(f"{'.'.join(map(str, p.loc))}: {p.msg}" for p in shown) or code
    return orjson.dumps(
        {
            "error": code,
            "message": message[:MAX_MESSAGE],
            "details": [{"loc": list(p.loc), "msg": p.msg, "type": p.type} for p in shown],
            "truncated": len(problems) > len(shown),
        }
    )
