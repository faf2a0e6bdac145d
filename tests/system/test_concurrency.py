"""Through the HTTP app: many concurrent clients, batching, isolation, backpressure, deadlines."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from tests.support.engine_gate import Gate
from tests.support.exposition import metric


def batch_size(response: httpx.Response) -> int:
    match = re.search(r'batch;desc="size=(\d+)"', response.headers["server-timing"])
    assert match, response.headers
    return int(match.group(1))


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(32) as executor:
        yield executor


def test_concurrent_clients_each_get_their_own_answer(
    gate: Gate, pool: ThreadPoolExecutor, device: torch.device
) -> None:
    rng = np.random.default_rng(11)
    inputs = [rng.standard_normal(256).astype(np.float32) for _ in range(96)]
    poisoned = set(range(5, 96, 9))
    with TestClient(create_app(Settings(max_queue_size=512))) as client:
        blocker = pool.submit(client.post, "/activate", json={"function": "sigmoid", "input": [0.0] * 256})
        assert gate.entered.wait(5)

        def call(index: int) -> httpx.Response:
            values: list[float] = inputs[index].tolist()
            if index in poisoned:
                values[17] = 1e39  # overflows float32: this request alone must fail
            reply: httpx.Response = client.post(
                "/activate", json={"function": "sigmoid", "input": values, "grad": True}
            )
            return reply

        futures = [pool.submit(call, index) for index in range(len(inputs))]
        gate.release.set()
        replies = [future.result(30) for future in futures]
        assert blocker.result(30).status_code == 200
        metrics = client.get("/metrics").text
    # The batch-size histogram counts compute calls: fewer than requests, summing to all of them.
    calls = metric(metrics, "torchfn_batch_size_count")
    assert 1 < calls < len(inputs) + 1
    assert metric(metrics, "torchfn_batch_size_sum") == len(inputs) + 1
    sizes = []
    for index, reply in enumerate(replies):
        if index in poisoned:
            assert reply.status_code == 422, reply.text
            assert reply.json()["details"][0]["loc"] == ["body", "input"]
            continue
        assert reply.status_code == 200, reply.text
        x = torch.from_numpy(inputs[index]).to(device).requires_grad_()
        y = torch.sigmoid(x)
        (g,) = torch.autograd.grad(y, x, torch.ones_like(y))
        body = reply.json()
        assert np.asarray(body["output"], dtype=np.float32).tobytes() == y.detach().cpu().numpy().tobytes()
        assert np.asarray(body["grad"], dtype=np.float32).tobytes() == g.cpu().numpy().tobytes()
        sizes.append(batch_size(reply))
    assert max(sizes) > 1, "requests queued behind a busy worker were never batched"


def test_mixed_functions_and_shapes_under_concurrency(
    gate: Gate, pool: ThreadPoolExecutor, device: torch.device
) -> None:
    rng = np.random.default_rng(12)
    requests = []
    for index in range(60):
        size = [8, 8, 13, 256][index % 4]
        values = rng.standard_normal(size).tolist()
        if index % 3 == 0:
            requests.append(("/activate", {"function": "tanh", "input": values}))
        elif index % 3 == 1:
            requests.append(("/activate", {"function": "softmax", "input": values}))
        else:
            requests.append(("/loss", {"function": "mse_loss", "input": values, "target": [0.0] * size}))
    with TestClient(create_app(Settings())) as client:
        blocker = pool.submit(client.post, "/activate", json={"function": "relu", "input": [1.0]})
        assert gate.entered.wait(5)
        futures = [pool.submit(client.post, path, json=body) for path, body in requests]
        gate.release.set()
        replies = [future.result(30) for future in futures]
        assert blocker.result(30).status_code == 200
    for (path, body), reply in zip(requests, replies, strict=True):
        assert reply.status_code == 200, reply.text
        x = torch.tensor(body["input"], dtype=torch.float32, device=device)
        if body["function"] == "tanh":
            expected = torch.tanh(x)
        elif body["function"] == "softmax":
            expected = torch.softmax(x, dim=-1)
        else:
            expected = torch.nn.functional.mse_loss(x, torch.zeros_like(x))
        key = "output" if path == "/activate" else "loss"
        got = torch.tensor(reply.json()[key], dtype=torch.float64).to(torch.float32)
        assert torch.equal(got, expected.cpu())


def test_burst_beyond_the_queue_gets_503_at_once(gate: Gate, pool: ThreadPoolExecutor) -> None:
    with TestClient(create_app(Settings(max_queue_size=4))) as client:
        blocker = pool.submit(client.post, "/activate", json={"function": "relu", "input": [1.0]})
        assert gate.entered.wait(5)
        futures = [
            pool.submit(client.post, "/activate", json={"function": "relu", "input": [float(i)]}) for i in range(12)
        ]
        answered_while_held, _ = wait(futures, timeout=3)
        gate.release.set()
        everything = [future.result(30) for future in futures]
        assert blocker.result(30).status_code == 200
    assert len(answered_while_held) == 8
    for future in answered_while_held:
        reply = future.result()
        assert reply.status_code == 503
        assert reply.headers["retry-after"]
        assert reply.json()["error"] == "queue_full"
    assert sorted(reply.status_code for reply in everything).count(200) == 4


def test_request_deadline_header_gives_503_and_leaves_the_queue(gate: Gate, pool: ThreadPoolExecutor) -> None:
    with TestClient(create_app(Settings())) as client:
        blocker = pool.submit(client.post, "/activate", json={"function": "relu", "input": [1.0]})
        assert gate.entered.wait(5)
        late = client.post(
            "/activate", json={"function": "relu", "input": [2.0]}, headers={"X-Request-Timeout": "0.05"}
        )
        assert late.status_code == 503
        assert late.json()["error"] == "deadline_exceeded"
        assert late.headers["retry-after"]
        gate.release.set()
        assert blocker.result(30).status_code == 200
        bad = client.post("/activate", json={"function": "relu", "input": [2.0]}, headers={"X-Request-Timeout": "soon"})
        assert bad.status_code == 422
        assert bad.json()["details"][0]["loc"] == ["header", "x-request-timeout"]


def test_server_timing_reports_queue_compute_and_batch(client: TestClient) -> None:
    reply = client.post("/activate", json={"function": "relu", "input": [1.0]})
    assert re.fullmatch(r'queue;dur=[\d.]+, compute;dur=[\d.]+, batch;desc="size=1"', reply.headers["server-timing"])


def test_batching_can_be_switched_off() -> None:
    with TestClient(create_app(Settings(batching=False))) as client:
        reply = client.post("/activate", json={"function": "relu", "input": [-1.0, 2.0], "grad": True})
        assert reply.json()["output"] == [0.0, 2.0]
        assert batch_size(reply) == 1
