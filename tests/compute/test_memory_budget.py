"""Memory is bounded across requests: bodies being read, tensors being decoded and work being
computed are held under one budget; a request that does not fit waits briefly, then gets 503 with
Retry-After; one larger than the whole budget gets 413."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.compute.memory import MemoryBudget
from app.core.cgroup_limits import MIN_BUDGET, PROCESS_BASELINE, cgroup_memory_limit, default_memory_budget
from app.core.config import Settings
from app.core.errors import MemoryBusy, TooLarge
from app.main import create_app
from tests.support.engine_gate import Gate

MIB = 2**20


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_what_fits_is_held_at_once_and_given_back() -> None:
    async def scenario() -> None:
        budget = MemoryBudget(100)
        first, second = budget.reservation(), budget.reservation()
        await first.resize(60, 0.0, ("body",), "a")
        await second.resize(40, 0.0, ("body",), "b")
        assert budget.held == 100
        await first.resize(10, 0.0, ("body",), "a")
        assert budget.held == 50
        first.release()
        second.release()
        assert budget.held == 0

    run(scenario())


def test_what_does_not_fit_waits_then_is_refused_with_503() -> None:
    async def scenario() -> None:
        budget = MemoryBudget(100)
        holder = budget.reservation()
        await holder.resize(80, 0.0, ("body",), "a")
        with pytest.raises(MemoryBusy) as refused:
            await budget.reservation().resize(30, 0.05, ("body",), "b")
        assert refused.value.problems[0].type == "memory_busy"
        assert budget.held == 80

    run(scenario())


def test_a_waiting_request_is_served_in_arrival_order_when_room_comes() -> None:
    async def scenario() -> None:
        budget = MemoryBudget(100)
        holder = budget.reservation()
        await holder.resize(90, 0.0, ("body",), "a")
        order: list[str] = []

        async def wait(name: str, size: int) -> None:
            await budget.reservation().resize(size, 1.0, ("body",), name)
            order.append(name)

        first = asyncio.create_task(wait("first", 50))
        await asyncio.sleep(0)
        second = asyncio.create_task(wait("second", 10))  # would fit now, but must not overtake
        await asyncio.sleep(0.01)
        assert order == []
        holder.release()
        await asyncio.gather(first, second)
        assert order == ["first", "second"]
        assert budget.held == 60

    run(scenario())


def test_a_cancelled_waiter_leaves_nothing_held() -> None:
    async def scenario() -> None:
        budget = MemoryBudget(100)
        holder = budget.reservation()
        await holder.resize(100, 0.0, ("body",), "a")
        waiting = asyncio.create_task(budget.reservation().resize(50, 5.0, ("body",), "b"))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        holder.release()
        assert budget.held == 0
        await budget.reservation().resize(100, 0.0, ("body",), "c")

    run(scenario())


def test_more_than_the_whole_budget_is_413_at_once() -> None:
    async def scenario() -> None:
        with pytest.raises(TooLarge) as refused:
            await MemoryBudget(100).reservation().resize(101, 5.0, ("body",), "the body")
        assert refused.value.problems[0].type == "memory_limit"

    run(scenario())


def test_the_default_budget_follows_the_container_limit(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text(f"{2 * 1024 * MIB}\n")
    assert cgroup_memory_limit(tmp_path) == 2 * 1024 * MIB
    assert default_memory_budget(tmp_path) == int((2 * 1024 * MIB - PROCESS_BASELINE) * 0.6)
    (tmp_path / "memory.max").write_text("max\n")
    assert cgroup_memory_limit(tmp_path) is None
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    (tiny / "memory.max").write_text(f"{700 * MIB}\n")
    assert default_memory_budget(tiny) == MIN_BUDGET
    v1 = tmp_path / "v1" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert cgroup_memory_limit(tmp_path / "v1") is None


BUDGET = 16 * MIB


@pytest.fixture
def small_budget() -> Iterator[TestClient]:
    settings = Settings(memory_budget_bytes=BUDGET, memory_wait_s=0.2, max_body_bytes=64 * MIB)
    with TestClient(create_app(settings)) as client:
        yield client


def relu_body(elements: int) -> dict[str, Any]:
    data = base64.b64encode(np.ones(elements, dtype=np.float32).tobytes()).decode()
    return {"function": "relu", "input": {"shape": [elements], "dtype": "float32", "data": data}}


def test_a_body_larger_than_the_budget_is_413_before_it_is_read(small_budget: TestClient) -> None:
    reply = small_budget.post(
        "/activate", content=b"{" * 100, headers={"content-type": "application/json", "content-length": str(20 * MIB)}
    )
    assert reply.status_code == 413
    assert reply.json()["details"][0]["type"] == "memory_limit"


def test_a_request_whose_work_exceeds_the_budget_is_413_on_both_protocols(small_budget: TestClient) -> None:
    elements = 1_000_000  # a 5 MB body, but with gradients tens of megabytes of work
    body = relu_body(elements) | {"grad": True}
    reply = small_budget.post("/activate", json=body)
    assert reply.status_code == 413, reply.text
    assert reply.json()["details"][0]["type"] == "memory_limit"
    x = np.ones(elements, dtype=np.float32)
    header = (
        b'{"parameters": {"grad": true}, "inputs": [{"name": "input", "shape": [%d], "datatype": "FP32",'
        b' "parameters": {"binary_data_size": %d}}]}' % (elements, x.nbytes)
    )
    reply = small_budget.post(
        "/v2/models/relu/infer",
        content=header + x.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert reply.status_code == 413, reply.text


def test_requests_that_do_not_fit_together_get_503_while_one_computes(small_budget: TestClient, gate: Gate) -> None:
    """One request holds most of the budget while it computes (held at the engine); the next
    waits ``memory_wait_s`` for room, then gets 503 with Retry-After; once the first is done,
    the next fits again."""
    body = relu_body(200_000)  # ~10 MiB held: body, decoding, work and reply

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        first = loop.run_in_executor(None, lambda: small_budget.post("/activate", json=body))
        await loop.run_in_executor(None, gate.entered.wait, 10)
        second = await loop.run_in_executor(None, lambda: small_budget.post("/activate", json=body))
        assert second.status_code == 503, second.text
        assert second.headers["retry-after"] == "1"
        assert second.json()["details"][0]["type"] == "memory_busy"
        gate.release.set()
        assert (await first).status_code == 200

    asyncio.run(scenario())
    assert small_budget.post("/activate", json=body).status_code == 200


def test_the_allocator_is_asked_to_trim_once_idle_after_large_requests_only() -> None:
    trims: list[int] = []

    async def scenario() -> None:
        budget = MemoryBudget(100 * MIB, on_idle=lambda: trims.append(1), idle_s=0.1)
        for _ in range(100):  # a stream of small requests, 3.2 GB in all, never 32 MiB at once
            small = budget.reservation()
            await small.resize(MIB, 0.0, ("body",), "small")
            small.release()
        await asyncio.sleep(0.3)
        assert trims == []
        large = budget.reservation()
        await large.resize(40 * MIB, 0.0, ("body",), "large")
        large.release()
        await asyncio.sleep(0.3)
        assert trims == [1]

    run(scenario())


def test_the_trim_waits_until_nothing_has_been_held_for_its_idle_time() -> None:
    """Large requests that follow each other closely reuse what the last one freed: no trim
    between them, one once they stop."""
    trims: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        budget = MemoryBudget(100 * MIB, on_idle=lambda: trims.append(loop.time()), idle_s=0.2)
        for _ in range(8):  # 0.4 s of large requests, 0.05 s apart
            large = budget.reservation()
            await large.resize(40 * MIB, 0.0, ("body",), "large")
            await asyncio.sleep(0.01)
            large.release()
            last_release = loop.time()
            await asyncio.sleep(0.05)
        assert trims == []
        await asyncio.sleep(0.4)
        assert len(trims) == 1
        assert trims[0] >= last_release + 0.2

    run(scenario())
