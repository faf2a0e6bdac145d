"""The Open Inference Protocol's error message: every problem of a refusal in one line, naming
the offending fields (REST writes it as ``{"error": "..."}``, gRPC as the status's details)."""

from __future__ import annotations

from collections.abc import Sequence

from app.core.errors import Problem

PREFIX = "/v2"
"""Where the protocol's REST routes live."""
MAX_MESSAGE = 1000
_MAX_PART = 64


def _where(loc: Sequence[str | int]) -> str:
    parts = [str(part)[:_MAX_PART] for part in loc if part != "body"]
    return ".".join(parts)


def problems_message(problems: Sequence[Problem], max_details: int) -> str:
    shown = [f"{_where(p.loc)}: {p.msg}" if _where(p.loc) else p.msg for p in problems[:max_details]]
    more = len(problems) - len(shown)
    return ("; ".join(shown) + (f" (and {more} more)" if more > 0 else ""))[:MAX_MESSAGE]
