"""One memory budget for everything requests hold at once: bodies being read, tensors being
decoded, work being computed and replies being encoded.

Each request holds one ``Reservation`` from admission to reply, grown before each step that needs
more (the declared body, then what parsing it takes, then the job's estimate) and shrunk after.
A request that does not fit waits, in arrival order, for at most its wait; then it gets 503.
One that could never fit (more than the whole budget) gets 413 at once. Used on the event loop
only: no lock.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from app.core.errors import Loc, MemoryBusy, TooLarge


def _mib(size: int) -> str:
    """A size in MiB, or in KiB below a tenth of a MiB (where ``0.0 MiB`` would say nothing)."""
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 / 10 else f"{size / 2**10:.1f} KiB"


@dataclass(eq=False)
class _Waiter:
    extra: int
    future: asyncio.Future[None] = field(repr=False)


TRIM_AFTER_BYTES = 32 * 1024 * 1024
"""Once requests have held this much at once since the allocator last gave memory back, and then
nothing has been held for ``TRIM_IDLE_S``, it is asked to give back its free pages (``on_idle``);
a stream of small requests never asks."""
TRIM_IDLE_S = 1.0
"""How long nothing must be held before the trim: requests that follow each other sooner reuse
the freed pages (a trim between them made the next one page-fault its memory in again, 20 to
30 ms of a 1M-element JSON request)."""


class MemoryBudget:
    def __init__(self, limit: int, on_idle: Callable[[], None] | None = None, idle_s: float = TRIM_IDLE_S) -> None:
        """``on_idle``: run in a thread once nothing has been held for ``idle_s`` after large
        requests (the allocator's trim: what they freed would otherwise stay resident)."""
        if limit < 1:
            raise ValueError("the memory budget must be positive")
        self.limit = limit
        self.held = 0
        self._waiters: deque[_Waiter] = deque()
        self._on_idle = on_idle
        self._idle_s = idle_s
        self._peak = 0
        """The most held at once since the last ``on_idle``."""
        self._idle_since = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None

    def reservation(self) -> Reservation:
        return Reservation(self)

    def figures(self) -> dict[str, int]:
        """What ``/metrics`` reports: the limit, what is held, and what waiting requests ask for."""
        waiting = sum(waiter.extra for waiter in self._waiters if not waiter.future.done())
        return {"limit": self.limit, "held": self.held, "waiting": waiting}

    def _take(self, extra: int) -> bool:
        if not self._waiters and self.held + extra <= self.limit:
            self.held += extra
            self._peak = max(self._peak, self.held)
            return True
        return False

    def _give_back(self, size: int) -> None:
        self.held -= size
        if self.held == 0 and self._peak >= TRIM_AFTER_BYTES and self._on_idle is not None:
            loop = asyncio.get_running_loop()
            self._idle_since = loop.time()
            if self._idle_timer is None:
                self._idle_timer = loop.call_later(self._idle_s, self._trim_when_idle)
        while self._waiters:
            first = self._waiters[0]
            if first.future.done():  # timed out or cancelled meanwhile
                self._waiters.popleft()
                continue
            if self.held + first.extra > self.limit:
                break
            self._waiters.popleft()
            self.held += first.extra
            self._peak = max(self._peak, self.held)
            first.future.set_result(None)

    def _trim_when_idle(self) -> None:
        """Trim if nothing has been held since the last release; else wait for the next idle moment
        (the peak stays recorded, so that release arms the timer again)."""
        self._idle_timer = None
        if self.held or self._on_idle is None:
            return
        loop = asyncio.get_running_loop()
        still_to_wait = self._idle_since + self._idle_s - loop.time()
        if still_to_wait > 0:  # busy and idle again meanwhile
            self._idle_timer = loop.call_later(still_to_wait, self._trim_when_idle)
            return
        self._peak = 0
        loop.run_in_executor(None, self._on_idle)

    async def _wait_for(self, extra: int, wait: float) -> bool:
        waiter = _Waiter(extra, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), wait)
        except TimeoutError:
            self._withdraw(waiter)
            return False
        except asyncio.CancelledError:
            self._withdraw(waiter)
            raise
        return True

    def _withdraw(self, waiter: _Waiter) -> None:
        if waiter.future.done() and not waiter.future.cancelled():
            self._give_back(waiter.extra)  # granted just as the wait ended: hand it on
        else:
            waiter.future.cancel()
            self._give_back(0)  # those queued behind it may fit now


class Reservation:
    """The bytes one request holds; released on ``release`` (or leaving ``async with``)."""

    __slots__ = ("_budget", "size")

    def __init__(self, budget: MemoryBudget) -> None:
        self._budget = budget
        self.size = 0

    def check_possible(self, size: int, loc: Loc, what: str) -> None:
        """413 when ``size`` bytes could never be held: more than the whole budget."""
        limit = self._budget.limit
        if size > limit:
            raise TooLarge.at(
                loc, f"{what} needs about {_mib(size)}, more than the memory budget of {_mib(limit)}", "memory_limit"
            )

    def resize_now(self, size: int) -> bool:
        """Hold ``size`` bytes if that needs no wait (shrinking, or room to spare); whether it did.
        The common case of ``resize`` without its coroutine (~1 µs a call on the hot path)."""
        extra = size - self.size
        budget = self._budget
        if extra <= 0:
            self.size = size
            if extra:
                budget._give_back(-extra)
            return True
        if size <= budget.limit and budget._take(extra):
            self.size = size
            return True
        return False

    async def resize(self, size: int, wait: float, loc: Loc, what: str) -> None:
        """Hold ``size`` bytes for ``what``: at once when it fits, else after waiting up to
        ``wait`` seconds for others to finish (503 past that); 413 beyond the whole budget."""
        if self.resize_now(size):
            return
        budget = self._budget
        self.check_possible(size, loc, what)
        extra = size - self.size
        if wait > 0 and await budget._wait_for(extra, wait):
            self.size = size
            return
        raise MemoryBusy.at(
            ("service",),
            f"{what} needs about {_mib(size)}; the memory budget ({_mib(budget.limit)}) is held by other requests",
            "memory_busy",
        )

    def release(self) -> None:
        size, self.size = self.size, 0
        if size:
            self._budget._give_back(size)

    async def __aenter__(self) -> Reservation:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()
