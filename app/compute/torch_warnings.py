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
from typing import Any, TextIO

_ALWAYS: Any = ("always", None, Warning, None, 0)

_lock = threading.Lock()
_depth = 0
_previous_hook: Any = None
_local = threading.local()


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
    hook = _previous_hook
    if hook is None or hook is warnings._showwarning_orig:  # type: ignore[attr-defined]
        warnings._showwarnmsg_impl(  # type: ignore[attr-defined]
            warnings.WarningMessage(message, category, filename, lineno, file, line)
        )
    else:
        hook(message, category, filename, lineno, file, line)


def _install() -> None:
    global _depth, _previous_hook
    with _lock:
        if _depth == 0:
            _previous_hook = warnings.showwarning
            warnings.showwarning = _dispatch
            warnings.filters.insert(0, _ALWAYS)  # type: ignore[attr-defined]
            warnings._filters_mutated()  # type: ignore[attr-defined]
        _depth += 1


def _uninstall() -> None:
    global _depth, _previous_hook
    with _lock:
        _depth -= 1
        if _depth == 0:
            if warnings.showwarning is _dispatch:
                warnings.showwarning = _previous_hook
            _previous_hook = None
            if _ALWAYS in warnings.filters:
                warnings.filters.remove(_ALWAYS)  # type: ignore[attr-defined]
            warnings._filters_mutated()  # type: ignore[attr-defined]


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
