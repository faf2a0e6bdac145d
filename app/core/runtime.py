"""Process-wide tuning: the interpreter, for a server that shares the GIL between its event loop and
its compute thread (both measured under load on one core, bench/throughput.py), and the
open-files limit the connection cap needs. The allocator's own are in ``allocator.py``."""

from __future__ import annotations

import gc
import resource
import sys

from app.core.config import Settings


def tune_process(settings: Settings) -> None:
    """Call once start-up has imported and built everything.

    - A short GIL switch interval: with Python's 5 ms default the loop and the compute thread
      stall each other (600 against 1,500 small requests/s).
    - ``gc.freeze``: torch and the app leave ~200k long-lived objects that every full collection
      would walk again (a ~100 ms stall every ~2,000 requests, the p99); freezing them after
      start-up, with a larger young generation, removes the stalls.

    The allocator's own settings are made before the interpreter starts
    (``app.core.allocator.allocator_environment``).
    """
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000.0)
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


SPARE_DESCRIPTORS = 256
"""Descriptors kept for everything but client connections: the listening socket, libraries,
log and metrics files, pipes, the supervisor's sockets to its workers."""


def fit_open_files_limit(max_connections: int) -> str | None:
    """Raise the soft open-files limit to the hard one when ``max_connections`` and the spare
    descriptors do not fit under it; the problem, when they do not fit even then."""
    needed = max_connections + SPARE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    if hard != resource.RLIM_INFINITY and hard < needed:
        return (
            f"{max_connections} connections and {SPARE_DESCRIPTORS} spare descriptors need an "
            f"open-files limit of {needed}, but the hard limit is {hard}"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed if hard == resource.RLIM_INFINITY else hard, hard))
    return None
