"""glibc's allocator: its tunables, set before the interpreter starts, and its free pages given back
when the memory budget has been idle. Imports nothing of the service (the parse process uses it)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import platform
from collections.abc import Mapping

MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
"""Blocks up to this size (the largest glibc would choose by itself) come from the heap, where a
freed block is used again, rather than from a fresh mapping each time."""
TRIM_THRESHOLD_BYTES = 2**31 - 1
"""The free heap top glibc would give back by itself on a free: the most it takes, i.e. never;
``trim_memory`` gives it back instead."""
TUNABLES = "GLIBC_TUNABLES"
ARENAS = 2
"""Most allocation arenas: by default glibc gives each thread that allocates an arena of its own
(up to eight per core), and the decoding, encoding and compute threads each keep freed blocks in
theirs. Measured with four concurrent 34 MB JSON requests (gradients, reduction none): the
process's anonymous memory peaked at 1,060 MiB and kept 350 MiB after its trim with a dozen
arenas; 665 MiB and 100 MiB with two."""
ALLOCATOR_TUNABLES = (
    f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD_BYTES}:glibc.malloc.trim_threshold={TRIM_THRESHOLD_BYTES}"
    f":glibc.malloc.arena_max={ARENAS}"
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
    releases the free pages of every arena), once the garbage collector has freed what only cycles
    kept (a failed request's traceback holds its frames' arrays). The memory budget calls it once
    nothing has been held for a while after large requests: their bodies and parsed numbers leave
    free pages that would otherwise stay resident."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
