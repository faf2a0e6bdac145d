"""The HTTP layer's own limits, over real sockets against the real server process: request heads
bounded in bytes and header lines (431), a deadline for a head to arrive, a cap on open
connections (503), the open-files limit fitted to that cap, ``HEAD`` wherever ``GET`` is served,
strict header numbers, compressed bodies, and text logs that a client cannot forge lines into."""

from __future__ import annotations

import contextlib
import gzip
import logging
import resource
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import orjson
import pytest

from app import serve
from app.core.logs import JsonFormatter
from app.main import create_app
from app.transports.http.headers import header_number
from tests.support.error_bodies import check_error_body
from tests.support.raw_http import exchange
from tests.support.server_process import RunningServer, running_server

pytestmark = pytest.mark.server

HEAD_LIMIT = 16 * 1024
"""The default ``max_head_bytes``, which the server here keeps."""
HEAD_TIMEOUT = 0.5
MAX_CONNECTIONS = 24
BODY_LIMIT = 32 * 1024 * 1024
LOW_SOFT_FILES = 200
"""The soft open-files limit the server is started under: below the cap and its spare descriptors."""

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
OIP_BODY = orjson.dumps({"inputs": [{"name": "input", "shape": [2], "datatype": "FP32", "data": [-1.0, 2.0]}]})


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    env = {
        "TORCHFN_HEAD_TIMEOUT_S": str(HEAD_TIMEOUT),
        "TORCHFN_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "TORCHFN_MAX_BODY_BYTES": str(BODY_LIMIT),
        "TORCHFN_LOG_FORMAT": "text",
    }
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.ExitStack() as stack:
        resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_SOFT_FILES, hard))  # the server inherits it
        try:
            running = stack.enter_context(running_server(env))
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        yield running


def connect(url: str, timeout: float = 5.0) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout)


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def assert_healthy(url: str) -> None:
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200


# Request heads


@pytest.mark.parametrize("size", [64 * 1024, 4 * 1024 * 1024])
def test_an_oversized_head_gets_431_after_the_limit(server: RunningServer, size: int) -> None:
    """One header line far over the limit is refused as soon as the limit is read: the reply
    comes before the client has sent it all (the server reads no more), and costs no more for a
    larger head."""
    payload = b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
    cpu_before = server.cpu_seconds()
    reply = exchange(server.url, payload, probe_close=True)
    cpu = server.cpu_seconds() - cpu_before
    assert reply.status == 431
    assert reply.closed
    assert reply.headers["x-content-type-options"] == "nosniff"
    body = check_error_body(reply.body, 431)
    assert body["details"][0]["loc"] == ["header"]
    assert str(HEAD_LIMIT) in body["message"]
    assert cpu < 0.2, f"the server spent {cpu:.2f} s of CPU on a {size}-byte head"
    assert_healthy(server.url)


def test_a_head_trickled_past_the_limit_is_refused(server: RunningServer) -> None:
    """Sent a kilobyte at a time (httptools would join the pieces of a header quadratically)."""
    with connect(server.url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Big: ")
        sent = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < 4 * HEAD_LIMIT:
                sock.sendall(b"a" * 1024)
                sent += 1024
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:100]


def test_a_head_just_under_the_limit_is_served(server: RunningServer) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Big: "
    payload = request + b"a" * (HEAD_LIMIT - len(request) - 5) + b"\r\n\r\n"
    assert len(payload) == HEAD_LIMIT - 1
    assert exchange(server.url, payload, probe_close=False).status == 200


def test_too_many_headers_get_431(server: RunningServer) -> None:
    def with_headers(count: int) -> bytes:
        lines = b"".join(b"X-H%d: 1\r\n" % i for i in range(count - 1))
        return b"GET /healthz HTTP/1.1\r\nHost: test\r\n" + lines + b"\r\n"

    assert exchange(server.url, with_headers(100), probe_close=False).status == 200
    reply = exchange(server.url, with_headers(101), probe_close=True)
    assert reply.status == 431
    assert reply.closed
    assert "more than 100 headers" in check_error_body(reply.body, 431)["message"]
    assert_healthy(server.url)


def test_pipelined_requests_are_each_counted_from_their_own_head(server: RunningServer) -> None:
    """Keep-alive and pipelining still work: three requests in one write, the second with a
    body, each head well under the limit although together they are over it."""
    filler = b"X-Fill: " + b"f" * (HEAD_LIMIT // 2) + b"\r\n"
    body = b'{"function": "relu", "input": [-1.0, 2.0]}'
    post = (
        b"POST /activate HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + filler
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )
    get = b"GET /healthz HTTP/1.1\r\nHost: test\r\n" + filler + b"\r\n"
    last = b"GET /readyz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    with connect(server.url) as sock:
        sock.sendall(get + post + get + last)
        replies = read_until_closed(sock)
    assert replies.count(b"HTTP/1.1 200 OK") == 4, replies[:2000]
    assert b'"output":[0.0,2.0]' in replies


# Deadlines and the connection cap


def test_a_connection_that_sends_nothing_is_closed(server: RunningServer) -> None:
    with connect(server.url) as sock:
        started = time.monotonic()
        assert read_until_closed(sock) == b""
        waited = time.monotonic() - started
    assert HEAD_TIMEOUT * 0.8 < waited < HEAD_TIMEOUT + 1.0


def test_a_slowloris_head_is_closed_at_its_deadline(server: RunningServer) -> None:
    """Bytes keep coming, but the head never ends: the deadline is for the whole head."""
    with connect(server.url) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while time.monotonic() - started < HEAD_TIMEOUT + 2.0:
                sock.sendall(b"X: y\r\n")
                time.sleep(HEAD_TIMEOUT / 10)
        assert read_until_closed(sock) == b""
        waited = time.monotonic() - started
    assert waited < HEAD_TIMEOUT + 1.5


def test_a_keep_alive_connection_is_served_again_and_a_stalled_next_head_is_closed(server: RunningServer) -> None:
    with connect(server.url) as sock:
        for _ in range(2):
            sock.sendall(HEALTHZ)
            reply = b""
            while not reply.endswith(b'{"status":"alive"}'):
                reply += sock.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200 OK")
            time.sleep(HEAD_TIMEOUT * 1.5)  # idle between requests: keep-alive's own timeout (5 s)
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        assert read_until_closed(sock) == b""
        assert time.monotonic() - started < HEAD_TIMEOUT + 1.0


def open_connections(url: str, count: int) -> list[socket.socket]:
    time.sleep(0.2)  # the server has seen the earlier tests' connections closed
    return [connect(url) for _ in range(count)]


def closed_now(sock: socket.socket) -> bool:
    """Whether the server has closed the connection (without waiting for anything more)."""
    sock.setblocking(False)
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.settimeout(5.0)


def test_at_the_cap_a_newcomer_takes_the_place_of_the_longest_idle_connection(server: RunningServer) -> None:
    """Connections that sent nothing yet are idle: at the cap, each newcomer closes the oldest."""
    held = open_connections(server.url, MAX_CONNECTIONS + 8)
    try:
        time.sleep(HEAD_TIMEOUT / 4)  # long enough to see the closes, well before the head deadline
        closed = [closed_now(sock) for sock in held]
        assert closed == [True] * 8 + [False] * MAX_CONNECTIONS
        newest = held[-1]
        newest.sendall(HEALTHZ)
        assert b"HTTP/1.1 200 OK" in newest.recv(65536)
    finally:
        for sock in held:
            sock.close()
    assert_healthy(server.url)


def test_over_the_cap_with_every_connection_busy_a_newcomer_is_refused_at_once(server: RunningServer) -> None:
    """Connections in a head that has just begun (within the stall grace) are not given up: the
    newcomer is answered 503 as it opens."""
    held = open_connections(server.url, MAX_CONNECTIONS)
    try:
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # a head begun, not finished
        time.sleep(0.1)
        refused = [connect(server.url) for _ in range(4)]
        replies = [read_until_closed(sock) for sock in refused]
        for sock in refused:
            sock.close()
    finally:
        for sock in held:
            sock.close()
    for reply in replies:
        assert reply.startswith(b"HTTP/1.1 503 "), reply[:200]
        assert b"retry-after: 1" in reply
        assert b"x-content-type-options: nosniff" in reply
        assert b"too many open connections" in reply
        assert b"x-content-type-options: nosniff" in reply
    assert_healthy(server.url)


@pytest.mark.parametrize("path", ["/activate", "/v2/models/relu/infer"])
def test_trickling_bodies_at_the_cap_cannot_keep_honest_clients_out(server: RunningServer, path: str) -> None:
    """Every connection the cap allows declares the largest body and trickles it: past the stall
    grace each is a slow body, so honest clients still get in (the slowest trickler is answered
    408 to make room), and what the tricklers hold of the memory budget is what they sent."""
    held = open_connections(server.url, MAX_CONNECTIONS)
    try:
        for sock in held:
            sock.sendall(head_of("POST", path, BODY_LIMIT) + b"{")
        time.sleep(1.5)  # past the stall grace (1 s)
        honest = [
            httpx.post(f"{server.url}/activate", json={"function": "relu", "input": [-1.0, 2.0]}, timeout=10)
            for _ in range(3)
        ]
        assert [reply.status_code for reply in honest] == [200, 200, 200], honest[0].text
        assert all(reply.json()["output"] == [0.0, 2.0] for reply in honest)
        given_way = [reply for reply in (read_if_closed(sock) for sock in held) if reply is not None]
        assert given_way, "a trickler gave way to the first honest client"  # then the slots it freed
        for reply in given_way:
            assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
            assert b'"error":"body_timeout"' in reply
    finally:
        for sock in held:
            sock.close()
    assert_healthy(server.url)


def head_of(method: str, path: str, length: int) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", "Content-Type: application/json", f"Content-Length: {length}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_if_closed(sock: socket.socket) -> bytes | None:
    """What the server sent before closing the connection, or None when it is still open."""
    sock.settimeout(0.2)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return data


def test_the_open_files_limit_is_raised_to_fit_the_cap(server: RunningServer) -> None:
    limits = Path(f"/proc/{server.process.pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    soft = int(line.split()[3])
    assert soft == resource.getrlimit(resource.RLIMIT_NOFILE)[1] > LOW_SOFT_FILES


def test_a_cap_over_the_hard_open_files_limit_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard > 1_000_000:
        pytest.skip("the hard open-files limit is above any cap")
    monkeypatch.setenv("TORCHFN_MAX_CONNECTIONS", str(hard))
    assert serve.main() == serve.BAD_SETTINGS
    assert "invalid setting TORCHFN_MAX_CONNECTIONS" in capsys.readouterr().err
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[1] == hard


# HEAD


def get_paths() -> list[str]:
    """Every GET route of the app, with sample values for its path parameters."""
    samples = {"name": "relu", "version": "1"}
    found: list[str] = []

    def walk(routes: list[object]) -> None:
        for route in routes:
            path, methods = getattr(route, "path", None), getattr(route, "methods", None) or set()
            if isinstance(path, str) and "GET" in methods:
                for key, value in samples.items():
                    path = path.replace(f"{{{key}}}", value)
                assert "{" not in path, f"give a sample for {path}"
                found.append(path)
            inner = getattr(route, "original_router", None) or getattr(route, "routes", None)
            inner_routes = getattr(inner, "routes", inner)
            if isinstance(inner_routes, list):
                walk(inner_routes)

    walk(list(create_app().routes))
    return found


VARYING = {"date", "x-request-id", "content-length"}
"""Headers that differ between any two replies (``content-length`` only for ``/metrics``)."""


def test_head_is_served_wherever_get_is(server: RunningServer) -> None:
    paths = get_paths()
    assert {"/healthz", "/readyz", "/functions", "/functions/relu", "/v2", "/metrics"} <= set(paths)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for path in paths:
            got = client.get(path)
            headed = client.head(path)
            assert headed.status_code == got.status_code == 200, path
            assert headed.content == b"", path
            assert {k: v for k, v in headed.headers.items() if k not in VARYING} == {
                k: v for k, v in got.headers.items() if k not in VARYING
            }, path
            if path != "/metrics":
                assert headed.headers["content-length"] == got.headers["content-length"] == str(len(got.content))
        assert client.head("/activate").status_code == 405  # as GET is
        assert client.head("/no-such-path").status_code == 404


def test_every_reply_says_nosniff(server: RunningServer) -> None:
    """Every route, static files, the docs, refusals of every kind and both protocols' replies."""
    oip_binary_header = orjson.dumps(
        {
            "parameters": {"binary_data_output": True},
            "inputs": [{"name": "input", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}],
        }
    )
    with httpx.Client(base_url=server.url, timeout=10) as client:
        replies = [client.get(path) for path in get_paths()]
        replies += [client.head(path) for path in ("/healthz", "/static/docs/swagger-ui.css", "/no-such-path")]
        replies += [
            client.get("/static/docs/swagger-ui-bundle.js"),
            client.get("/static/explore/js/api.js"),
            client.get("/explore"),
            client.get("/static/docs/no-such-file"),
            client.get("/functions/no_such_function"),
            client.get("/activate"),
            client.post("/activate", json={"function": "relu", "input": [1.0]}),
            client.post("/activate", json={"function": "relu", "input": "x"}),
            client.post("/activate", content=b"{", headers={"content-type": "application/json"}),
            client.post("/activate", content=b"{}", headers={"content-type": "text/plain"}),
            client.post("/loss", json={"function": "mse_loss", "input": [1.0], "target": [0.0]}),
            client.post("/v2/models/relu/infer", content=OIP_BODY),
            client.post("/v2/models/relu/infer", json={"inputs": []}),
            client.post("/v2/models/nope/infer", content=OIP_BODY),
            client.post(
                "/v2/models/relu/infer",
                content=oip_binary_header + np.array([1.0, -1.0], dtype=np.float32).tobytes(),
                headers={
                    "content-type": "application/octet-stream",
                    "inference-header-content-length": str(len(oip_binary_header)),
                },
            ),
        ]
    assert {reply.status_code for reply in replies} >= {200, 400, 404, 405, 415, 422}
    assert any(reply.headers["content-type"].startswith("text/javascript") for reply in replies)
    for reply in replies:
        assert reply.headers.get("x-content-type-options") == "nosniff", (reply.request.url, reply.status_code)


# Header numbers


def raw(value: str) -> bytes:
    """A header value as a client may send it: latin-1 where it can be (which the server
    decodes back to the same text), else UTF-8."""
    return value.encode("latin-1") if all(ord(c) < 256 for c in value) else value.encode()


@pytest.mark.parametrize("value", ["²", "1" * 5000, "-1", "+5", "1_0", "٣", "0x10", "1.0"])
def test_inference_header_content_length_is_strict(server: RunningServer, value: str) -> None:
    payload = (
        b"POST /v2/models/relu/infer HTTP/1.1\r\nHost: test\r\nContent-Type: application/octet-stream\r\n"
        + b"Content-Length: %d\r\nInference-Header-Content-Length: %b\r\n\r\n" % (len(OIP_BODY), raw(value))
        + OIP_BODY
    )
    reply = exchange(server.url, payload, probe_close=False)
    assert reply.status == 400, reply.body
    assert "inference-header-content-length" in orjson.loads(reply.body)["error"]
    assert_healthy(server.url)


@pytest.mark.parametrize("value", ["²", "1" * 5000, "-1", "1_0"])
def test_content_length_is_strict(server: RunningServer, value: str) -> None:
    """The HTTP parser refuses these before the app sees them; the app's own check agrees."""
    payload = b"POST /activate HTTP/1.1\r\nHost: test\r\nContent-Length: %b\r\n\r\n{}" % raw(value)
    assert exchange(server.url, payload, probe_close=False).status == 400
    assert header_number(value) is None
    assert_healthy(server.url)


def test_header_numbers() -> None:
    assert header_number("0") == 0
    assert header_number(" 123\t") == 123
    assert header_number("9" * 18) == 10**18 - 1
    for bad in ["", "9" * 19, "²", "٣", "1_0", "-1", "+1", "1.0", "1e3", "0x1"]:
        assert header_number(bad) is None, bad


# Compressed bodies


def infer_gzip(url: str, body: bytes, client: httpx.Client | None = None) -> httpx.Response:
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    return (client or httpx).post(f"{url}/v2/models/relu/infer", content=body, headers=headers, timeout=30)


def test_a_compressed_body_must_end_where_its_stream_does(server: RunningServer) -> None:
    whole = gzip.compress(OIP_BODY)
    reply = infer_gzip(server.url, whole)
    assert reply.status_code == 200
    assert reply.json()["outputs"][0]["data"] == [0.0, 2.0]
    for bad, says in [(whole[:-6], "truncated"), (whole + b"garbage", "after the end"), (whole + whole, "after")]:
        reply = infer_gzip(server.url, bad)
        assert reply.status_code == 400, reply.text
        assert "content-encoding" in reply.json()["error"]
        assert says in reply.json()["error"]


@pytest.mark.serial
def test_compression_bombs_do_not_stall_the_server(server: RunningServer) -> None:
    """16 clients at once send a gzip bomb (40 MB of zeros in 40 KB, past the 32 MiB limit):
    each is refused with 413, and ``/healthz`` keeps answering within a second. (Inflated on the
    event loop, with 64 MiB bombs, they held it up for over a second on a 2-core machine.)"""
    bomb = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    body = bomb.compress(b"\0" * 40_000_000) + bomb.flush()
    assert len(body) < 64 * 1024
    statuses: list[int] = []
    start = threading.Barrier(17)

    def attack() -> None:
        with httpx.Client(timeout=60) as client:
            start.wait()
            statuses.append(infer_gzip(server.url, body, client).status_code)

    attackers = [threading.Thread(target=attack) for _ in range(16)]
    for attacker in attackers:
        attacker.start()
    timings: list[float] = []
    with httpx.Client(base_url=server.url, timeout=10) as client:
        start.wait()
        while any(attacker.is_alive() for attacker in attackers):
            started = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            timings.append(time.perf_counter() - started)
            time.sleep(0.01)
    for attacker in attackers:
        attacker.join()
    assert statuses == [413] * 16
    timings.sort()
    p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
    assert p99 < 1.0, f"/healthz p99 {p99:.3f} s (worst {timings[-1]:.3f} s) under compression bombs"


# Logs


def test_text_logs_escape_control_characters(server: RunningServer) -> None:
    """A decoded ``%0a`` in the path would end the access line and start a forged one."""
    forged = "FORGED 2026-01-01 00:00:00,000 INFO torchfn.access: GET /admin 200"
    quoted = forged.replace(" ", "%20").replace(",", "%2C").replace(":", "%3A")
    for path in (f"/healthz%0a{quoted}", f"/x%0d%0a{quoted}", f"/x%1b[2K%0a{quoted}"):
        exchange(server.url, f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode(), probe_close=False)
    time.sleep(0.2)
    lines = server.log().splitlines()
    assert not [line for line in lines if line.startswith("FORGED")]
    assert any("/healthz\\nFORGED" in line for line in lines)
    assert any("/x\\x1b[2K\\nFORGED" in line for line in lines)


def test_json_logs_keep_control_characters_inside_their_line() -> None:
    record = logging.LogRecord("torchfn.access", logging.INFO, __file__, 0, "GET %s", ("/a\nFORGED\r\x1b",), None)
    line = JsonFormatter().format(record)
    assert not {"\n", "\r", "\x1b"} & set(line)
    assert orjson.loads(line)["message"] == "GET /a\nFORGED\r\x1b"
