"""Draining the gRPC face (its own module: draining is process-wide, and ends every gRPC server of the
process): from the stop signal new calls are refused at once while the calls in flight finish
within the grace period; a call still running at its end is cut off with UNAVAILABLE."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2

from app.core import lifecycle
from tests.support.engine_gate import Gate
from tests.support.oip_grpc import Client, grpc_serving, infer_request, outputs_of, status_of


@pytest.fixture
def draining_afterwards() -> Iterator[None]:
    try:
        yield
    finally:
        lifecycle._draining.clear()
        lifecycle._draining_since.clear()


def relu_of(value: float) -> object:
    return infer_request("relu", {"input": torch.tensor([value])})


def refused(client: Client, timeout: float = 15.0) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """The status of a new call, once the server refuses new calls (the drain begins on its loop)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.infer(infer_request("relu", {"input": torch.tensor([1.0])}), timeout=5)
        except grpc.RpcError as error:
            return status_of(error)
        if time.monotonic() > deadline:
            raise TimeoutError("new calls were still served")
        time.sleep(0.01)


@pytest.mark.usefixtures("draining_afterwards")
def test_new_calls_are_refused_at_once_and_calls_in_flight_finish(gate: Gate) -> None:
    with ThreadPoolExecutor(2) as pool, grpc_serving(shutdown_grace_s=30) as served:
        client = Client(served.address)
        watch: Any = client.health_watch(health_pb2.HealthCheckRequest(), timeout=60)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        in_flight = pool.submit(client.infer, infer_request("relu", {"input": torch.tensor([-3.0, 3.0])}))
        assert gate.entered.wait(30)
        started = time.monotonic()
        lifecycle.begin_draining()
        code, _, _ = refused(client)
        # A call on the wire as the server stops taking calls is cancelled by gRPC itself; the next
        # finds the listener closed (and its connection gone away): UNAVAILABLE, retry elsewhere.
        assert code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
        assert refused(client)[0] == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 20  # at once, not at the end of the grace period
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        gate.release.set()
        assert outputs_of(in_flight.result(60))["output"].tolist() == [0.0, 3.0]
        client.close()


@pytest.mark.usefixtures("draining_afterwards")
def test_a_call_still_running_when_the_grace_period_ends_is_cut_off_to_retry_elsewhere(gate: Gate) -> None:
    with ThreadPoolExecutor(2) as pool, grpc_serving(shutdown_grace_s=1.0) as served:
        client = Client(served.address)
        in_flight = pool.submit(client.refusal, infer_request("relu", {"input": torch.tensor([1.0])}))
        assert gate.entered.wait(30)
        lifecycle.begin_draining()
        code, details, trailing = status_of(in_flight.result(60))
        gate.release.set()
        client.close()
    assert code == grpc.StatusCode.UNAVAILABLE
    assert details == "service: the server shut down before this call was served; retry"
    assert trailing["retry-after"] == "1"
