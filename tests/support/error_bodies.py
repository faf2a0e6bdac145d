"""What every refusal of the service's own protocol must look like, and what it may cost."""

from __future__ import annotations

from typing import Any

import orjson

FAST = 0.1
"""CPU seconds a refusal may take when the request itself is small: CPU time, not wall-clock time,
which a loaded machine stretches."""
SLOW = 1.0
"""CPU seconds a refusal may take when the request itself is huge (megabytes to parse)."""
MAX_ERROR_BYTES = 4096


def check_error_body(raw: bytes, status: int) -> dict[str, Any]:
    """The service's error format, and nothing a client should never see."""
    assert len(raw) < MAX_ERROR_BYTES, f"error body of {len(raw)} bytes: {raw[:300]!r}..."
    text = raw.decode("utf-8")
    assert "Traceback" not in text
    assert 'File "' not in text
    body = orjson.loads(raw)
    assert isinstance(body, dict)
    assert set(body) == {"error", "message", "details", "truncated"}, body
    assert isinstance(body["error"], str)
    assert body["error"]
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["truncated"], bool)
    assert isinstance(body["details"], list)
    for detail in body["details"]:
        assert isinstance(detail, dict)
        assert set(detail) == {"loc", "msg", "type"}, detail
        assert isinstance(detail["loc"], list)
        assert all(isinstance(part, (str, int)) for part in detail["loc"])
        assert isinstance(detail["msg"], str)
        assert isinstance(detail["type"], str)
    if status not in (404, 405):
        assert body["details"], "a refusal must say what is wrong"
    return body
