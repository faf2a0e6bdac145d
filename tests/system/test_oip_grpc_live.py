"""The Open Inference Protocol over gRPC against the real server process (the container's command,
its gRPC face on a port of its own): tritonclient.grpc and KServe's gRPC client unchanged, each in a
process of its own (they cannot share one, kserve/kserve#3099); a hostile client; SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2

from app.protocols.oip.grpc.messages import ModelInferRequest
from tests.support.exposition import metric
from tests.support.oip_grpc import Client, infer_request, outputs_of, status_of
from tests.support.paths import ROOT
from tests.support.server_process import RunningServer, running_server

pytestmark = pytest.mark.server

KEY = "grpc-test-key"
AUTH = (("authorization", f"Bearer {KEY}"),)
ELEMENTS = 1_000_000
ENV = {
    "TORCHFN_API_KEYS": KEY,
    "TORCHFN_MAX_TOTAL_ELEMENTS": str(ELEMENTS),
    "TORCHFN_MAX_TENSOR_ELEMENTS": str(ELEMENTS),
    "TORCHFN_MAX_BODY_BYTES": str(16 * 1024 * 1024),
    "TORCHFN_LOG_FORMAT": "json",
}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(ENV) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[Client]:
    assert server.grpc_address is not None
    own = Client(server.grpc_address)
    yield own
    own.close()


@pytest.mark.parametrize("name", ["triton-service", "kserve-service"])
def test_a_real_client_works_unchanged(server: RunningServer, name: str) -> None:
    assert server.grpc_address is not None
    run = subprocess.run(
        [sys.executable, "-m", "tests.support.oip_grpc_clients", name, server.grpc_address, KEY],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.strip() == "ok"


def test_the_largest_reply_is_sent_and_a_message_past_the_body_limit_is_refused(client: Client) -> None:
    x = torch.randn(ELEMENTS, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    response = client.infer(infer_request("relu", {"input": x}, {"grad": True}), AUTH)
    outputs = outputs_of(response)
    assert torch.equal(outputs["output"], torch.relu(x))
    assert torch.equal(outputs["grad_input"], (x > 0).double())
    oversized = ModelInferRequest(model_name="relu", id="x" * (17 * 1024 * 1024))
    code, details, _ = status_of(client.refusal(oversized, AUTH))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert outputs_of(client.infer(infer_request("relu", {"input": torch.ones(2)}), AUTH))["output"].tolist() == [
        1.0,
        1.0,
    ]


HOSTILE: dict[str, tuple[ModelInferRequest, tuple[tuple[str, str], ...], grpc.StatusCode]] = {
    "no key": (infer_request("relu", {"input": torch.ones(2)}), (), grpc.StatusCode.UNAUTHENTICATED),
    "a wrong datatype": (
        ModelInferRequest(
            model_name="relu",
            inputs=[ModelInferRequest.InferInputTensor(name="input", datatype="BOOL", shape=[1])],
            raw_input_contents=[b"\x01"],
        ),
        AUTH,
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "a missing input": (infer_request("mse_loss", {"input": torch.ones(2)}), AUTH, grpc.StatusCode.INVALID_ARGUMENT),
    "FP16 in typed contents, which have no field for it": (
        ModelInferRequest(
            model_name="relu",
            inputs=[ModelInferRequest.InferInputTensor(name="input", datatype="FP16", shape=[1])],
        ),
        AUTH,
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "a shape that lies about its bytes": (
        ModelInferRequest(
            model_name="relu",
            inputs=[ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[2**20, 2**20])],
            raw_input_contents=[bytes(8)],
        ),
        AUTH,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ),
    "metadata past its limit": (
        infer_request("relu", {"input": torch.ones(2)}),
        (*AUTH, ("x-padding", "p" * 20_000)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_call_is_refused_cheaply_and_harms_no_one(client: Client, case: str) -> None:
    request, metadata, code = HOSTILE[case]
    got, details, _ = status_of(client.refusal(request, metadata))
    assert got == code, details
    assert "Traceback" not in details
    assert outputs_of(client.infer(infer_request("relu", {"input": torch.ones(1)}), AUTH))["output"].tolist() == [1.0]


def test_many_streams_deadlines_and_cancellations_leave_the_server_serving(
    server: RunningServer, client: Client
) -> None:
    x = torch.randn(4096, generator=torch.Generator().manual_seed(2))
    request = infer_request("relu", {"input": x})
    calls = [client.infer_call.future(request, metadata=AUTH, timeout=120) for _ in range(300)]  # past 100 streams
    late = [client.infer_call.future(request, metadata=AUTH, timeout=0.001) for _ in range(20)]
    dropped = [client.infer_call.future(request, metadata=AUTH, timeout=120) for _ in range(20)]
    for call in dropped:
        call.cancel()
    for call in calls:
        assert torch.equal(outputs_of(call.result())["output"], torch.relu(x))
    failed: list[Any] = [call.exception() for call in late if call.exception() is not None]
    assert {error.code() for error in failed} <= {grpc.StatusCode.DEADLINE_EXCEEDED}
    assert client.health_check(health_pb2.HealthCheckRequest(), timeout=10).status == (
        health_pb2.HealthCheckResponse.SERVING
    )
    assert "Traceback" not in server.log()


def test_calls_are_counted_in_the_metrics_and_logged_with_their_request_id(
    server: RunningServer, client: Client
) -> None:
    import httpx

    client.infer(infer_request("tanh", {"input": torch.zeros(3)}), (*AUTH, ("x-request-id", "grpc-live-1")))
    deadline = time.monotonic() + 10
    while True:
        text = httpx.get(f"{server.url}/metrics").text
        labels = {"endpoint": "/inference.GRPCInferenceService/ModelInfer", "function": "tanh", "protocol": "grpc"}
        if metric(text, "torchfn_requests_total", status="OK", **labels) == 1:
            break
        assert time.monotonic() < deadline, "the call was never counted"
        time.sleep(0.1)
    lines = server.json_lines_about("grpc-live-1")
    (access,) = [line for line in lines if line["logger"] == "torchfn.access"]
    assert (access["status"], access["protocol"], access["function"]) == ("OK", "grpc", "tanh")


# ----------------------------------------------------------------------------- SIGTERM


def _queued_calls(client: Client, count: int, outcomes: list[object]) -> list[threading.Thread]:
    """``count`` calls that cannot share a batch (each a different size): with a batch delay each
    waits its turn in the queue. Each is over the cost computed on the event loop when alone
    (``TORCHFN_INLINE_COMPUTE_MAX_COST``), so that the calls queue rather than each being computed
    at once as it comes."""

    def send(size: int) -> None:
        request = infer_request("relu", {"input": torch.tensor([-1.0] * (size - 1) + [2.0])})
        try:
            outcomes.append(outputs_of(client.infer(request))["output"][-1].item())
        except grpc.RpcError as error:
            outcomes.append(error.code())

    threads = [threading.Thread(target=send, args=(2_000 + i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads


def _until_queued(server: RunningServer, depth: int) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while metric(httpx.get(f"{server.url}/metrics").text, "torchfn_queue_depth") < depth:
        assert time.monotonic() < deadline, "the calls never queued up"
        time.sleep(0.02)


@pytest.mark.serial
def test_sigterm_refuses_new_calls_at_once_finishes_the_calls_in_flight_and_exits_0() -> None:
    env = {"TORCHFN_MAX_BATCH_DELAY_MS": "400", "TORCHFN_SHUTDOWN_GRACE_S": "30"}
    count = 12
    with running_server(env) as server:
        assert server.grpc_address is not None
        client, fresh = (
            Client(server.grpc_address),
            Client(server.grpc_address, [("grpc.use_local_subchannel_pool", 1)]),
        )
        outcomes: list[object] = []
        threads = _queued_calls(client, count, outcomes)
        _until_queued(server, 2)
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        refused_after = None
        while refused_after is None and time.monotonic() - signalled < 5:
            try:
                status = fresh.health_check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    refused_after = time.monotonic() - signalled
            except grpc.RpcError:  # the server takes no new calls: not ready either
                refused_after = time.monotonic() - signalled
        assert refused_after is not None
        assert refused_after < 2
        for thread in threads:
            thread.join(60)
        assert server.process.wait(30) == 0
        assert outcomes == [2.0] * count  # every call in flight was served
        assert "Traceback" not in server.log()
        client.close()
        fresh.close()


@pytest.mark.serial
def test_calls_left_after_the_grace_period_are_unavailable_and_the_process_exits_0() -> None:
    env = {"TORCHFN_MAX_BATCH_DELAY_MS": "400", "TORCHFN_SHUTDOWN_GRACE_S": "1"}
    count = 16
    with running_server(env) as server:
        assert server.grpc_address is not None
        client = Client(server.grpc_address)
        outcomes: list[object] = []
        threads = _queued_calls(client, count, outcomes)
        _until_queued(server, 5)  # 2 s of queued work at least: more than the grace period
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert server.process.wait(30) == 0
        stopped_after = time.monotonic() - signalled
        for thread in threads:
            thread.join(30)
        client.close()
        assert stopped_after < 6, f"stopped {stopped_after:.1f} s after SIGTERM with a 1 s grace period"
        assert 2.0 in outcomes, "what finished within the grace period was answered"
        assert grpc.StatusCode.UNAVAILABLE in outcomes, f"the rest was cut off, to retry elsewhere: {outcomes}"
        assert set(outcomes) <= {2.0, grpc.StatusCode.UNAVAILABLE}, outcomes
        assert "Traceback" not in server.log()


def test_several_workers_share_the_grpc_port() -> None:
    env = {"TORCHFN_WORKERS": "2", "TORCHFN_DEVICE": "cpu"}
    with running_server(env) as server:
        assert server.grpc_address is not None
        deadline = time.monotonic() + 60
        while server.log().count("gRPC listening on") < 2:
            assert time.monotonic() < deadline, "the second worker never started"
            time.sleep(0.1)
        values = np.arange(-3, 3, dtype=np.float32)
        for _ in range(20):  # a connection each: spread over the workers by the kernel
            fresh = Client(server.grpc_address, [("grpc.use_local_subchannel_pool", 1)])
            response = fresh.infer(infer_request("relu", {"input": torch.from_numpy(values)}))
            assert outputs_of(response)["output"].tolist() == np.maximum(values, 0).tolist()
            fresh.close()
