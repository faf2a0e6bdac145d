"""Whether this process has been asked to stop. A signal reaches the whole process, so this is
process-wide state: a SIGTERM or SIGINT marks the process as draining, and readiness reads it."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

_draining = threading.Event()
_draining_since: list[float] = []
_when_draining: list[Callable[[], None]] = []
_abandoned = threading.Event()
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def begin_draining() -> None:
    """From now on readiness fails, so load balancers stop sending while in-flight work finishes."""
    if _draining.is_set():
        return
    _draining_since[:] = [time.monotonic()]  # this drain's start (a test may have ended one before)
    _draining.set()
    for callback in list(_when_draining):
        callback()


def when_draining(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` once the process begins draining (at once if it has), on the thread that
    begins it (a signal handler's: the callback must only hand work to its event loop, e.g. with
    ``loop.call_soon_threadsafe``). Returns a function that forgets it."""
    _when_draining.append(callback)
    if _draining.is_set():
        callback()

    def forget() -> None:
        if callback in _when_draining:
            _when_draining.remove(callback)

    return forget


def is_draining() -> bool:
    return _draining.is_set()


def shutdown_time_left(grace: float) -> float:
    """Seconds left of the ``grace`` period that began with the stop signal (all of it when
    no signal came: the server is being stopped some other way)."""
    if not _draining_since:
        return grace
    return max(0.0, _draining_since[0] + grace - time.monotonic())


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


def abandon_running_work() -> None:
    """A computation was still running when the service stopped: the process must not wait for
    it on its way out (``exit_status`` tells the server command to exit at once)."""
    _abandoned.set()


def work_abandoned() -> bool:
    return _abandoned.is_set()
