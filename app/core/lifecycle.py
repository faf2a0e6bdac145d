"""Whether this process has been asked to stop. A signal reaches the whole process, so this is
process-wide state: a SIGTERM or SIGINT marks the process as draining, and readiness reads it."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

_draining = threading.Event()
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def begin_draining() -> None:
    """From now on readiness fails, so load balancers stop sending while in-flight work finishes."""
    _draining.set()


def is_draining() -> bool:
    return _draining.is_set()


def drain_on_stop_signals() -> Callable[[], None]:
    """Make SIGTERM and SIGINT mark the process as draining before the server's own handler
    (uvicorn's, which stops accepting and waits for in-flight requests) runs. Returns a function
    that restores the previous handlers. Does nothing outside the main thread (e.g. under a test
    client), where signals cannot be handled."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}

    def handler(sig: int, frame: FrameType | None) -> None:
        begin_draining()
        chained = previous[signal.Signals(sig)]
        if callable(chained):
            chained(sig, frame)
        elif chained == signal.SIG_DFL:  # nobody else handles it: die of it as before
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    for sig in _STOP_SIGNALS:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
