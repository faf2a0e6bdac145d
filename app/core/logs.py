"""Logging: one JSON object a line, carrying the id of the request being served, for every logger
(the service's and uvicorn's alike); or plain text lines. Either way a line is one record: a
newline or other control character a client put in a path cannot start a forged line (JSON
escapes them; the text format writes them as ``\\n``, ``\\x1b``...)."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from app.core.config import Settings
from app.core.request_context import current_request

ACCESS_LOGGER = "torchfn.access"
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

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = current_request.get()
        request_id = getattr(record, "request_id", None) or (context.request_id if context else None)
        if request_id:
            entry["request_id"] = request_id
        for name in ACCESS_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


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
        return super().formatMessage(record).translate(_ESCAPES)

    def formatException(self, ei: Any) -> str:  # noqa: N802
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    return "\n".join("    " + line.translate(_ESCAPES) for line in text.split("\n"))


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
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": True},
        },
    }
