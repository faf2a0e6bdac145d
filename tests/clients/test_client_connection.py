"""The client's connection settings and refusals: a full queue (503, retried), timeouts, API keys
and TLS against a real uvicorn server in this process (so the engine can be held), and the retry
rules and request bodies against httpx's mock transport."""

from __future__ import annotations

import asyncio
import email.utils
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from torchfn_client import (
    AsyncClient,
    Client,
    ServerError,
    ServiceUnavailable,
    Timeout,
    TransportError,
    Unauthorized,
)

from app.compute.service import ComputeService
from app.core.config import Settings
from app.main import create_app
from tests.support.engine_gate import Gate
from tests.support.inprocess_server import serving


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def queued(compute: ComputeService) -> int:
    batcher = compute._batcher  # the queue depth is not public
    return 0 if batcher is None else batcher.depth


class Recording(httpx.HTTPTransport):
    """httpx's transport, noting each status; on the first 503 it lets the held engine go."""

    def __init__(self, gate: Gate) -> None:
        super().__init__()
        self.gate = gate
        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.statuses.append(response.status_code)
        if response.status_code == 503:
            self.gate.release.set()
        return response


def test_a_full_queue_is_retried_after_retry_after(gate: Gate, pool: ThreadPoolExecutor) -> None:
    app = create_app(Settings(max_queue_size=1))
    with serving(app) as url, Client(url) as first, Client(url) as second:
        blocker = pool.submit(first.activate, "relu", [0.5])
        assert gate.entered.wait(5)
        waiting = pool.submit(second.activate, "relu", [-0.5])
        deadline = time.monotonic() + 5
        while queued(app.state.compute) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert queued(app.state.compute) == 1
        with Client(url, max_retries=0) as impatient, pytest.raises(ServiceUnavailable) as caught:
            impatient.activate("relu", [1.0])
        assert (caught.value.status, caught.value.error, caught.value.retry_after) == (503, "queue_full", 1.0)
        transport = Recording(gate)
        with Client(url, transport=transport, max_retries=2) as patient:
            started = time.monotonic()
            result = patient.activate("relu", [2.0, -2.0])
            waited = time.monotonic() - started
        assert transport.statuses == [503, 200]
        assert waited >= 1.0, "the retry waits the Retry-After the service sent"
        assert result.output.tolist() == [2.0, 0.0]
        assert blocker.result(30).output.tolist() == [0.5]
        assert waiting.result(30).output.tolist() == [0.0]


def test_a_timeout_raises_timeout(gate: Gate, pool: ThreadPoolExecutor) -> None:
    with serving(create_app(Settings())) as url, Client(url, timeout=0.3) as client:
        with pytest.raises(Timeout, match="no answer in time"):
            client.activate("relu", [1.0])
        gate.release.set()
        assert client.activate("relu", [-1.0]).output.tolist() == [0.0]
    with Client(url, timeout=1) as client, pytest.raises(TransportError):
        client.functions()  # the server has stopped: nothing listens


def test_api_key_is_sent_as_a_bearer_token() -> None:
    with serving(create_app(Settings(api_keys=["k1", "k2"]))) as url:
        with Client(url) as anonymous, pytest.raises(Unauthorized) as caught:
            anonymous.activate("relu", [1.0])
        assert caught.value.status == 401
        assert caught.value.field == "header.authorization"
        with Client(url, api_key="wrong") as wrong, pytest.raises(Unauthorized):
            wrong.functions()
        with Client(url, api_key="k2") as client:
            assert client.activate("relu", [-1.0, 1.0]).output.tolist() == [0.0, 1.0]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cas" / "cert.pem", folder / "key.pem"
    cert.parent.mkdir()
    request = "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
    command = [openssl, *request.split(), "-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True)
    subprocess.run([openssl, "rehash", str(cert.parent)], check=True, capture_output=True)  # a CA directory
    return str(cert), str(key)


def test_tls_settings(certificate: tuple[str, str]) -> None:
    cert, key = certificate
    with serving(create_app(Settings()), tls=certificate) as url:
        assert url.startswith("https://")
        with Client(url) as untrusting, pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusting.functions()
        with Client(url, verify=cert) as trusting:
            assert trusting.activate("relu", [1.0]).output.tolist() == [1.0]
        with Client(url, verify=str(Path(cert).parent)) as by_directory:
            assert by_directory.functions()
        with Client(url, verify=False) as unverified:
            assert unverified.function("relu").name == "relu"
        with Client(url, verify=cert, cert=(cert, key)) as with_client_certificate:
            assert with_client_certificate.activate("relu", [-1.0]).output.tolist() == [0.0]


# The retry rules and the request bodies, against httpx's mock transport.

OK_BODY = {"function": "relu", "output": [1.0], "grad": None, "shape": [1], "dtype": "float32"}
BUSY_BODY = {"error": "queue_full", "message": "the compute queue is full", "details": [], "truncated": False}


class Scripted:
    """Answers with the given responses in turn, keeping the requests."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]

    def body(self, index: int = -1) -> dict[str, object]:
        body: dict[str, object] = json.loads(self.requests[index].content)
        return body


def busy(retry_after: str | None = "0") -> httpx.Response:
    return httpx.Response(503, json=BUSY_BODY, headers={"Retry-After": retry_after} if retry_after else {})


def test_503_is_retried_a_bounded_number_of_times() -> None:
    answers = Scripted(busy(), busy(), httpx.Response(200, json=OK_BODY))
    with Client("http://torchfn.test", transport=httpx.MockTransport(answers), max_retries=2) as client:
        assert client.activate("relu", [1.0]).output.tolist() == [1.0]
    assert len(answers.requests) == 3
    always_busy = Scripted(busy())
    transport = httpx.MockTransport(always_busy)
    with (
        Client("http://torchfn.test", transport=transport, max_retries=2) as client,
        pytest.raises(ServiceUnavailable) as caught,
    ):
        client.activate("relu", [1.0])
    assert len(always_busy.requests) == 3
    assert caught.value.error == "queue_full"
    assert caught.value.retry_after == 0


def test_only_a_503_with_retry_after_is_retried_and_the_wait_is_capped() -> None:
    for answer in (busy(retry_after=None), httpx.Response(500, json={**BUSY_BODY, "error": "device_failure"})):
        once = Scripted(answer)
        client = Client("http://torchfn.test", transport=httpx.MockTransport(once))
        with client, pytest.raises(ServerError):
            client.activate("relu", [1.0])
        assert len(once.requests) == 1
    far = Scripted(busy(retry_after="3600"), httpx.Response(200, json=OK_BODY))
    started = time.monotonic()
    with Client("http://torchfn.test", transport=httpx.MockTransport(far), max_retry_wait=0.05) as client:
        client.activate("relu", [1.0])
    assert time.monotonic() - started < 2
    assert len(far.requests) == 2
    soon = email.utils.formatdate(time.time() - 5, usegmt=True)  # a date already past: retry at once
    dated = Scripted(busy(retry_after=soon), httpx.Response(200, json=OK_BODY))
    with Client("http://torchfn.test", transport=httpx.MockTransport(dated)) as client:
        client.activate("relu", [1.0])
    assert len(dated.requests) == 2


def test_an_error_page_not_from_the_service_keeps_its_text() -> None:
    page = Scripted(httpx.Response(502, text="<html>bad gateway</html>"))
    client = Client("http://torchfn.test", transport=httpx.MockTransport(page))
    with client, pytest.raises(ServerError) as caught:
        client.functions()
    assert (caught.value.status, caught.value.error) == (502, "http_502")
    assert "bad gateway" in caught.value.message
    assert caught.value.field is None


def test_request_bodies_headers_and_chaining() -> None:
    loss_body = {"function": "mse_loss", "loss": 0.5, "grad": None, "shape": [], "dtype": "float32"}
    answers = Scripted(httpx.Response(200, json=loss_body))
    transport = httpx.MockTransport(answers)
    with Client("http://torchfn.test", transport=transport, api_key="key") as client:
        client.loss("mse_loss", [1.0], [0.0], activation="sigmoid")
        client.loss("mse_loss", [1.0], [0.0], activation={"function": "leaky_relu", "params": {"negative_slope": 0.2}})
    first, second = answers.body(0), answers.body(1)
    assert first["activation"] == {"function": "sigmoid"}
    assert second["activation"] == {"function": "leaky_relu", "params": {"negative_slope": 0.2}}
    assert first == {"function": "mse_loss", "input": [1.0], "target": [0.0], "activation": {"function": "sigmoid"}}
    request = answers.requests[0]
    assert request.headers["authorization"] == "Bearer key"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("torchfn-client/")


def test_the_async_client_retries_too() -> None:
    answers = Scripted(busy(), httpx.Response(200, json=OK_BODY))

    async def call() -> list[float]:
        async with AsyncClient("http://torchfn.test", transport=httpx.MockTransport(answers)) as client:
            result = await client.activate("relu", [1.0])
            values: list[float] = result.output.tolist()
            return values

    assert asyncio.run(call()) == [1.0]
    assert len(answers.requests) == 2
