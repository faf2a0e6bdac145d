"""Cuts off a body that stops arriving: one watchdog per event loop sweeps every body being read,
so watching one costs a set insertion (a timer per request, armed and cancelled, cost ~3 µs of
the hot path)."""

from __future__ import annotations

import asyncio
import math
import time
import weakref


class Watch:
    """One body being read: its task, its timeout and when data last came."""

    __slots__ = ("_watchdog", "fired", "last_data", "seconds", "task")

    def __init__(self, watchdog: _IdleWatchdog, seconds: float) -> None:
        self._watchdog = watchdog
        self.task = asyncio.current_task()
        self.seconds = seconds
        self.last_data = time.monotonic()
        self.fired = False

    def saw_data(self) -> None:
        self.last_data = time.monotonic()

    def stop(self) -> None:
        self._watchdog.watches.discard(self)

    def forgive(self) -> None:
        """Take back the cancellation the watchdog caused, so the task can answer 408."""
        if self.task is not None:
            self.task.uncancel()


class _IdleWatchdog:
    """Cancels the task reading a body once no body data has arrived for its ``seconds``.

    One per event loop: a single chain of timers sweeps every body being read, so watching one
    costs a set insertion (a timer per request, armed and cancelled, cost ~3 µs of the hot path).
    The sweep runs every eighth of the shortest timeout watched (5 ms to 1 s), so a stalled body
    is cut off at most that much late; the chain ends at a sweep that finds nothing to watch. The
    watchdog holds neither its loop nor a timer handle (the registry of watchdogs is keyed by the
    loop, which must stay free to go): a superseded chain learns it from the generation it carries.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        self.watches: set[Watch] = set()
        self._period = math.inf
        self._generation = 0

    def start(self, seconds: float) -> Watch:
        watch = Watch(self, seconds)
        self.watches.add(watch)
        period = min(max(seconds / 8, 0.005), 1.0)
        if period < self._period:  # no chain running, or one too slow for this timeout
            self._period = period
            self._generation += 1
            self._schedule()
        return watch

    def _schedule(self) -> None:
        loop = self._loop()
        if loop is not None:
            loop.call_later(self._period, self._sweep, self._generation)

    def _sweep(self, generation: int) -> None:
        if generation != self._generation:
            return  # superseded by a faster chain
        now = time.monotonic()
        for watch in [w for w in self.watches if now - w.last_data >= w.seconds]:
            self.watches.discard(watch)
            if watch.task is not None:
                watch.fired = True
                watch.task.cancel()
        if self.watches:
            self._schedule()
        else:
            self._period = math.inf


_watchdogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _IdleWatchdog] = weakref.WeakKeyDictionary()


def watch_body(seconds: float) -> Watch:
    """Watch the body the current task reads: the task is cancelled once no data has come for
    ``seconds`` (``Watch.fired`` then says why)."""
    loop = asyncio.get_running_loop()
    watchdog = _watchdogs.get(loop)
    if watchdog is None:
        watchdog = _watchdogs[loop] = _IdleWatchdog(loop)
    return watchdog.start(seconds)
