"""The access log: one record per request, whatever its transport, with the facts the road set."""

from __future__ import annotations

import logging

from app.core.logs import ACCESS_LOGGER
from app.core.request_context import RequestContext

access_logger = logging.getLogger(ACCESS_LOGGER)


def log_access(
    method: str,
    path: str,
    status: int | str,
    seconds: float,
    context: RequestContext,
    client: str | None,
    protocol: str = "http",
) -> None:
    """One access-log record. Built with ``makeRecord`` and handed to the handlers directly:
    ``logger.info`` would also walk the stack for the caller's file and line, a third of the cost.
    ``protocol``: the transport (``http``, ``grpc``); ``status``: its status (an HTTP status, a gRPC
    status code's name)."""
    milliseconds = seconds * 1000
    record = access_logger.makeRecord(
        ACCESS_LOGGER,
        logging.INFO,
        __file__,
        0,
        "%s %s %s %.2f ms",
        (method, path, status, milliseconds),
        None,
        extra={
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(milliseconds, 3),
            "function": context.function or None,
            "client": client,
            "protocol": protocol,
        },
    )
    access_logger.handle(record)
