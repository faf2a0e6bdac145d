"""Process-wide tuning: the interpreter, for a server that shares the GIL between its event loop and
its compute thread (both measured under load on one core, bench/throughput.py); the allocator's
freed and free pages (its tunables, and a trim when idle); the open-files limit the connection
cap needs."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import platform
import resource
import sys
from collections.abc import Mapping

from app.core.config import Settings


def tune_process(settings: Settings) -> None:
    """Call once start-up has imported and built everything.

    - A short GIL switch interval: with Python's 5 ms default the loop and the compute thread
      stall each other (600 against 1,500 small requests/s).
    - ``gc.freeze``: torch and the app leave ~200k long-lived objects that every full collection
      would walk again (a ~100 ms stall every ~2,000 requests, the p99); freezing them after
      start-up, with a larger young generation, removes the stalls.

    The allocator's own settings are made before the interpreter starts (``allocator_environment``).
    """
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000.0)
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
"""Blocks up to this size (the largest glibc would choose by itself) come from the heap, where a
freed block is used again, rather than from a fresh mapping each time."""
TRIM_THRESHOLD_BYTES = 2**31 - 1
"""The free heap top glibc would give back by itself on a free: the most it takes, i.e. never;
``trim_memory`` gives it back instead."""
TUNABLES = "GLIBC_TUNABLES"
ALLOCATOR_TUNABLES = (
    f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD_BYTES}:glibc.malloc.trim_threshold={TRIM_THRESHOLD_BYTES}"
)
"""glibc's allocator keeps the blocks requests free for the next request instead of returning them
to the system at once. By default a large block (a body, a tensor, a reply) is mapped and unmapped
on each use, and a freed heap top is trimmed as soon as it passes the trim threshold: the next
request then page-faults all of it in again. That cost 1,350 to 1,650 page faults in a
1M-element binary relu (1 to 2 ms of its 5.5 to 7 ms) and 6,000 more than the in-process work in
a 1M-element JSON relu; with freed blocks kept, none and none. What is kept goes back to the
system once the memory budget has been idle a while (``trim_memory``). glibc reads its tunables
when a process starts, so the server command sets them by starting again (``app.serve``)."""


def allocator_environment(environ: Mapping[str, str]) -> dict[str, str] | None:
    """``environ`` with the allocator's tunables added, when this is glibc and they are not set yet
    (a process started with them returns None, as does any other C library)."""
    if platform.libc_ver()[0] != "glibc":
        return None
    current = environ.get(TUNABLES, "")
    if "glibc.malloc.mmap_threshold" in current:
        return None
    return {**environ, TUNABLES: f"{current}:{ALLOCATOR_TUNABLES}" if current else ALLOCATOR_TUNABLES}


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, found once (``find_library`` runs ``ldconfig``: milliseconds)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "malloc_trim") else None


def trim_memory() -> None:
    """Give the allocator's free pages back to the system now (glibc's ``malloc_trim``, which
    releases the free pages of every arena). The memory budget calls it once nothing has been held
    for a while after large requests: their bodies and parsed numbers leave free pages that would
    otherwise stay resident."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


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
