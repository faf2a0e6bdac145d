"""The warnings torch gives while computing one request, collected for its reply.

``warnings.catch_warnings`` swaps the process-wide filter list and ``showwarning`` hook: two
compute threads using it at once restore each other's state in the wrong order. Instead, while
at least one compute call is collecting, one shared ``always`` filter and one dispatching hook
are installed (reference-counted under a lock); the hook hands each warning to the collector of
the thread that raised it (a ``threading.local``), and any other thread's warning to the hook
that was there before. ``always``: a torch user sees a warning on every call in a fresh
process; the default filter would show each only once per process, i.e. to one client.

Warnings torch gives only once per process (C++ ``TORCH_WARN_ONCE``) reach the first request only.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO, cast

_ALWAYS: Any = ("always", None, Warning, None, 0)
"""The filter ``warnings.simplefilter("always")`` puts first."""

_lock = threading.Lock()
_depth = 0
_previous_hook: Any = None
_restore_at: int | None = None
"""Where an identical filter stood before ours took its place (``simplefilter`` moves it first)."""
_local = threading.local()
_SHOW_AT_IMPORT = warnings.showwarning


def _dispatch(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    collected: list[str] | None = getattr(_local, "collected", None)
    if collected is not None:
        text = str(message)
        if text not in collected:
            collected.append(text)
        return
    hook = _previous_hook or _SHOW_AT_IMPORT
    hook(message, category, filename, lineno, file, line)


def _install() -> None:
    global _depth, _previous_hook, _restore_at
    with _lock:
        if _depth == 0:
            _previous_hook = warnings.showwarning
            warnings.showwarning = _dispatch
            filters = cast(list[Any], warnings.filters)  # documented as the list itself
            _restore_at = filters.index(_ALWAYS) if _ALWAYS in filters else None
            warnings.simplefilter("always")  # first, and the registries of warnings shown once are reset
        _depth += 1


def _uninstall() -> None:
    """Put the filters back as they were. The registries need no reset: while ``always`` stood
    first, no warning was recorded as shown."""
    global _depth, _previous_hook, _restore_at
    with _lock:
        _depth -= 1
        if _depth == 0:
            if warnings.showwarning is _dispatch:
                warnings.showwarning = _previous_hook
            _previous_hook = None
            filters = cast(list[Any], warnings.filters)  # documented as the list itself
            if _ALWAYS in filters:
                filters.remove(_ALWAYS)
            if _restore_at is not None:
                filters.insert(_restore_at, _ALWAYS)
                _restore_at = None


@contextmanager
def collecting() -> Iterator[list[str]]:
    """Collect the text of every warning this thread raises in the block, each text once."""
    collected: list[str] = []
    outer = getattr(_local, "collected", None)
    _local.collected = collected
    _install()
    try:
        yield collected
    finally:
        _uninstall()
        _local.collected = outer
