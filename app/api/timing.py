"""Per-request deadline header in, Server-Timing header out."""

from __future__ import annotations

import functools
import math

from app.api.headers import TIMEOUT_HEADER
from app.compute.batching import Served
from app.compute.jobs import Result
from app.core.errors import InvalidRequest


def request_timeout(raw: str | None) -> float | None:
    """Seconds the client is willing to wait for compute (``X-Request-Timeout``), if it says."""
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidRequest.at(("header", TIMEOUT_HEADER), "must be a positive number of seconds", "invalid_header")
    return seconds


def server_timing(served: Served[Result]) -> str:
    """How the request was served: queue wait, compute time (ms) and the batch it shared."""
    return f"queue;dur={served.queue_wait * 1000:.3f}, {_batch_timing(served.compute_time, served.batch_size)}"


@functools.lru_cache(maxsize=64)
def _batch_timing(compute_time: float, batch_size: int) -> str:
    """The part every request of a batch shares: formatted once per batch, not once per request."""
    return f'compute;dur={compute_time * 1000:.3f}, batch;desc="size={batch_size}"'
