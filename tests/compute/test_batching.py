"""The dynamic batcher on its own: deterministic, gated with events rather than sleeps."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.compute.batching import DynamicBatcher, Served
from app.compute.threads import EscapedBaseException
from app.core.errors import ClientGone, DeadlineExceeded, QueueFull


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class GatedCompute:
    """Doubles numbers; records each batch; the first call can be held until released."""

    def __init__(self, hold_first: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.keys: list[object] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, items: Sequence[int], key: object) -> list[int | Exception]:
        self.batches.append(list(items))
        self.keys.append(key)
        self.entered.set()
        self.release.wait(10)
        return [ValueError(f"bad {item}") if item < 0 else item * 2 for item in items]


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(1)
    yield pool
    pool.shutdown(wait=True)


def make_batcher(
    compute: Callable[[Sequence[int], object], Sequence[int | Exception]],
    executor: ThreadPoolExecutor,
    *,
    max_batch_size: int = 8,
    max_queue_size: int = 64,
    max_batch_delay: float = 0.0,
    key: Callable[[int], object] = lambda item: abs(item) % 2,
) -> DynamicBatcher[int, int]:
    return DynamicBatcher(
        compute,
        key=key,
        size=lambda item: 1,
        executor=executor,
        max_batch_size=max_batch_size,
        max_batch_elements=1000,
        max_batch_delay=max_batch_delay,
        max_queue_size=max_queue_size,
        probe_after=0.0,
    )


async def wait_until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never became true")


async def hold_worker(batcher: DynamicBatcher[int, int], compute: GatedCompute) -> asyncio.Task[Served[int]]:
    """Occupy the worker with item 0 until ``compute.release`` is set."""
    task = asyncio.create_task(batcher.submit(0))
    await asyncio.get_running_loop().run_in_executor(None, compute.entered.wait, 5)
    return task


@pytest.mark.anyio
async def test_lone_item_runs_at_once_even_with_a_long_delay(executor: ThreadPoolExecutor) -> None:
    compute = GatedCompute()
    batcher = make_batcher(compute, executor, max_batch_delay=30.0)
    batcher.start()
    served = await asyncio.wait_for(batcher.submit(21), 5)
    assert (served.result, served.batch_size) == (42, 1)
    await batcher.stop()


@pytest.mark.anyio
async def test_queued_compatible_items_share_one_call(executor: ThreadPoolExecutor) -> None:
    compute = GatedCompute(hold_first=True)
    batcher = make_batcher(compute, executor)
    batcher.start()
    first = await hold_worker(batcher, compute)
    waiting = [asyncio.create_task(batcher.submit(n)) for n in (2, 4, 6, 3, 8)]
    await wait_until(lambda: batcher.depth == 5)
    compute.release.set()
    results = await asyncio.gather(first, *waiting)
    assert [served.result for served in results[1:]] == [4, 8, 12, 6, 16]
    assert compute.batches == [[0], [2, 4, 6, 8], [3]]  # grouped by key, order kept
    assert compute.keys == [None, 0, 1]  # each batch's shared key; none for the lone item
    assert [served.batch_size for served in results[1:]] == [4, 4, 4, 1, 4]
    await batcher.stop()


@pytest.mark.anyio
async def test_batch_size_is_capped(executor: ThreadPoolExecutor) -> None:
    compute = GatedCompute(hold_first=True)
    batcher = make_batcher(compute, executor, max_batch_size=3, key=lambda item: 0)
    batcher.start()
    first = await hold_worker(batcher, compute)
    waiting = [asyncio.create_task(batcher.submit(n)) for n in range(1, 8)]
    await wait_until(lambda: batcher.depth == 7)
    compute.release.set()
    await asyncio.gather(first, *waiting)
    assert [len(batch) for batch in compute.batches] == [1, 3, 3, 1]
    await batcher.stop()


@pytest.mark.anyio
async def test_a_failing_item_fails_alone(executor: ThreadPoolExecutor) -> None:
    compute = GatedCompute(hold_first=True)
    batcher = make_batcher(compute, executor, key=lambda item: 0)
    batcher.start()
    first = await hold_worker(batcher, compute)
    waiting = [asyncio.create_task(batcher.submit(n)) for n in (1, -5, 3)]
    await wait_until(lambda: batcher.depth == 3)
    compute.release.set()
    outcomes = await asyncio.gather(first, *waiting, return_exceptions=True)
    assert compute.batches[1] == [1, -5, 3]
    assert isinstance(outcomes[2], ValueError)
    assert [o.result for o in outcomes if isinstance(o, Served)] == [0, 2, 6]
    await batcher.stop()


@pytest.mark.anyio
async def test_a_broken_compute_fails_only_its_batch(executor: ThreadPoolExecutor) -> None:
    calls: list[list[int]] = []

    def compute(items: Sequence[int], key: object) -> list[int | Exception]:
        calls.append(list(items))
        if len(calls) == 1:
            raise RuntimeError("broken")
        return list(items)

    batcher = make_batcher(compute, executor)
    batcher.start()
    with pytest.raises(RuntimeError, match="broken"):
        await batcher.submit(1)
    assert (await batcher.submit(2)).result == 2
    await batcher.stop()


@pytest.mark.anyio
async def test_wrong_number_of_outcomes_is_an_error_not_a_mixup(executor: ThreadPoolExecutor) -> None:
    batcher = make_batcher(lambda items, key: [1, 2, 3], executor)
    batcher.start()
    with pytest.raises(RuntimeError, match="3 outcomes for 1 items"):
        await batcher.submit(1)
    await batcher.stop()


@pytest.mark.anyio
async def test_full_queue_refuses_at_once(executor: ThreadPoolExecutor) -> None:
    compute = GatedCompute(hold_first=True)
    batcher = make_batcher(compute, executor, max_queue_size=2)
    batcher.start()
    first = await hold_worker(batcher, compute)
    queued = [asyncio.create_task(batcher.submit(n)) for n in (1, 2)]
    await wait_until(lambda: batcher.depth == 2)
    with pytest.raises(QueueFull):
        await asyncio.wait_for(batcher.submit(3), 1)
    compute.release.set()
    await asyncio.gather(first, *queued)
    await batcher.stop()


@pytest.mark.anyio
async def test_expired_item_gets_deadline_error_and_is_not_computed(executor: ThreadPoolExecutor) -> None:
    compute = GatedCompute(hold_first=True)
    batcher = make_batcher(compute, executor)
    batcher.start()
    first = await hold_worker(batcher, compute)
    with pytest.raises(DeadlineExceeded):
        await batcher.submit(5, timeout=0.05)
    compute.release.set()
    await first
    assert (await batcher.submit(7)).result == 14
    assert [5] not in compute.batches
    await batcher.stop()


class HeldCalls:
    """Doubles numbers; every call waits for its own release."""

    def __init__(self, calls: int) -> None:
        self.entered = [threading.Event() for _ in range(calls)]
        self.release = [threading.Event() for _ in range(calls)]
        self._calls = 0

    def __call__(self, items: Sequence[int], key: object) -> list[int | Exception]:
        call = self._calls
        self._calls += 1
        self.entered[call].set()
        self.release[call].wait(10)
        return [item * 2 for item in items]


@pytest.mark.anyio
async def test_deadline_holds_while_the_item_is_computed(executor: ThreadPoolExecutor) -> None:
    compute = HeldCalls(2)
    batcher = make_batcher(compute, executor)
    batcher.start()
    loop = asyncio.get_running_loop()
    first = asyncio.create_task(batcher.submit(0))
    await loop.run_in_executor(None, compute.entered[0].wait, 5)
    late = asyncio.create_task(batcher.submit(1, timeout=0.5))
    await wait_until(lambda: batcher.depth == 1)
    compute.release[0].set()
    assert await loop.run_in_executor(None, compute.entered[1].wait, 5)  # the late item is being computed
    with pytest.raises(DeadlineExceeded):
        await asyncio.wait_for(late, 5)
    compute.release[1].set()
    assert (await first).result == 0
    await batcher.stop()


@pytest.mark.anyio
async def test_a_shorter_deadline_queued_later_expires_first(executor: ThreadPoolExecutor) -> None:
    compute = GatedCompute(hold_first=True)
    batcher = make_batcher(compute, executor, key=lambda item: 0)
    batcher.start()
    first = await hold_worker(batcher, compute)
    patient = asyncio.create_task(batcher.submit(1, timeout=30.0))
    hurried = asyncio.create_task(batcher.submit(2, timeout=0.05))
    with pytest.raises(DeadlineExceeded):
        await asyncio.wait_for(hurried, 5)  # long before the first item's deadline
    assert batcher.depth == 1
    compute.release.set()
    assert (await patient).result == 2
    await first
    assert compute.batches == [[0], [1]]
    await batcher.stop()


@pytest.mark.anyio
async def test_cancelled_item_is_dropped_before_its_batch_runs(executor: ThreadPoolExecutor) -> None:
    compute = GatedCompute(hold_first=True)
    batcher = make_batcher(compute, executor, key=lambda item: 0)
    batcher.start()
    first = await hold_worker(batcher, compute)
    doomed = asyncio.create_task(batcher.submit(9))
    kept = asyncio.create_task(batcher.submit(11))
    await wait_until(lambda: batcher.depth == 2)
    doomed.cancel()
    compute.release.set()
    assert (await kept).result == 22
    await first
    assert compute.batches == [[0], [11]]
    await batcher.stop()


@pytest.mark.anyio
async def test_item_whose_client_went_away_is_not_computed(executor: ThreadPoolExecutor) -> None:
    compute = GatedCompute(hold_first=True)
    batcher = make_batcher(compute, executor, key=lambda item: 0)
    batcher.start()
    first = await hold_worker(batcher, compute)

    async def gone() -> bool:
        return True

    async def present() -> bool:
        return False

    left = asyncio.create_task(batcher.submit(13, gone=gone))
    stayed = asyncio.create_task(batcher.submit(15, gone=present))
    await wait_until(lambda: batcher.depth == 2)
    compute.release.set()
    with pytest.raises(ClientGone):
        await left
    assert (await stayed).result == 30
    await first
    assert compute.batches == [[0], [15]]
    await batcher.stop()


@pytest.mark.anyio
async def test_stop_finishes_queued_work_and_refuses_new(executor: ThreadPoolExecutor) -> None:
    compute = GatedCompute(hold_first=True)
    batcher = make_batcher(compute, executor)
    batcher.start()
    first = await hold_worker(batcher, compute)
    queued = [asyncio.create_task(batcher.submit(n)) for n in (1, 2, 3)]
    await wait_until(lambda: batcher.depth == 3)
    stopping = asyncio.create_task(batcher.stop())
    await asyncio.sleep(0)
    with pytest.raises(Exception, match="not accepting"):
        await batcher.submit(4)
    compute.release.set()
    await stopping
    assert [served.result for served in await asyncio.gather(*queued)] == [2, 4, 6]
    await first


@pytest.mark.anyio
async def test_delay_lets_company_fill_a_batch(executor: ThreadPoolExecutor) -> None:
    compute = GatedCompute(hold_first=True)
    batcher = make_batcher(compute, executor, max_batch_delay=5.0, max_batch_size=4, key=lambda item: 0)
    batcher.start()
    first = await hold_worker(batcher, compute)
    early = [asyncio.create_task(batcher.submit(n)) for n in (1, 2)]
    await wait_until(lambda: batcher.depth == 2)
    compute.release.set()
    await first
    late = [asyncio.create_task(batcher.submit(n)) for n in (3, 4)]
    await asyncio.gather(*early, *late)
    assert compute.batches[1] == [1, 2, 3, 4]  # waited for company, stopped when full
    await batcher.stop()


def test_invalid_arguments_are_refused(executor: ThreadPoolExecutor) -> None:
    with pytest.raises(ValueError, match="positive"):
        make_batcher(lambda items, key: list(items), executor, max_batch_size=0)
    with pytest.raises(ValueError, match="negative"):
        make_batcher(lambda items, key: list(items), executor, max_batch_delay=-1)


@pytest.mark.anyio
async def test_an_item_asked_inline_is_computed_on_the_loop_when_it_would_run_alone(
    executor: ThreadPoolExecutor,
) -> None:
    threads: list[int] = []
    computed: list[list[int]] = []
    gated = GatedCompute(hold_first=True)

    def compute(items: Sequence[int], key: object) -> list[int | Exception]:
        threads.append(threading.get_ident())
        if items[0] >= 100:  # held on the worker thread like any other
            return gated(items, key)
        return [ValueError(f"bad {item}") if item < 0 else item * 2 for item in items]

    batcher = DynamicBatcher(
        compute,
        key=lambda item: 0,
        size=lambda item: 1,
        executor=executor,
        max_batch_size=8,
        max_batch_elements=1000,
        max_batch_delay=0.0,
        max_queue_size=64,
        on_computed=lambda items, seconds: computed.append(list(items)),
    )
    batcher.start()
    loop_thread = threading.get_ident()
    served = await batcher.submit(3, inline=True)
    assert served == Served(6, 0.0, served.compute_time, 1)
    assert threads == [loop_thread]
    assert computed == [[3]]
    with pytest.raises(ValueError, match="bad -1"):  # an item's failure is its own, on the loop too
        await batcher.submit(-1, inline=True)
    with pytest.raises(DeadlineExceeded):
        await batcher.submit(5, timeout=0.0, inline=True)
    # Not asked inline: the worker thread. While it computes, an item asked inline waits its turn
    # there (it would not run alone).
    held = asyncio.create_task(batcher.submit(100))
    await asyncio.get_running_loop().run_in_executor(None, gated.entered.wait, 5)
    waiting = asyncio.create_task(batcher.submit(4, inline=True))
    await wait_until(lambda: batcher.depth == 1)
    gated.release.set()
    assert (await held).result == 200
    assert (await waiting).result == 8
    assert len(threads) == 4
    assert loop_thread not in threads[2:]
    await batcher.stop()


@pytest.mark.anyio
async def test_items_asked_inline_together_share_the_queue_and_its_bound(executor: ThreadPoolExecutor) -> None:
    """Submitted in one turn of the loop, none runs on the loop: the first runs alone on the worker,
    the next waits in the queue, and the queue's bound holds for the rest."""
    compute = GatedCompute()
    batcher = make_batcher(compute, executor, max_queue_size=1)
    batcher.start()
    outcomes = await asyncio.gather(*(batcher.submit(n, inline=True) for n in (1, 2, 3, 4)), return_exceptions=True)
    assert [o.result if isinstance(o, Served) else type(o) for o in outcomes] == [2, 4, QueueFull, QueueFull]
    assert compute.batches == [[1], [2]]
    await batcher.stop()


@pytest.mark.anyio
async def test_a_base_exception_computed_inline_fails_its_item_alone(executor: ThreadPoolExecutor) -> None:
    def compute(items: Sequence[int], key: object) -> list[int | Exception]:
        if items[0] == 1:
            raise SystemExit(3)
        return [item * 2 for item in items]

    batcher = make_batcher(compute, executor)
    batcher.start()
    with pytest.raises(EscapedBaseException, match="SystemExit"):
        await batcher.submit(1, inline=True)
    assert (await batcher.submit(2, inline=True)).result == 4
    await batcher.stop()
