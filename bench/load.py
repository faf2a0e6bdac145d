"""Load beyond saturation against the real server on loopback.

First a closed loop finds the saturation rate (completed requests per second with enough clients
in flight); then an open loop sends at ``overload`` times that rate, each request with its own
input and a deadline (``X-Request-Timeout``). A run passes when the excess is refused with 503 and
``Retry-After`` quickly, every accepted request is answered within its deadline, no client times
out, nothing else comes back, and every answer is exactly the function of its own request's input.

The client is a small HTTP/1.1 client on asyncio streams with keep-alive connections, so that on a
small machine the server, not the load generator, is what saturates.

    python -m bench.load --seconds 30            # the long run (``make load``); starts its own server
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np
import orjson
import torch

from bench.machine import free_port, grpc_port_env, server_command, server_process

FUNCTION = "multilabel_margin_loss"
CLASSES = 2048
"""One sample of 2,048 classes, half of them labels: ~5 ms of compute (O(classes²)) for a ~20 KB
body, so that the server's compute, not the HTTP work of either side, sets the saturation rate."""
PATH = "/loss"
WARM_UP = 20
QUICK_REFUSAL_S = 0.1
"""The median refusal for a full queue must come back within this long (its max within the deadline)."""
SLACK_S = 0.5
"""How late after its deadline an answer may still arrive (scheduling on a busy machine)."""
IDLE_REUSE_S = 2.0
"""Idle keep-alive connections older than this are not reused: the server closes them at 5 s."""


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode()


TARGET = np.full((1, CLASSES), -1, dtype="<i8")
TARGET[0, : CLASSES // 2] = np.arange(CLASSES // 2)
TARGET_B64 = _b64(TARGET)


def request_input(index: int) -> np.ndarray:
    """The distinct input of request ``index``: its own values, recomputable when checking."""
    base = np.linspace(-1.0, 1.0, CLASSES, dtype=np.float32).reshape(1, CLASSES)
    return (base * np.float32(1 + (index % 977) / 977) + np.float32(index // 977) / 64).astype("<f4")


def request_body(index: int) -> bytes:
    body = {
        "function": FUNCTION,
        "input": {"shape": [1, CLASSES], "dtype": "float32", "data": _b64(request_input(index))},
        "target": {"shape": [1, CLASSES], "dtype": "int64", "data": TARGET_B64},
        "grad": True,
        "encoding": "base64",
    }
    return orjson.dumps(body)


def _digest(loss: float, grad: bytes) -> bytes:
    return hashlib.sha256(repr(loss).encode() + b"|" + grad).digest()


def expected_digest(index: int) -> bytes:
    x = torch.from_numpy(request_input(index)).requires_grad_()
    y = torch.nn.functional.multilabel_margin_loss(x, torch.from_numpy(TARGET))
    (g,) = torch.autograd.grad(y, x)
    return _digest(float(y.detach()), g.numpy().astype("<f4").tobytes())


def answer_digest(body: bytes) -> bytes:
    """What an answer says, in 32 bytes: kept for checking after the run instead of the answer."""
    reply = orjson.loads(body)
    return _digest(float(reply["loss"]), base64.b64decode(reply["grad"]["input"]["data"]))


@dataclass
class Outcome:
    index: int
    status: int | None
    """None: the client gave up (timed out) or the connection failed."""
    seconds: float
    retry_after: str | None = None
    error: str | None = None
    body: bytes = b""
    """The error body, or the digest of a 200's answer (see ``answer_digest``)."""


class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.last_used = time.monotonic()

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def post(self, host: str, path: str, body: bytes, deadline_s: float) -> tuple[int, dict[str, str], bytes]:
        headers = f"Content-Type: application/json\r\nX-Request-Timeout: {deadline_s}\r\n"
        return await self.request(host, "POST", path, headers, body)

    async def request(
        self, host: str, method: str, path: str, headers: str, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """One exchange; ``headers`` are extra header lines, each ending in CRLF."""
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: {len(body)}\r\n\r\n"
        self.writer.write(head.encode("latin-1") + body)
        await self.writer.drain()
        reply = await self.read_response()
        self.last_used = time.monotonic()
        return reply

    async def read_response(self) -> tuple[int, dict[str, str], bytes]:
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        payload = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, payload

    def close(self) -> None:
        self.writer.close()


@dataclass
class Client:
    url: str
    deadline_s: float
    idle: list[Connection] = field(default_factory=list)
    opened: int = 0

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 80

    async def send(self, index: int, body: bytes) -> Outcome:
        host, port = self.host_port
        started = time.perf_counter()
        conn = self._reusable()
        try:
            if conn is None:
                self.opened += 1
                conn = await Connection.open(host, port)
            status, headers, payload = await asyncio.wait_for(
                conn.post(host, PATH, body, self.deadline_s), self.deadline_s + 5.0
            )
        except (TimeoutError, OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as error:
            if conn is not None:
                conn.close()
            return Outcome(index, None, time.perf_counter() - started, error=type(error).__name__)
        seconds = time.perf_counter() - started
        if headers.get("connection", "").lower() == "close":
            conn.close()
        else:
            self.idle.append(conn)
        kept = answer_digest(payload) if status == 200 else payload[:300]
        return Outcome(index, status, seconds, headers.get("retry-after"), body=kept)

    def _reusable(self) -> Connection | None:
        """An idle connection the server has not closed yet (uvicorn closes them after 5 idle seconds)."""
        while self.idle:
            conn = self.idle.pop()
            if time.monotonic() - conn.last_used < IDLE_REUSE_S:
                return conn
            conn.close()
        return None

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


async def saturation_rate(url: str, seconds: float, clients: int, deadline_s: float) -> float:
    """Completed requests per second with ``clients`` requests always in flight (closed loop)."""
    client = Client(url, deadline_s)
    bodies = [request_body(-1 - i) for i in range(clients)]
    for _ in range(WARM_UP):  # the first calls of a function pay one-off costs
        await client.send(-1, bodies[0])
    done = 0
    stop = time.perf_counter() + seconds

    async def worker(slot: int) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            outcome = await client.send(-1 - slot, bodies[slot])
            if outcome.status == 200:
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    client.close()
    return done / (time.perf_counter() - started)


async def open_loop(url: str, rate: float, seconds: float, deadline_s: float) -> tuple[list[Outcome], float, int]:
    """Send at ``rate`` per second for ``seconds`` whatever the answers; (outcomes, sent rate, connections)."""
    client = Client(url, deadline_s)
    count = max(1, int(rate * seconds))
    tasks: list[asyncio.Task[Outcome]] = []
    started = time.perf_counter()
    for index in range(count):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(client.send(index, request_body(index))))
    sent_rate = count / max(time.perf_counter() - started, 1e-9)
    outcomes = await asyncio.gather(*tasks)
    client.close()
    return list(outcomes), sent_rate, client.opened


@dataclass
class Report:
    saturation_rps: float
    offered_rps: float
    sent_rps: float
    sent: int
    statuses: dict[str, int]
    errors: dict[str, int]
    accepted_p50_ms: float
    accepted_p99_ms: float
    accepted_max_ms: float
    queue_full_p50_ms: float
    queue_full_p99_ms: float
    queue_full_max_ms: float
    connections: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def check(outcomes: list[Outcome], deadline_s: float) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """Every rule of the run; returns (problems, count per status and 503 kind, count per error code)."""
    problems: list[str] = []
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for outcome in outcomes:
        if outcome.status is None:
            statuses["client-timeout-or-failure"] += 1
            problems.append(f"request {outcome.index}: no answer ({outcome.error}) after {outcome.seconds:.3f} s")
            continue
        statuses[str(outcome.status)] += 1
        if outcome.status == 200:
            if outcome.seconds > deadline_s + SLACK_S:
                problems.append(f"request {outcome.index}: answered after {outcome.seconds:.3f} s, past its deadline")
            if outcome.body != expected_digest(outcome.index):
                problems.append(f"request {outcome.index}: the answer is not its own")
            continue
        code = str(json.loads(outcome.body).get("error")) if outcome.body.startswith(b"{") else "?"
        errors[code] += 1
        if outcome.status != 503:
            problems.append(f"request {outcome.index}: status {outcome.status} ({code})")
            continue
        if not outcome.retry_after:
            problems.append(f"request {outcome.index}: 503 without Retry-After")
        if outcome.seconds > deadline_s + SLACK_S:
            problems.append(f"request {outcome.index}: 503 after {outcome.seconds:.3f} s, past its deadline")
    return problems, dict(statuses), dict(errors)


def _ms(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(url: str, seconds: float, overload: float, deadline_s: float, probe_s: float, clients: int) -> Report:
    saturation = await saturation_rate(url, probe_s, clients, deadline_s)
    offered = overload * saturation
    outcomes, sent_rps, connections = await open_loop(url, offered, seconds, deadline_s)
    problems, statuses, errors = check(outcomes, deadline_s)
    accepted = [o.seconds for o in outcomes if o.status == 200]
    refused = [o.seconds for o in outcomes if o.status == 503 and b"queue_full" in o.body]
    if not refused:
        problems.append("nothing was refused: the load never went beyond saturation")
    elif statistics.median(refused) > QUICK_REFUSAL_S:
        problems.append(f"the median refusal took {statistics.median(refused):.3f} s, not quickly")
    if not accepted:
        problems.append("nothing was accepted")
    if sent_rps < 0.8 * offered:
        problems.append(f"the client sent {sent_rps:.0f}/s, short of the {offered:.0f}/s asked")
    return Report(
        saturation_rps=round(saturation, 1),
        offered_rps=round(offered, 1),
        sent_rps=round(sent_rps, 1),
        sent=len(outcomes),
        statuses=statuses,
        errors=errors,
        accepted_p50_ms=round(1000 * statistics.median(accepted), 1) if accepted else 0.0,
        accepted_p99_ms=round(_ms(accepted, 0.99), 1),
        accepted_max_ms=round(_ms(accepted, 1.0), 1),
        queue_full_p50_ms=round(_ms(refused, 0.5), 1),
        queue_full_p99_ms=round(_ms(refused, 0.99), 1),
        queue_full_max_ms=round(_ms(refused, 1.0), 1),
        connections=connections,
        problems=problems[:20],
    )


SERVER_ENV = {
    "TORCHFN_MAX_QUEUE_SIZE": "8",
    "TORCHFN_MAX_BATCH_SIZE": "8",
    "TORCHFN_TORCH_THREADS": "1",
    "OMP_NUM_THREADS": "1",
}
"""A short queue, so that twice the saturation rate overflows it on a small machine."""


@contextlib.contextmanager
def server(env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """A real server process on loopback with ``env`` added: (its URL, its pid)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = server_command("app.main:app", port, None, "--no-access-log")
    with server_process(command, url, {**grpc_port_env(), **env}) as pid:
        yield url, pid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the overload phase")
    parser.add_argument("--overload", type=float, default=2.0, help="offered load as a multiple of saturation")
    parser.add_argument("--deadline", type=float, default=1.0, help="each request's X-Request-Timeout, seconds")
    parser.add_argument("--probe-seconds", type=float, default=3.0, help="length of the saturation probe")
    parser.add_argument(
        "--clients", type=int, default=8, help="requests in flight while probing (at most the queue size)"
    )
    parser.add_argument("--url", help="an already running server (else one is started)")
    args = parser.parse_args(argv)

    def go(url: str) -> Report:
        return asyncio.run(run(url, args.seconds, args.overload, args.deadline, args.probe_seconds, args.clients))

    if args.url:
        report = go(args.url)
    else:
        with server(SERVER_ENV) as (url, _):
            report = go(url)
    print(json.dumps({**report.__dict__, "ok": report.ok}, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
