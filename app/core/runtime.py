"""Process-wide interpreter tuning for a server that shares the GIL between its event loop and
its compute thread. Both were measured under load on one core (bench/throughput.py)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

from app.core.config import Settings


def tune_process(settings: Settings) -> None:
    """Call once start-up has imported and built everything.

    - A short GIL switch interval: with Python's 5 ms default the loop and the compute thread
      stall each other (600 against 1,500 small requests/s).
    - ``gc.freeze``: torch and the app leave ~200k long-lived objects that every full collection
      would walk again (a ~100 ms stall every ~2,000 requests, the p99); freezing them after
      start-up, with a larger young generation, removes the stalls.
    """
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000.0)
    return_freed_memory_to_the_system()
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 * 1024
"""glibc serves allocations from this size up with their own mappings, which free gives straight
back. Its default threshold grows to the largest block freed (up to 32 MiB), after which large
tensors come from the heap and stay resident: after a burst of large requests the process kept
a permanent high-water mark (measured: RSS stayed ~1.2 GiB above idle). A fixed threshold stops
that growth."""
TRIM_THRESHOLD = 4 * 1024 * 1024
"""Free memory at the top of the heap beyond this is given back."""


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def return_freed_memory_to_the_system() -> None:
    """Make glibc's allocator give freed memory back rather than keep a high-water mark (a no-op
    where the C library is not glibc)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def trim_memory() -> None:
    """Give the allocator's free pages back to the system now (glibc's ``malloc_trim``)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
