"""The server started with the container's exact command and environment (read from the
Dockerfile), queried for metrics, auth and request ids, and stopped with SIGTERM under load."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time

import httpx
import pytest

from app.telemetry.metrics import FOLD_S
from tests.support.exposition import metric
from tests.support.server_process import container_command_and_env, free_port, running_server

pytestmark = pytest.mark.server

KEY = "s3cret-key"


def test_auth_request_ids_metrics_and_json_logs() -> None:
    with running_server({"TORCHFN_API_KEYS": f"other-key,{KEY}"}) as server, httpx.Client(base_url=server.url) as http:
        body = {"function": "relu", "input": [1.0, -2.0]}

        refused = http.post("/activate", json=body)
        assert refused.status_code == 401
        assert refused.json()["error"] == "unauthorized"
        assert refused.json()["details"][0]["loc"] == ["header", "authorization"]
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert re.fullmatch(r"[0-9a-f]{32}", refused.headers["x-request-id"])
        assert http.post("/activate", json=body, headers={"authorization": "Bearer wrong"}).status_code == 401

        bearer = http.post("/activate", json=body, headers={"authorization": f"Bearer {KEY}", "x-request-id": "req-42"})
        assert bearer.status_code == 200
        assert bearer.json()["output"] == [1.0, 0.0]
        assert bearer.headers["x-request-id"] == "req-42"
        api_key = http.post(
            "/loss", json={"function": "l1_loss", "input": [1.0], "target": [3.0]}, headers={"x-api-key": KEY}
        )
        assert api_key.status_code == 200
        assert api_key.json()["loss"] == 2.0

        for open_path in ("/healthz", "/readyz", "/metrics"):
            assert http.get(open_path).status_code == 200, open_path
        assert http.get("/functions").status_code == 401

        text = http.get("/metrics").text
        assert (
            metric(text, "torchfn_requests_total", endpoint="/activate", function="relu", status="200", protocol="http")
            == 1
        )
        assert (
            metric(text, "torchfn_requests_total", endpoint="/activate", function="-", status="401", protocol="http")
            == 2
        )
        assert (
            metric(text, "torchfn_requests_total", endpoint="/loss", function="l1_loss", status="200", protocol="http")
            == 1
        )
        assert metric(text, "torchfn_queue_wait_seconds_count", function="relu") == 1
        assert metric(text, "torchfn_compute_seconds_count", function="l1_loss") == 1
        assert metric(text, "torchfn_batch_size_count") == 2
        assert metric(text, "torchfn_request_duration_seconds_count", endpoint="/activate", protocol="http") == 3
        assert "# TYPE torchfn_queue_depth gauge" in text
        assert "# TYPE torchfn_rejected_total counter" in text

        lines = server.json_lines_about("req-42")
        (access,) = [line for line in lines if line.get("logger") == "torchfn.access"]
        assert access["logger"] == "torchfn.access"
        assert (access["method"], access["path"], access["status"], access["function"]) == (
            "POST",
            "/activate",
            200,
            "relu",
        )


def _queued_load(http: httpx.Client, count: int, replies: list[httpx.Response]) -> list[threading.Thread]:
    """``count`` requests that cannot share a batch (each a different size), so with a batch
    delay each waits its turn in the queue: seconds of queued work. Each is over the cost computed
    on the event loop when alone, so that they queue rather than each being computed as it comes."""

    def send(size: int) -> None:
        replies.append(http.post("/activate", json={"function": "relu", "input": [-1.0] * (size - 1) + [2.0]}))

    threads = [threading.Thread(target=send, args=(2_000 + i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads


@pytest.mark.serial
def test_sigterm_under_load_fails_readiness_at_once_finishes_queued_work_and_exits_0() -> None:
    # 16 requests that each wait 400 ms for company that never comes: over 6 s of queued work
    env = {"TORCHFN_MAX_BATCH_DELAY_MS": "400", "TORCHFN_SHUTDOWN_GRACE_S": "30"}
    count = 16
    with (
        running_server(env) as server,
        httpx.Client(base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=count)) as http,
    ):
        replies: list[httpx.Response] = []
        threads = _queued_load(http, count, replies)
        deadline = time.monotonic() + 20
        while True:  # every request answered or inside the app, some of them queued
            text = httpx.get(f"{server.url}/metrics").text
            arrived = metric(text, "torchfn_requests_in_flight") - 1 + len(replies)  # less this scrape
            if arrived >= count and metric(text, "torchfn_queue_depth") >= 2:
                break
            assert time.monotonic() < deadline, "the load never queued up"
            time.sleep(0.02)
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()

        not_ready_after = None
        while not_ready_after is None and time.monotonic() - signalled < 2:
            try:
                if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 503:
                    not_ready_after = time.monotonic() - signalled
            except httpx.TransportError:  # the listener is closed: not ready either
                not_ready_after = time.monotonic() - signalled
        assert not_ready_after is not None
        assert not_ready_after < 0.5

        for thread in threads:
            thread.join(30)
        status = server.process.wait(30)
        assert status == 0
        assert sorted(reply.status_code for reply in replies) == [200] * count
        assert all(reply.json()["output"][-1] == 2.0 for reply in replies)
        assert len(replies) == count
        log = server.log()
        assert "Application shutdown complete" in log
        assert "Traceback" not in log


@pytest.mark.serial
def test_work_left_after_the_grace_period_gets_503_and_the_process_still_exits_0() -> None:
    env = {"TORCHFN_MAX_BATCH_DELAY_MS": "400", "TORCHFN_SHUTDOWN_GRACE_S": "1"}
    count = 16
    with (
        running_server(env) as server,
        httpx.Client(base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=count)) as http,
    ):
        outcomes: list[int | str] = []

        def send(size: int) -> None:
            try:
                body = {"function": "relu", "input": [1.0] * size}
                outcomes.append(http.post("/activate", json=body).status_code)
            except httpx.TransportError as error:
                outcomes.append(type(error).__name__)

        # Over the cost computed on the event loop when alone: they queue rather than each being
        # computed at once as it comes.
        threads = [threading.Thread(target=send, args=(2_000 + i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while metric(httpx.get(f"{server.url}/metrics").text, "torchfn_queue_depth") < 8:
            assert time.monotonic() < deadline, "the load never queued up"
            time.sleep(0.02)
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert server.process.wait(30) == 0
        stopped_after = time.monotonic() - signalled
        for thread in threads:
            thread.join(30)
        assert stopped_after < 6, f"stopped {stopped_after:.1f} s after SIGTERM with a 1 s grace period"
        assert len(outcomes) == count
        assert 200 in outcomes, "what finished within the grace period was answered"
        assert 503 in outcomes, f"the rest was cut off with 503, to retry elsewhere: {outcomes}"
        assert set(outcomes) <= {200, 503, "RemoteProtocolError", "ReadError"}, outcomes
        assert "Traceback" not in server.log()


def test_several_workers_share_metrics_and_stop_cleanly() -> None:
    env = {"TORCHFN_WORKERS": "2", "TORCHFN_DEVICE": "cpu"}  # several workers: CPU only (one process per GPU)
    with running_server(env) as server, httpx.Client(base_url=server.url) as http:
        deadline = time.monotonic() + 60
        while server.log().count("Application startup complete") < 2:  # ready means one is; wait for both
            assert time.monotonic() < deadline, "the second worker never started"
            time.sleep(0.1)
        sent = 30
        for _ in range(sent):
            with httpx.Client(base_url=server.url) as fresh:  # new connections spread over the workers
                assert fresh.post("/activate", json={"function": "tanh", "input": [0.0]}).status_code == 200
        # Each worker folds its tallies into the shared files every FOLD_S: all of them show by then.
        deadline = time.monotonic() + 2 * FOLD_S + 5
        while True:
            text = http.get("/metrics").text
            counted = metric(
                text, "torchfn_requests_total", endpoint="/activate", function="tanh", status="200", protocol="http"
            )
            if counted == sent or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert counted == sent
        assert metric(text, "torchfn_compute_seconds_count", function="tanh") == sent
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
        log = server.log()
        assert log.count("Application shutdown complete") == 2
        assert "died" not in log


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TORCHFN_WORKERS": "0"}, "TORCHFN_WORKERS"),
        ({"TORCHFN_DEVICE": "cuda", "TORCHFN_WORKERS": "2"}, "one process per GPU"),
        ({"TORCHFN_PORT": "http"}, "TORCHFN_PORT"),
    ],
)
def test_bad_settings_stop_the_server_command_with_a_message(env: dict[str, str], named: str) -> None:
    command, full_env = container_command_and_env(free_port(), env)
    result = subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr
