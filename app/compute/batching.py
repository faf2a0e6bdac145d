"""Dynamic batching: concurrent compatible work shares one compute call; a bad item fails alone.

Self-contained and transport-neutral. Items wait in one queue; a consumer task takes the oldest
item and every queued item with the same key (up to ``max_batch_size`` items and
``max_batch_elements`` elements), waiting up to ``max_batch_delay`` for more only when others
are already queued, so a lone item never waits for company. Each group runs through ``compute``
in the executor, which returns one result or one exception per item: an exception fails its own
item only. Cancelled or expired items are dropped before their batch runs.

Deadlines are kept by one timer per batcher, armed for the earliest deadline of the items queued
or being computed, rather than by a timer per item (armed and cancelled for every request).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

from app.compute.threads import EscapedBaseException
from app.core.errors import ClientGone, DeadlineExceeded, Overloaded, QueueFull

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

_TIMER_SLACK = 0.001
"""The loop's timers may fire up to a millisecond early: a deadline that close counts as reached."""

GoneProbe = Callable[[], Awaitable[bool]]
"""Answers whether the caller of a queued item has gone (e.g. the HTTP client disconnected)."""


class Served(NamedTuple, Generic[ResultT]):
    """A result and how it was served."""

    result: ResultT
    queue_wait: float
    compute_time: float
    batch_size: int


@dataclass(slots=True)
class _Pending(Generic[ItemT, ResultT]):
    item: ItemT
    key: Hashable
    size: int
    enqueued: float
    timeout: float | None
    deadline: float
    """``enqueued + timeout``; infinite without a timeout."""
    future: asyncio.Future[Served[ResultT]] = field(repr=False)
    gone: GoneProbe | None = field(default=None, repr=False)


BatchCompute = Callable[[Sequence[ItemT], Hashable | None], Sequence[ResultT | Exception]]
"""``compute(items, key)``: one outcome per item. ``key`` is the key the items share (so that
it is worked out once), or None for an item run alone, with no one to share a call with."""
ComputedHook = Callable[[Sequence[ItemT], float], None]
"""Told on the loop after each compute call: the items it ran and its seconds."""


class DynamicBatcher(Generic[ItemT, ResultT]):
    def __init__(
        self,
        compute: BatchCompute[ItemT, ResultT],
        *,
        key: Callable[[ItemT], Hashable],
        size: Callable[[ItemT], int],
        executor: Executor,
        max_batch_size: int,
        max_batch_elements: int,
        max_batch_delay: float,
        max_queue_size: int,
        consumers: int = 1,
        probe_after: float = 0.001,
        on_computed: ComputedHook[ItemT] | None = None,
    ) -> None:
        """``probe_after``: only items queued longer than this are asked whether their caller is
        still there; asking costs a little, and computing an item whose caller left within that
        time is harmless. ``on_computed``: told of every compute call (per call, not per item,
        as Triton counts executions)."""
        if max_batch_size < 1 or max_batch_elements < 1 or max_queue_size < 1 or consumers < 1:
            raise ValueError("batch size, element budget, queue size and consumers must be positive")
        if max_batch_delay < 0:
            raise ValueError("max_batch_delay must not be negative")
        self._compute = compute
        self._key = key
        self._size = size
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_batch_elements = max_batch_elements
        self.max_batch_delay = max_batch_delay
        self.max_queue_size = max_queue_size
        self._consumers = consumers
        self._probe_after = probe_after
        self._on_computed = on_computed
        self._queue: deque[_Pending[ItemT, ResultT]] = deque()
        self._arrived: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._busy = 0
        self._arrivals = 0
        """Items submitted so far: an item asked inline that sees others come meanwhile is not."""
        """Compute calls in flight (at most ``consumers``)."""
        self._computing: list[list[_Pending[ItemT, ResultT]]] = []
        """The items of each compute call in flight: their deadlines still hold."""
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._timer_due = math.inf
        """When the deadline timer fires: the earliest deadline of a live item, when it was armed."""

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        """Start the consumers; call inside the running loop (the queue's events belong to it)."""
        self._arrived = asyncio.Event()
        self._tasks = [asyncio.create_task(self._consume(), name=f"batcher-{i}") for i in range(self._consumers)]

    async def stop(self) -> None:
        """Refuse new items, finish the queued ones, then stop the consumers."""
        self._closing = True
        if self._arrived is not None:
            self._arrived.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._disarm()

    def check_room(self) -> None:
        """Raise what ``submit`` would raise now for want of room, before any work is spent on an item."""
        if self._arrived is None or self._closing:
            raise Overloaded.at(("service",), "not accepting work (starting or shutting down)", "not_ready")
        if len(self._queue) >= self.max_queue_size:
            raise QueueFull.at(("service",), f"the queue is full ({self.max_queue_size} waiting)", "queue_full")

    async def submit(
        self, item: ItemT, timeout: float | None = None, gone: GoneProbe | None = None, inline: bool = False
    ) -> Served[ResultT]:
        """Queue ``item`` and wait for its result; 503-type errors when full or too late.
        ``inline``: when it would run alone (nothing queued, a worker idle, and no other item
        submitted while the loop runs what is ready), compute it here, on the loop: the trip to a
        worker thread and back costs more than a computation of a few microseconds (keep it to
        those)."""
        self.check_room()
        assert self._arrived is not None  # check_room refuses before start
        loop = asyncio.get_running_loop()
        self._arrivals += 1
        if inline and not self._queue and self._busy < self._consumers:
            # Requests read in the same turn of the loop reach here one after another, with no
            # await in between: let them, so that one computed here does not hold back a batch.
            arrivals = self._arrivals
            await asyncio.sleep(0)
            if arrivals == self._arrivals and not self._queue and self._busy < self._consumers:
                return self._run_inline(item, timeout)
            self.check_room()  # the others may have filled the queue meanwhile
        if not self._queue and self._busy < self._consumers:
            return await self._run_alone(item, timeout, loop)
        now = time.monotonic()
        pending: _Pending[ItemT, ResultT] = _Pending(
            item,
            self._key(item),
            self._size(item),
            now,
            timeout,
            math.inf if timeout is None else now + timeout,
            loop.create_future(),
            gone,
        )
        self._queue.append(pending)
        self._arrived.set()
        if pending.deadline < self._timer_due:
            self._arm(pending.deadline, loop)
        return await pending.future

    def _run_inline(self, item: ItemT, timeout: float | None) -> Served[ResultT]:
        """Nothing queued, a worker idle and a tiny item: compute it here, on the loop."""
        if timeout is not None and timeout <= 0:
            raise DeadlineExceeded.after(timeout)
        started = time.monotonic()
        try:
            outcomes = self._compute([item], None)
        except Exception:
            raise
        except BaseException as error:  # raised on the loop as it is, it would stop the server
            raise EscapedBaseException(error) from error
        seconds = time.monotonic() - started
        return self._served_alone(item, outcomes, seconds)

    def _served_alone(self, item: ItemT, outcomes: Sequence[ResultT | Exception], seconds: float) -> Served[ResultT]:
        if self._on_computed is not None:
            self._on_computed([item], seconds)
        if len(outcomes) != 1:
            raise RuntimeError(f"compute returned {len(outcomes)} outcomes for 1 items")
        outcome = outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return Served(outcome, 0.0, seconds, 1)

    async def _run_alone(self, item: ItemT, timeout: float | None, loop: asyncio.AbstractEventLoop) -> Served[ResultT]:
        """Nothing queued and a worker idle: compute at once, without a trip through the queue.
        The deadline holds while it computes; the worker counts as busy until the computation
        ends, even when its caller has stopped waiting (a thread cannot be interrupted)."""
        self._busy += 1
        started = time.monotonic()
        work = loop.run_in_executor(self._executor, self._compute, [item], None)
        work.add_done_callback(self._alone_done)
        try:
            outcomes = await asyncio.wait_for(asyncio.shield(work), timeout)
        except TimeoutError:
            raise DeadlineExceeded.after(timeout or 0.0) from None
        return self._served_alone(item, outcomes, time.monotonic() - started)

    def _alone_done(self, work: asyncio.Future[Sequence[ResultT | Exception]]) -> None:
        self._busy -= 1
        if not work.cancelled():
            work.exception()  # retrieved, so an abandoned computation's failure is not logged as lost
        if self._queue and self._arrived is not None:
            self._arrived.set()

    def _arm(self, due: float, loop: asyncio.AbstractEventLoop) -> None:
        self._disarm()
        self._timer_due = due
        self._deadline_timer = loop.call_later(max(0.0, due - time.monotonic()), self._expire_due, loop)

    def _disarm(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        self._timer_due = math.inf

    def _expire_due(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail every live item past its deadline (the queued ones leave the queue), then arm for
        the next deadline, if any."""
        self._deadline_timer = None
        self._timer_due = math.inf
        now = time.monotonic() + _TIMER_SLACK
        earliest = math.inf
        expired = False
        for pending in itertools.chain(self._queue, *self._computing):
            if pending.future.done():
                continue
            if pending.deadline <= now:
                pending.future.set_exception(DeadlineExceeded.after(pending.timeout or 0.0))
                expired = True
            elif pending.deadline < earliest:
                earliest = pending.deadline
        if expired:  # expired items leave the queue now, not when the next batch is taken
            self._queue = deque(pending for pending in self._queue if not pending.future.done())
        if earliest < math.inf:
            self._arm(earliest, loop)

    def _take_batch(self) -> list[_Pending[ItemT, ResultT]]:
        """The oldest live item and the queued items sharing its key, within the limits."""
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()
        if not self._queue:
            return []
        batch = [self._queue.popleft()]
        self._top_up(batch)
        return batch

    def _top_up(self, batch: list[_Pending[ItemT, ResultT]]) -> None:
        """Move the queued items that fit into ``batch``; drop the cancelled and expired ones."""
        elements = sum(p.size for p in batch)
        kept: deque[_Pending[ItemT, ResultT]] = deque()
        while self._queue:
            candidate = self._queue.popleft()
            fits = len(batch) < self.max_batch_size and elements + candidate.size <= self.max_batch_elements
            if not candidate.future.done() and candidate.key == batch[0].key and fits:
                batch.append(candidate)
                elements += candidate.size
            elif not candidate.future.done():
                kept.append(candidate)
        self._queue = kept

    async def _wait_for_company(self, batch: list[_Pending[ItemT, ResultT]]) -> None:
        """Others were queued: give compatible work up to ``max_batch_delay`` to fill the batch."""
        assert self._arrived is not None
        deadline = time.monotonic() + self.max_batch_delay
        while len(batch) < self.max_batch_size and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
            self._top_up(batch)

    async def _still_wanted(self, batch: list[_Pending[ItemT, ResultT]]) -> list[_Pending[ItemT, ResultT]]:
        """Drop items whose caller was cancelled or has gone away, before computing anything."""
        live = []
        asked_before = time.monotonic() - self._probe_after
        for pending in batch:
            if pending.future.done():
                continue
            if pending.gone is not None and pending.enqueued < asked_before and await pending.gone():
                pending.future.set_exception(
                    ClientGone.at(("client",), "the client went away before its request ran", "client_gone")
                )
                continue
            live.append(pending)
        return live

    async def _consume(self) -> None:
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue or self._busy >= self._consumers:
                if self._closing and not self._queue:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            had_company = len(self._queue) > 1
            batch = self._take_batch()
            if not batch:
                continue
            self._busy += 1  # forming and computing a batch both keep the fast path out
            try:
                await self._form_and_run(batch, had_company, loop)
            finally:
                self._busy -= 1

    async def _form_and_run(
        self, batch: list[_Pending[ItemT, ResultT]], had_company: bool, loop: asyncio.AbstractEventLoop
    ) -> None:
        if had_company and self.max_batch_delay > 0:
            await self._wait_for_company(batch)
        live = await self._still_wanted(batch)
        if not live:
            return
        items = [p.item for p in live]
        started = time.monotonic()
        self._computing.append(live)
        try:
            outcomes = await loop.run_in_executor(self._executor, self._compute, items, live[0].key)
        except Exception as error:  # the compute function itself broke: fail this batch only
            outcomes = [error] * len(live)
        finally:
            self._computing.remove(live)
        finished = time.monotonic()
        if self._on_computed is not None:
            self._on_computed(items, finished - started)
        if len(outcomes) != len(live):
            mismatch = RuntimeError(f"compute returned {len(outcomes)} outcomes for {len(live)} items")
            outcomes = [mismatch] * len(live)
        for pending, outcome in zip(live, outcomes, strict=True):
            if pending.future.done():
                continue
            if isinstance(outcome, Exception):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(Served(outcome, started - pending.enqueued, finished - started, len(live)))
