"""Injected faults: a worker exception, device out-of-memory, a sticky device error and clients that
leave while queued. Each fails only what it must, and the service recovers or asks to be restarted."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import orjson
import pytest
import torch
from fastapi.testclient import TestClient

from app.compute import engine as engine_module
from app.compute.engine import Engine
from app.compute.jobs import Job, Result
from app.compute.service import ComputeService
from app.core.config import Settings
from app.main import create_app
from tests.support.engine_gate import Gate
from tests.support.exposition import metric
from tests.support.inprocess_server import serving

STICKY_MESSAGE = (
    "CUDA error: device-side assert triggered\n"
    "CUDA kernel errors might be asynchronously reported at some other API call."
)
MARK = 13.25
"""An input value that the injected faults recognise."""


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(16) as executor:
        yield executor


def mse_body(value: float) -> dict[str, Any]:
    return {"function": "mse_loss", "input": [value, 1.0], "target": [0.0, 1.0]}


def assert_serves(client: TestClient) -> None:
    reply = client.post("/activate", json={"function": "relu", "input": [-1.0, 2.0]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["output"] == [0.0, 2.0]
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_worker_exception_fails_only_its_own_requests(
    gate: Gate, pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Engine._compute

    def faulty(engine: Engine, job: Job) -> Result:
        if float(job.arrays["input"].ravel()[0]) == MARK:
            raise KeyError("injected fault inside the batch worker")
        return original(engine, job)

    monkeypatch.setattr(Engine, "_compute", faulty)
    values = [MARK if i % 4 == 1 else float(i) for i in range(16)]
    with TestClient(create_app(Settings()), raise_server_exceptions=False) as client:
        blocker = pool.submit(client.post, "/loss", json=mse_body(0.5))
        assert gate.entered.wait(5)
        futures = [pool.submit(client.post, "/loss", json=mse_body(v)) for v in values]
        time.sleep(0.2)  # let them queue: they form one batch behind the blocker
        gate.release.set()
        replies = [f.result(30) for f in futures]
        assert blocker.result(30).status_code == 200
        for value, reply in zip(values, replies, strict=True):
            if value == MARK:
                assert reply.status_code == 500, reply.text
                assert reply.json()["error"] == "internal_error"
                assert "injected" not in reply.text, "internal details must not leak"
            else:
                assert reply.status_code == 200, reply.text
                assert reply.json()["loss"] == pytest.approx(value**2 / 2)
        sizes = [re.findall(r'size=(\d+)"', r.headers.get("server-timing", "")) for r in replies]
        assert max(int(found[0]) for found in sizes if found) > 1, "the faulty requests shared no batch"
        assert_serves(client)


def test_a_failing_batch_call_fails_that_batch_only(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Engine.run_group
    calls = {"n": 0}

    def breaks_once(engine: Engine, jobs: Sequence[Job], key: tuple[Any, ...] | None) -> list[Result | Exception]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected: the whole compute call broke")
        return original(engine, jobs, key)

    monkeypatch.setattr(Engine, "run_group", breaks_once)
    with TestClient(create_app(Settings()), raise_server_exceptions=False) as client:
        first = client.post("/activate", json={"function": "relu", "input": [1.0]})
        assert first.status_code == 500
        assert first.json()["error"] == "internal_error"
        assert "injected" not in first.text
        assert_serves(client)


class OwnStop(BaseException):
    """A ``BaseException`` of its own, as a plugin may define."""


@pytest.mark.parametrize("raised", [SystemExit(3), KeyboardInterrupt(), OwnStop()], ids=lambda e: type(e).__name__)
def test_a_base_exception_from_the_compute_call_fails_that_call_only(
    monkeypatch: pytest.MonkeyPatch, raised: BaseException
) -> None:
    """Over a real socket: raised on the event loop, it would stop the server (or get uvicorn's
    plain-text 500); it is a 500 in the error format instead, and the server goes on."""
    original = Engine.run_group
    calls = {"n": 0}

    def raises_once(engine: Engine, jobs: Sequence[Job], key: tuple[Any, ...] | None) -> list[Result | Exception]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise raised
        return original(engine, jobs, key)

    monkeypatch.setattr(Engine, "run_group", raises_once)
    with serving(create_app(Settings())) as url, httpx.Client(base_url=url, timeout=30) as http:
        first = http.post("/activate", json={"function": "relu", "input": [1.0]})
        assert first.status_code == 500
        assert first.json()["error"] == "internal_error"
        assert first.headers["x-content-type-options"] == "nosniff"
        second = http.post("/activate", json={"function": "relu", "input": [-1.0, 2.0]})
        assert second.status_code == 200
        assert second.json()["output"] == [0.0, 2.0]


def test_an_unexpected_error_outside_the_compute_routes_is_answered_like_any_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the request's id and nosniff, in the error format: not by Starlette's outermost
    handler, outside the middleware that adds them."""

    def broken(spec: Any) -> dict[str, object]:
        raise RuntimeError("injected: describing a function failed")

    monkeypatch.setattr("app.compute.catalogue.registry.Catalogue.describe", staticmethod(broken))
    with TestClient(create_app(Settings()), raise_server_exceptions=False) as client:
        reply = client.get("/functions/relu", headers={"x-request-id": "unexpected-1"})
        assert reply.status_code == 500
        assert reply.json()["error"] == "internal_error"
        assert "injected" not in reply.text
        assert reply.headers["x-request-id"] == "unexpected-1"
        assert reply.headers["x-content-type-options"] == "nosniff"


def oom() -> torch.OutOfMemoryError:
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_out_of_memory_in_a_fused_batch_splits_it(
    gate: Gate, pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fused call runs out of memory: the requests run one by one and all succeed."""
    fused_sizes: list[int] = []

    def fused_oom(jobs: Sequence[Job], *args: Any) -> list[Result]:
        fused_sizes.append(len(jobs))
        raise oom()

    monkeypatch.setattr(engine_module, "fused_call", fused_oom)
    rng = np.random.default_rng(5)
    inputs = [rng.standard_normal(64).astype(np.float32) for _ in range(12)]
    with TestClient(create_app(Settings())) as client:
        blocker = pool.submit(client.post, "/activate", json={"function": "tanh", "input": [0.0] * 64})
        assert gate.entered.wait(5)
        futures = [
            pool.submit(client.post, "/activate", json={"function": "tanh", "input": x.tolist()}) for x in inputs
        ]
        time.sleep(0.2)
        gate.release.set()
        replies = [f.result(30) for f in futures]
        assert blocker.result(30).status_code == 200
        assert fused_sizes, "no batch was fused, so no out-of-memory error was injected"
        for x, reply in zip(inputs, replies, strict=True):
            assert reply.status_code == 200, reply.text
            got = np.asarray(reply.json()["output"], dtype=np.float32)
            assert got.tobytes() == torch.tanh(torch.from_numpy(x)).numpy().tobytes()
        assert_serves(client)


def test_out_of_memory_answers_503_and_the_service_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Engine._compute
    failing = {"on": True}

    def maybe_oom(engine: Engine, job: Job) -> Result:
        if failing["on"]:
            raise oom()
        return original(engine, job)

    monkeypatch.setattr(Engine, "_compute", maybe_oom)
    with TestClient(create_app(Settings())) as client:
        for path, body in (("/activate", {"function": "relu", "input": [1.0]}), ("/loss", mse_body(2.0))):
            reply = client.post(path, json=body)
            assert reply.status_code == 503, reply.text
            assert reply.json()["error"] == "overloaded"
            assert reply.json()["details"][0]["type"] == "out_of_memory"
            assert reply.headers["retry-after"]
        assert client.get("/healthz").status_code == 200, "out of memory is not a reason to restart"
        failing["on"] = False
        assert_serves(client)


def test_sticky_device_error_fails_liveness(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Engine._compute
    calls = {"n": 0}

    def device_assert(engine: Engine, job: Job) -> Result:
        calls["n"] += 1
        if float(job.arrays["input"].ravel()[0]) == MARK:
            raise RuntimeError(STICKY_MESSAGE)
        return original(engine, job)

    monkeypatch.setattr(Engine, "_compute", device_assert)
    with TestClient(create_app(Settings())) as client:
        assert_serves(client)
        broken = client.post("/loss", json=mse_body(MARK))
        assert broken.status_code == 500, broken.text
        assert broken.json()["error"] == "device_failure"
        assert "Traceback" not in broken.text

        health = client.get("/healthz")
        assert health.status_code == 503, "liveness must fail so that the orchestrator restarts the process"
        assert health.json()["error"] == "device_failure"
        assert "device-side assert" in health.json()["message"]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.headers["retry-after"]

        computed = calls["n"]
        after = client.post("/activate", json={"function": "relu", "input": [1.0]})
        assert after.status_code == 500
        assert after.json()["error"] == "device_failure"
        assert calls["n"] == computed, "nothing may run on a device that failed"


def test_sticky_device_error_in_a_fused_batch_fails_liveness(monkeypatch: pytest.MonkeyPatch) -> None:
    def fused_assert(jobs: Sequence[Job], *args: Any) -> list[Result]:
        raise torch.AcceleratorError(STICKY_MESSAGE)

    original = Engine._compute

    def compute_assert(engine: Engine, job: Job) -> Result:
        if job.spec.name == "tanh":
            raise torch.AcceleratorError(STICKY_MESSAGE)
        return original(engine, job)

    monkeypatch.setattr(engine_module, "fused_call", fused_assert)
    monkeypatch.setattr(Engine, "_compute", compute_assert)
    with TestClient(create_app(Settings())) as client:
        reply = client.post("/activate", json={"function": "tanh", "input": [1.0]})
        assert reply.status_code == 500
        assert client.get("/healthz").status_code == 503


def send_and_leave(url: str, body: bytes) -> socket.socket:
    """A raw HTTP request whose client will hang up before the answer."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=5)
    head = (
        f"POST /activate HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body)
    return sock


def queued(app_compute: ComputeService) -> int:
    batcher = app_compute._batcher  # a test may look inside: the queue depth is not public
    return 0 if batcher is None else batcher.depth


def test_clients_that_leave_while_queued_are_not_computed(gate: Gate, pool: ThreadPoolExecutor) -> None:
    """End to end over real sockets: the request is queued behind a busy worker, its client hangs
    up, and the request is dropped before its batch runs."""
    app = create_app(Settings())
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        blocker = pool.submit(client.post, "/activate", json={"function": "relu", "input": [0.5]})
        assert gate.entered.wait(5)
        leavers = [send_and_leave(url, orjson.dumps({"function": "relu", "input": [MARK + i]})) for i in range(3)]
        stayer = pool.submit(client.post, "/activate", json={"function": "relu", "input": [-MARK]})
        deadline = time.monotonic() + 5
        while queued(app.state.compute) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert queued(app.state.compute) == 4
        for sock in leavers:
            sock.close()
        time.sleep(0.2)  # longer than the batcher waits before it asks whether a client is still there
        gate.release.set()
        assert blocker.result(30).status_code == 200
        assert stayer.result(30).json()["output"] == [0.0]
        assert [-MARK] in gate.computed
        for i in range(3):
            assert [MARK + i] not in gate.computed, "a request whose client had gone was computed"
        cancelled = httpx.get(f"{url}/metrics").text
        assert metric(cancelled, "torchfn_cancelled_total", reason="client_gone") == 3
        after = client.post("/activate", json={"function": "relu", "input": [-2.0, 3.0]})
        assert after.json()["output"] == [0.0, 3.0]


@pytest.mark.parametrize(
    ("raised", "expected"),
    [(RuntimeError(STICKY_MESSAGE), "device_failure"), (oom(), "out_of_memory")],
    ids=["sticky", "out-of-memory"],
)
def test_device_errors_are_translated_where_the_device_synchronises(
    raised: Exception, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CUDA reports errors at the next synchronising call, often the copy back to the host."""

    def sync_fails(tensor: torch.Tensor) -> np.ndarray:
        raise raised

    monkeypatch.setattr(engine_module, "to_host", sync_fails)
    with TestClient(create_app(Settings())) as client:
        reply = client.post("/activate", json={"function": "relu", "input": [1.0]})
        assert reply.status_code in (500, 503)
        assert reply.json()["details"][0]["type"] == expected
        assert (client.get("/healthz").status_code == 503) is (expected == "device_failure")
