"""Logging: one JSON object a line, carrying the id of the request being served, for every logger
(the service's and uvicorn's alike); or plain text lines. Either way a line is one record: a
newline or other control character a client put in a path cannot start a forged line (JSON
escapes them; the text format writes them as ``\\n``, ``\\x1b``...).

Lines are written in batches (``LineBatches``): a line written and flushed on its own cost ~2 µs
of a ~100 µs request, one per request with the access log on."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, TextIO

import orjson

from app.core.config import Settings
from app.core.request_context import RequestContext, current_request

ACCESS_LOGGER = "torchfn.access"
ACCESS_MESSAGE = "%s %s %s %.2f ms"
"""An access record's message, from its method, path, status (an HTTP status, a gRPC status code's
name) and milliseconds."""
ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "function", "client", "protocol")
"""``extra`` fields of an access-log record that the JSON line carries."""


class JsonFormatter(logging.Formatter):
    _second: tuple[int, str] = (-1, "")
    """The last whole second formatted, and its text (formatting a time costs more than a line)."""

    def _time(self, created: float) -> str:
        whole = int(created)
        second, text = self._second
        if second != whole:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            self._second = (whole, text)
        return f"{text}.{int((created - whole) * 1000):03d}Z"

    def access_line(
        self,
        created: float,
        args: tuple[str, str, int | str, float],
        context: RequestContext,
        client: str | None,
        protocol: str,
    ) -> str:
        """What ``format`` makes of an access record (``app.telemetry.access_log``) about the
        request ``context``: the same line, without the record. ``args``: method, path, status
        and milliseconds."""
        method, path, status, milliseconds = args
        entry: dict[str, Any] = {
            "time": self._time(created),
            "level": "info",
            "logger": ACCESS_LOGGER,
            "message": ACCESS_MESSAGE % args,
        }
        if context.request_id:
            entry["request_id"] = context.request_id
        if context.trace_id:
            entry["trace_id"], entry["span_id"] = context.trace_id, context.span_id
        entry["method"] = method
        entry["path"] = path
        entry["status"] = status
        entry["duration_ms"] = round(milliseconds, 3)
        if context.function:
            entry["function"] = context.function
        if client is not None:
            entry["client"] = client
        entry["protocol"] = protocol
        return orjson.dumps(entry, default=str).decode()

    def format(self, record: logging.LogRecord) -> str:
        fields = record.__dict__
        entry: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = fields.get("request_id")
        if not request_id:
            context = current_request.get()
            request_id = context.request_id if context else None
        if request_id:
            entry["request_id"] = request_id
        context = current_request.get()  # tracing: the trace and span of the request, when it is traced
        if context is not None and context.trace_id:
            entry["trace_id"], entry["span_id"] = context.trace_id, context.span_id
        for name in ACCESS_FIELDS:
            value = fields.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def request_suffix() -> str:
    """What a text line about a request ends with: its id, and its trace's ids when it is traced."""
    context = current_request.get()
    if context is None:
        return ""
    if context.trace_id:
        return f" [request_id={context.request_id} trace_id={context.trace_id} span_id={context.span_id}]"
    return f" [request_id={context.request_id}]"


def _escape_table() -> dict[int, str]:
    controls = [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]
    table = {code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" for code in controls}
    table.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
    return table


_ESCAPES = _escape_table()
"""Every control character (C0, DEL, C1, and Unicode's line and paragraph separators) to its escape."""
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """One line a record with its control characters escaped; a traceback follows on lines of
    its own, each indented so that none can pass for a record."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return (super().formatMessage(record) + request_suffix()).translate(_ESCAPES)

    def formatException(self, ei: Any) -> str:  # noqa: N802
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    return "\n".join("    " + line.translate(_ESCAPES) for line in text.split("\n"))


BATCH_S = 0.05
"""Longest a line waits in its batch before it is written."""
BATCH_BYTES = 64 * 1024
"""A batch this large is written at once."""


class LineBatches(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes its lines in batches: at the latest ``BATCH_S`` after the
    first of them, at once when they reach ``BATCH_BYTES``, and at once for a record of level
    WARNING or above or from any logger but the access log (with the lines before it, in order):
    only the access lines, one per request, wait. Flushed when the process exits
    (``logging.shutdown``) and when the app's lifespan ends (``flush_log_lines``): a worker of
    several dies of the SIGTERM uvicorn raises again once it has stopped, without exit handlers."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._lines: list[str] = []
        self._size = 0
        self._due = threading.Event()
        self._writer: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """Called with the handler's lock held (``Handler.handle``)."""
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._add(line, record.levelno >= logging.WARNING or record.name != ACCESS_LOGGER)

    def emit_line(self, line: str) -> None:
        """Batch a line of level INFO formatted already (``app.telemetry.access_log``), as
        ``handle`` would batch its record."""
        with self.lock:  # type: ignore[union-attr]
            self._add(line + self.terminator, False)

    def _add(self, line: str, at_once: bool) -> None:
        self._lines.append(line)
        self._size += len(line)
        if at_once or self._size >= BATCH_BYTES:
            self._write()
        elif len(self._lines) == 1:
            self._wake_writer()

    def _wake_writer(self) -> None:
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(target=self._write_batches, name="log-lines", daemon=True)
            self._writer.start()
        self._due.set()

    def _write_batches(self) -> None:
        while True:
            self._due.wait()
            self._due.clear()
            time.sleep(BATCH_S)
            self.flush()

    def _write(self) -> None:
        if self._lines:
            lines, self._lines, self._size = self._lines, [], 0
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": "log lines lost"}))

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()


def flush_log_lines() -> None:
    """Write the lines waiting in batches (``LineBatches``) now."""
    for logger in (logging.getLogger(), logging.getLogger(ACCESS_LOGGER)):
        for handler in logger.handlers:
            handler.flush()


def logging_config(settings: Settings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the server process (uvicorn applies it in every worker)."""
    formatter: dict[str, Any] = {
        "()": f"{__name__}.{'JsonFormatter' if settings.log_format == 'json' else 'TextFormatter'}"
    }
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"stderr": {"()": f"{__name__}.LineBatches", "formatter": "default", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": True},
        },
    }
