"""Bad input that only a real server over a real socket can send: bodies larger than the limit with
and without Content-Length, a Content-Length that lies either way, chunked bodies, broken framing,
plus a share of the in-process corpus sent over the wire. Each answer is quick and small, and the
server still serves a valid request after it."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from tests.support.error_bodies import FAST, MAX_ERROR_BYTES, SLOW, check_error_body
from tests.support.raw_http import exchange
from tests.support.server_process import RunningServer, running_server

pytestmark = pytest.mark.server

LIMIT = 8 * 1024 * 1024
IDLE = 0.3
"""The server's body idle timeout here: a stalled body is answered after this long."""

VALID = orjson.dumps({"function": "relu", "input": [-1.0, 2.0]})
OIP_VALID = orjson.dumps({"inputs": [{"name": "input", "shape": [2], "datatype": "FP32", "data": [-1.0, 2.0]}]})


def head(method: str, path: str, length: int | None, *extra: str, content_type: str = "application/json") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def post(path: str, body: bytes) -> bytes:
    return head("POST", path, len(body)) + body


def chunked(body: bytes, size: int = 65536) -> bytes:
    out = bytearray()
    for start in range(0, len(body), size):
        part = body[start : start + size]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


@dataclass(frozen=True)
class WireCase:
    payload: Callable[[], bytes]
    status: int
    loc: tuple[str, ...] | None
    """A loc prefix the service's error body must name; None for the Open Inference Protocol's
    format (checked by the case)."""
    max_seconds: float = FAST
    """CPU seconds the server may spend on it."""
    closes: bool = False


def big_valid_body() -> bytes:
    return b'{"function": "relu", "input": [' + b"0.5," * (LIMIT // 4) + b"0.5]}"


def wire(case_id: str, payload: Callable[[], bytes], status: int, loc: tuple[str, ...] | None, **kw: object) -> object:
    return pytest.param(WireCase(payload, status, loc, **kw), id=case_id)  # type: ignore[arg-type]


BODY = ("body",)
REQUEST = ("request",)
CASES = [
    wire("oversized-with-content-length", lambda: head("POST", "/activate", LIMIT + 9) + big_valid_body(), 413, BODY),
    wire(
        "oversized-chunked-no-content-length",
        lambda: head("POST", "/activate", None, "Transfer-Encoding: chunked") + chunked(big_valid_body()),
        413,
        BODY,
    ),
    wire("oversized-declared-terabyte", lambda: head("POST", "/loss", 10**12) + VALID, 413, BODY),
    wire(
        "content-length-claims-more-and-stalls",
        lambda: head("POST", "/activate", len(VALID) + 100) + VALID,
        408,
        BODY,
        closes=True,
    ),
    wire(
        "protocol-body-claims-more-and-stalls",
        lambda: head("POST", "/v2/models/relu/infer", len(OIP_VALID) + 100) + OIP_VALID,
        408,
        None,  # the Open Inference Protocol's own error format, checked below
        closes=True,
    ),
    wire("content-length-claims-less", lambda: head("POST", "/activate", 10) + VALID, 400, BODY, closes=True),
    # Broken framing, answered by the HTTP layer itself in the service's error format, and closed.
    wire(
        "content-length-and-chunked",
        lambda: head("POST", "/activate", 5, "Transfer-Encoding: chunked") + chunked(VALID),
        400,
        REQUEST,
        closes=True,
    ),
    wire(
        "content-length-and-chunked-on-v2",
        lambda: head("POST", "/v2/models/relu/infer", 5, "Transfer-Encoding: chunked") + chunked(OIP_VALID),
        400,
        REQUEST,
        closes=True,
    ),
    wire(
        "two-different-content-lengths",
        lambda: head("POST", "/activate", len(VALID), f"Content-Length: {len(VALID) + 1}") + VALID,
        400,
        REQUEST,
        closes=True,
    ),
    wire(
        "transfer-encoding-chunked-then-identity",
        lambda: head("POST", "/activate", None, "Transfer-Encoding: chunked, identity") + chunked(VALID),
        400,
        REQUEST,
        closes=True,
    ),
    wire(
        "transfer-encoding-without-chunked",
        lambda: head("POST", "/loss", None, "Transfer-Encoding: gzip") + VALID,
        400,
        REQUEST,
        closes=True,
    ),
    wire(
        "a-chunk-size-that-is-not-hex",
        lambda: head("POST", "/activate", None, "Transfer-Encoding: chunked") + b"zz\r\n" + VALID + b"\r\n0\r\n\r\n",
        400,
        REQUEST,
        closes=True,
    ),
    wire(
        "a-bad-chunk-after-a-good-one",
        lambda: head("POST", "/v2/models/relu/infer", None, "Transfer-Encoding: chunked") + b'5\r\n{"inp\r\nzz\r\n',
        400,
        REQUEST,
        closes=True,
    ),
    wire("space-in-a-header-name", lambda: head("POST", "/activate", len(VALID), "Bad Name: x") + VALID, 400, REQUEST),
    wire("bare-line-feeds", lambda: b"GET /healthz HTTP/1.1\nHost: test\n\n", 400, REQUEST),
    wire("nul-in-the-path", lambda: b"GET /heal\x00thz HTTP/1.1\r\nHost: test\r\n\r\n", 400, REQUEST),
    wire("folded-header", lambda: b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-A: b\r\n c\r\n\r\n", 400, REQUEST),
    wire(
        "content-length-not-a-number",
        lambda: head("POST", "/activate", None, "Content-Length: ab") + VALID,
        400,
        REQUEST,
    ),
    wire("garbage-request-line", lambda: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\r\n\r\n", 400, REQUEST),
    wire(
        "deep-100000-nesting",
        lambda: post("/activate", b'{"function": "relu", "input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        400,
        BODY,
        max_seconds=SLOW,
    ),
    wire(
        "nan-token",
        lambda: post("/activate", b'{"function":"relu","input":[NaN,1]}'),
        400,
        BODY,
    ),
    wire(
        "infinity-token",
        lambda: post("/activate", b'{"function":"relu","input":[-Infinity]}'),
        400,
        BODY,
    ),
    wire(
        "number-1e400",
        lambda: post("/activate", b'{"function":"relu","input":[1e400]}'),
        400,
        BODY,
    ),
    wire(
        "invalid-utf8",
        lambda: post("/activate", b'{"function":"rel\xffu","input":[1]}'),
        400,
        BODY,
    ),
    wire(
        "million-invalid-elements",
        lambda: post("/activate", orjson.dumps({"function": "relu", "input": [True] * 1_000_000})),
        422,
        ("body", "input"),
        max_seconds=SLOW,
    ),
    wire(
        "wrong-content-type",
        lambda: head("POST", "/loss", len(VALID), content_type="text/plain") + VALID,
        415,
        ("header", "content-type"),
    ),
    wire("get-on-post-route", lambda: head("GET", "/activate", None), 405, REQUEST),
    wire("put-on-post-route", lambda: head("PUT", "/loss", len(VALID)) + VALID, 405, REQUEST),
    wire(
        "unknown-field",
        lambda: post("/activate", b'{"function":"relu","input":[1],"extra":1}'),
        422,
        ("body", "extra"),
    ),
]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    env = {"TORCHFN_MAX_BODY_BYTES": str(LIMIT), "TORCHFN_BODY_IDLE_TIMEOUT_S": str(IDLE)}
    with running_server(env) as running:
        yield running


def assert_serves(url: str) -> None:
    reply = httpx.post(f"{url}/activate", content=VALID, headers={"content-type": "application/json"}, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.json()["output"] == [0.0, 2.0]


@pytest.mark.parametrize("bad", CASES)
def test_bad_input_over_the_wire(bad: WireCase, server: RunningServer) -> None:
    assert_serves(server.url)  # warm: the case's own cost is measured, not a first request's
    payload = bad.payload()
    spent = server.cpu_seconds()
    reply = exchange(server.url, payload, probe_close=bad.closes)
    spent = server.cpu_seconds() - spent
    assert reply.status == bad.status, reply.body[:500]
    assert spent < bad.max_seconds, f"the server spent {spent * 1000:.0f} ms of CPU on it"
    assert len(reply.body) < MAX_ERROR_BYTES
    assert b"Traceback" not in reply.body
    assert reply.headers["x-content-type-options"] == "nosniff"
    if bad.loc is not None:
        assert reply.headers["content-type"].startswith("application/json")
        body = check_error_body(reply.body, reply.status)
        assert any(tuple(d["loc"][: len(bad.loc)]) == bad.loc for d in body["details"]), body
    if reply.status == 408 and bad.loc is None:
        assert "no body data" in orjson.loads(reply.body)["error"]
    if bad.closes:
        assert reply.closed, "the connection must not be reused after broken framing or a stalled body"
    assert server.process.poll() is None
    assert_serves(server.url)


def test_a_slow_but_steady_body_is_not_cut_off(server: RunningServer) -> None:
    """The idle timeout is a pause between pieces, not a limit on the whole upload."""
    body = orjson.dumps({"function": "relu", "input": [-1.0, 2.0, -3.0, 4.0]})
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10) as sock:
        sock.sendall(head("POST", "/activate", len(body)))
        pieces = [body[i : i + 10] for i in range(0, len(body), 10)]
        for piece in pieces:
            time.sleep(IDLE / 2)
            sock.sendall(piece)
        assert len(pieces) * IDLE / 2 > IDLE, "the upload must outlast one idle period"
        reply = b""
        while b'"output"' not in reply:
            chunk = sock.recv(65536)
            assert chunk, reply
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert b'"output":[0.0,2.0,0.0,4.0]' in reply


BROKEN_BEHIND = {
    "head": b"GET /heal\x00thz HTTP/1.1\r\nHost: test\r\n\r\n",
    "chunk": head("POST", "/activate", None, "Transfer-Encoding: chunked") + b'5\r\n{"fun\r\nzz\r\n',
}


@pytest.mark.parametrize("broken", BROKEN_BEHIND.values(), ids=BROKEN_BEHIND.keys())
def test_broken_framing_behind_a_request_lets_that_request_be_answered(server: RunningServer, broken: bytes) -> None:
    """A request broken in its head or its body, pipelined behind a valid one: the valid one gets
    its whole reply (never a 400 written in its place), then the connection closes."""
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10) as sock:
        sock.sendall(post("/activate", VALID) + broken)
        replies = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                replies += chunk
    assert replies.startswith(b"HTTP/1.1 200 "), replies[:300]
    assert replies.count(b"HTTP/1.1 ") == 1, replies[:600]
    assert replies.endswith(b'"output":[0.0,2.0],"grad":null,"shape":[2],"dtype":"float32"}'), replies[-300:]
    assert_serves(server.url)
