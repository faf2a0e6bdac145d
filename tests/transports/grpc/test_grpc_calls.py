"""A gRPC call on the road beside HTTP requests, with the engine gated (``tests/support/engine_gate``)
so that calls queue deterministically: it shares a batch with an HTTP request, a cancelled or late
call's work is dropped before it reaches the engine, a full queue answers RESOURCE_EXHAUSTED with a
retry delay; and auth with the same keys as HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import httpx
import pytest
import torch
from grpc_health.v1 import health_pb2

from app.compute.service import ComputeService
from app.protocols.oip.grpc.messages import ServerLiveRequest
from tests.support.engine_gate import Gate
from tests.support.exposition import metric
from tests.support.oip_grpc import Client, Metadata, Served, grpc_serving, infer_request, outputs_of, status_of

BLOCKER = {"function": "relu", "input": [100.0]}


def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"never: {what}")
        time.sleep(0.005)


def relu_of(value: float) -> Any:
    return infer_request("relu", {"input": torch.tensor([value])})


class Gated:
    """A served app whose engine holds its first compute call (an HTTP relu of 100) until released."""

    def __init__(self, served: Served, gate: Gate, pool: ThreadPoolExecutor) -> None:
        self.served = served
        self.gate = gate
        self.pool = pool
        self.client = Client(served.address)
        self.compute: ComputeService = served.app.state.compute
        self.blocker = pool.submit(httpx.post, f"{served.url}/activate", json=BLOCKER, timeout=60)
        assert gate.entered.wait(30), "the blocker never reached the engine"

    def queued(self, depth: int) -> None:
        until(lambda: self.compute.queue_depth == depth, f"{depth} queued")

    def cancelled(self) -> float:
        value = self.served.app.state.metrics.registry.get_sample_value(
            "torchfn_cancelled_total", {"reason": "cancelled"}
        )
        return float(value or 0.0)

    def release(self) -> None:
        self.gate.release.set()
        assert self.blocker.result(60).status_code == 200


@pytest.fixture
def gated(gate: Gate, request: pytest.FixtureRequest) -> Iterator[Gated]:
    changes = getattr(request, "param", {})
    with ThreadPoolExecutor(4) as pool, grpc_serving(**changes) as served:
        running = Gated(served, gate, pool)
        try:
            yield running
        finally:
            gate.release.set()
            running.client.close()


def test_an_http_request_and_a_grpc_call_share_a_batch(gated: Gated) -> None:
    call = gated.pool.submit(gated.client.infer, relu_of(-1.5))
    gated.queued(1)
    http = gated.pool.submit(httpx.post, f"{gated.served.url}/activate", json={"function": "relu", "input": [2.5]})
    gated.queued(2)
    gated.release()
    reply = http.result(60)
    assert reply.json()["output"] == [2.5]
    assert 'batch;desc="size=2"' in reply.headers["server-timing"]  # the call was its company
    assert outputs_of(call.result(60))["output"].tolist() == [0.0]
    assert sorted(gated.gate.computed[1:]) == [[-1.5], [2.5]]


def test_a_call_in_flight_counts_in_the_requests_in_flight_beside_http(gated: Gated) -> None:
    metrics = gated.served.app.state.metrics
    assert metrics.in_flight_now == 1  # the HTTP blocker
    call = gated.pool.submit(gated.client.infer, relu_of(3.0))
    gated.queued(1)
    assert metrics.in_flight_now == 2
    text = httpx.get(f"{gated.served.url}/metrics").text
    assert metric(text, "torchfn_requests_in_flight") == 3  # and this scrape
    gated.release()
    assert outputs_of(call.result(60))["output"].tolist() == [3.0]
    until(lambda: metrics.in_flight_now == 0, "every request answered")


def test_a_cancelled_call_is_dropped_before_the_engine(gated: Gated) -> None:
    future: Any = gated.client.infer_call.future(relu_of(7.0), timeout=60)
    gated.queued(1)
    future.cancel()
    until(lambda: gated.cancelled() == 1, "the server saw the cancellation")
    gated.release()
    assert outputs_of(gated.client.infer(relu_of(5.0)))["output"].tolist() == [5.0]  # the queue moved on
    assert [7.0] not in gated.gate.computed
    assert gated.gate.computed[-1] == [5.0]


def test_a_call_past_its_deadline_is_deadline_exceeded_and_never_computed(gated: Gated) -> None:
    code, _, _ = status_of(gated.client.refusal(relu_of(9.0), timeout=0.5))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    gated.release()
    assert outputs_of(gated.client.infer(relu_of(5.0)))["output"].tolist() == [5.0]
    assert [9.0] not in gated.gate.computed


@pytest.mark.parametrize("gated", [{"max_queue_size": 1}], indirect=True)
def test_a_full_queue_is_resource_exhausted_with_a_retry_delay(gated: Gated) -> None:
    queued = gated.pool.submit(gated.client.infer, relu_of(1.0))
    gated.queued(1)
    code, details, trailing = status_of(gated.client.refusal(relu_of(2.0)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details == "service: the queue is full (1 waiting)"
    assert (trailing["retry-after"], trailing["grpc-retry-pushback-ms"]) == ("1", "1000")
    gated.release()
    assert outputs_of(queued.result(60))["output"].tolist() == [1.0]


# ----------------------------------------------------------------------------- auth


@pytest.fixture(scope="module")
def keyed() -> Iterator[Served]:
    with grpc_serving(api_keys=["k1", "k2"]) as served:
        yield served


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer nope"),), (("x-api-key", "k3"),), (("authorization", "Basic k1"),)],
    ids=["none", "wrong-bearer", "wrong-api-key", "not-bearer"],
)
def test_a_call_without_a_valid_key_is_unauthenticated(keyed: Served, metadata: Metadata) -> None:
    client = Client(keyed.address)
    code, details, _ = status_of(client.refusal(relu_of(1.0), metadata))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert details.startswith("metadata.authorization: a valid API key is required")
    with pytest.raises(grpc.RpcError) as raised:
        client.live_call(ServerLiveRequest(), metadata=metadata, timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    client.close()


@pytest.mark.parametrize(
    "metadata",
    [(("authorization", "Bearer k1"),), (("authorization", "bearer k2"),), (("x-api-key", "k2"),)],
    ids=["bearer", "lower-case-bearer", "api-key"],
)
def test_the_same_keys_as_over_http_open_every_method(keyed: Served, metadata: Metadata) -> None:
    client = Client(keyed.address)
    assert outputs_of(client.infer(relu_of(-1.0), metadata))["output"].tolist() == [0.0]
    assert client.live_call(ServerLiveRequest(), metadata=metadata, timeout=10).live
    client.close()
    headers = {name: str(value) for name, value in metadata}
    assert httpx.post(f"{keyed.url}/activate", json=BLOCKER, headers=headers).status_code == 200


def test_the_standard_health_service_needs_no_key(keyed: Served) -> None:
    client = Client(keyed.address)
    response = client.health_check(health_pb2.HealthCheckRequest(), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    client.close()
