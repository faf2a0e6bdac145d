"""Log lines about a request carry its ids (``app/core/logs.py``): its request id, and its trace's
ids when it is traced, in both formats, tracebacks included."""

from __future__ import annotations

import logging
import sys

import orjson

from app.core.logs import JsonFormatter, TextFormatter
from app.core.request_context import RequestContext, current_request

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def record(exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            info = sys.exc_info()
    return logging.LogRecord("app.test", logging.ERROR, __file__, 1, "it failed: %s", ("why",), info)


def formatted(formatter: logging.Formatter, context: RequestContext | None, exc: bool = False) -> str:
    token = current_request.set(context)
    try:
        return formatter.format(record(exc))
    finally:
        current_request.reset(token)


def test_json_lines_carry_the_trace_of_a_traced_request_tracebacks_included() -> None:
    line = orjson.loads(formatted(JsonFormatter(), RequestContext("rid-1", "relu", TRACE, SPAN), exc=True))
    assert (line["request_id"], line["trace_id"], line["span_id"]) == ("rid-1", TRACE, SPAN)
    assert "ValueError: boom" in line["exception"]
    untraced = orjson.loads(formatted(JsonFormatter(), RequestContext("rid-2")))
    assert untraced["request_id"] == "rid-2"
    assert "trace_id" not in untraced
    assert "span_id" not in untraced
    outside = orjson.loads(formatted(JsonFormatter(), None))
    assert not {"request_id", "trace_id", "span_id"} & set(outside)


def test_text_lines_about_a_request_end_with_its_ids() -> None:
    traced = formatted(TextFormatter(), RequestContext("rid-1", "", TRACE, SPAN), exc=True).split("\n")
    assert traced[0].endswith(f"it failed: why [request_id=rid-1 trace_id={TRACE} span_id={SPAN}]")
    assert all(line.startswith("    ") for line in traced[1:])  # the traceback, indented below the line
    assert any("ValueError: boom" in line for line in traced[1:])
    assert formatted(TextFormatter(), RequestContext("rid-2")).endswith("it failed: why [request_id=rid-2]")
    assert formatted(TextFormatter(), None).endswith("it failed: why")
