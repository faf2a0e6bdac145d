"""A stuck computation cannot hide: liveness reports a compute call that runs far past its time,
waiting clients get 503 at their deadline (a lone request too), and SIGTERM ends the process
within the shutdown grace period plus a second, whatever is running."""

from __future__ import annotations

import base64
import contextlib
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from tests.support.engine_gate import Gate
from tests.support.server_process import running_server


@pytest.fixture
def impatient() -> Iterator[TestClient]:
    settings = Settings(stuck_compute_s=0.3, request_timeout_s=0.5)
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_stuck_computation_fails_liveness_and_its_client_gets_503_at_the_deadline(
    impatient: TestClient, gate: Gate
) -> None:
    outcome: dict[str, httpx.Response] = {}
    started = time.monotonic()
    caller = threading.Thread(
        target=lambda: outcome.setdefault(
            "reply", impatient.post("/activate", json={"function": "relu", "input": [1.0]})
        )
    )
    caller.start()
    assert gate.entered.wait(5)
    assert impatient.get("/healthz").status_code == 200  # running, not yet stuck
    caller.join(5)
    reply = outcome["reply"]
    assert reply.status_code == 503, reply.text  # the lone request's deadline held while it computed
    assert reply.json()["details"][0]["type"] == "deadline_exceeded"
    assert time.monotonic() - started < 2.0
    while time.monotonic() - started < 0.4:
        time.sleep(0.02)
    live = impatient.get("/healthz")
    assert live.status_code == 503
    assert live.json()["error"] == "compute_stuck"
    assert impatient.get("/v2/health/live").status_code == 503
    gate.release.set()
    deadline = time.monotonic() + 5
    while impatient.get("/healthz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert impatient.get("/healthz").status_code == 200
    assert impatient.get("/v2/health/live").json() == {"live": True}


def _slow_loss_body(classes: int) -> dict[str, object]:
    x = np.zeros((1, classes), dtype=np.float32)
    target = np.arange(classes, dtype=np.int64)[None, :]
    return {
        "function": "multilabel_margin_loss",
        "input": {"shape": [1, classes], "dtype": "float32", "data": base64.b64encode(x.tobytes()).decode()},
        "target": {"shape": [1, classes], "dtype": "int64", "data": base64.b64encode(target.tobytes()).decode()},
        "grad": True,
    }


@pytest.mark.serial
@pytest.mark.server
def test_sigterm_ends_the_process_within_the_grace_period_plus_a_second_whatever_runs() -> None:
    grace = 1.0
    env = {
        "TORCHFN_SHUTDOWN_GRACE_S": str(grace),
        "TORCHFN_MAX_REQUEST_COST": "1e12",  # admit a computation of many seconds
        "TORCHFN_REQUEST_TIMEOUT_S": "60",
    }
    with running_server(env) as server:
        body = _slow_loss_body(60_000)  # ~10 s of one core
        sent = threading.Thread(target=lambda: _post_ignoring_errors(f"{server.url}/loss", body))
        sent.start()
        time.sleep(1.0)  # the computation is under way
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=grace + 5)
        took = time.monotonic() - signalled
        sent.join(10)
        assert took < grace + 1.0, f"exited {took:.2f} s after SIGTERM\n{server.log()[-2000:]}"
        assert server.process.returncode == 0, server.log()[-2000:]


def _post_ignoring_errors(url: str, body: dict[str, object]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the server stops under it
        httpx.post(url, json=body, timeout=30)
