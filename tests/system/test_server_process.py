"""The real server process: started by the container's command, under a large request, stopped."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import numpy as np
import orjson
import pytest

from tests.support.server_process import running_server

pytestmark = pytest.mark.server


@pytest.mark.serial
def test_large_request_does_not_stall_health_and_is_exact() -> None:
    values = np.random.default_rng(7).standard_normal(1_000_000).astype(np.float32)
    body = orjson.dumps({"function": "relu", "input": values}, option=orjson.OPT_SERIALIZE_NUMPY)
    with running_server() as server, httpx.Client(base_url=server.url, timeout=60) as client:
        replies: list[httpx.Response] = []

        def send() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as own:
                replies.append(own.post("/activate", content=body, headers={"content-type": "application/json"}))

        worker = threading.Thread(target=send)
        worker.start()
        worst = 0.0
        while worker.is_alive():
            started = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            worst = max(worst, time.perf_counter() - started)
            time.sleep(0.005)
        worker.join()
        assert replies[0].status_code == 200
        output = np.asarray(orjson.loads(replies[0].content)["output"], dtype=np.float64).astype(np.float32)
        np.testing.assert_array_equal(output, np.maximum(values, 0))
        assert worst < 1.0, f"/healthz took {worst:.3f} s during a large request"


def test_sigterm_stops_the_server_after_its_lifespan() -> None:
    with running_server() as server:
        reply = httpx.post(f"{server.url}/loss", json={"function": "mse_loss", "input": [1.0], "target": [0.0]})
        assert reply.json()["loss"] == 1.0
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(15) == 0
        assert "Application shutdown complete" in server.log()
