"""Memory under a long mixed run: after a warm-up, send many valid and invalid requests to the
real server and sample its resident set size (RSS, from /proc); it must stay within 10% of the
level after warm-up. Refused requests (every kind of bad input) must leave nothing behind.

    python -m bench.memory --requests 100000     # the long run (``make memory``)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from bench.load import Connection, server

BODY_LIMIT = 65536
SERVER_ENV = {
    "TORCHFN_MAX_BODY_BYTES": str(BODY_LIMIT),
    "TORCHFN_BODY_IDLE_TIMEOUT_S": "0.2",
    "TORCHFN_TORCH_THREADS": "1",
    "OMP_NUM_THREADS": "1",
}
JSON = "Content-Type: application/json\r\n"


@dataclass(frozen=True)
class Kind:
    """One kind of request: how to build the i-th one, and the statuses it may get."""

    name: str
    build: Callable[[int], tuple[str, str, str, bytes]]
    """index -> (method, path, extra header lines, body)."""
    statuses: frozenset[int]


def _post(path: str, body: object, headers: str = JSON) -> tuple[str, str, str, bytes]:
    return "POST", path, headers, body if isinstance(body, bytes) else orjson.dumps(body)


def _values(i: int, n: int) -> list[float]:
    return [((i * 7 + k) % 23 - 11) / 4 for k in range(n)]


def _b64(values: list[float]) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()


KINDS = [
    Kind("relu", lambda i: _post("/activate", {"function": "relu", "input": _values(i, 1 + i % 64)}), frozenset({200})),
    Kind(
        "softmax-grad",
        lambda i: _post("/activate", {"function": "softmax", "input": _values(i, 16), "grad": True}),
        frozenset({200}),
    ),
    Kind(
        "gelu-base64",
        lambda i: _post(
            "/activate",
            {"function": "gelu", "input": {"shape": [256], "data": _b64(_values(i, 256))}, "encoding": "base64"},
        ),
        frozenset({200}),
    ),
    Kind(
        "mse",
        lambda i: _post("/loss", {"function": "mse_loss", "input": _values(i, 8), "target": _values(i + 1, 8)}),
        frozenset({200}),
    ),
    Kind(
        "cross-entropy-grad",
        lambda i: _post(
            "/loss",
            {
                "function": "cross_entropy",
                "input": [_values(i, 5), _values(i + 3, 5)],
                "target": [i % 5, 0],
                "grad": True,
            },
        ),
        frozenset({200}),
    ),
    Kind(
        "catalogue", lambda i: ("GET", "/functions/" + ("relu", "mse_loss", "GELU")[i % 3], "", b""), frozenset({200})
    ),
    Kind("truncated-json", lambda i: _post("/activate", b'{"function": "relu", "input": [1, 2'), frozenset({400})),
    Kind("nan-token", lambda i: _post("/activate", b'{"function": "relu", "input": [NaN]}'), frozenset({400})),
    Kind("invalid-utf8", lambda i: _post("/activate", b'{"function": "rel\xffu", "input": [1]}'), frozenset({400})),
    Kind("deep-nesting", lambda i: _post("/activate", b"[" * 20_000 + b"]" * 20_000), frozenset({400, 422})),
    Kind("oversized", lambda i: _post("/activate", b"[" + b"1," * (BODY_LIMIT // 2) + b"1]"), frozenset({413})),
    Kind("ragged", lambda i: _post("/activate", {"function": "relu", "input": [[1.0, 2.0], [3.0]]}), frozenset({422})),
    Kind(
        "strings",
        lambda i: _post("/activate", {"function": "relu", "input": ["x"] * (100 + i % 900)}),
        frozenset({422}),
    ),
    Kind("unknown-function", lambda i: _post("/activate", {"function": f"relu{i}", "input": [1.0]}), frozenset({422})),
    Kind(
        "unknown-field",
        lambda i: _post("/activate", {"function": "relu", "input": [1.0], f"f{i}": 1}),
        frozenset({422}),
    ),
    Kind(
        "class-index-equals-C",
        lambda i: _post("/loss", {"function": "nll_loss", "input": [[-0.5, -1.0]], "target": [2]}),
        frozenset({422}),
    ),
    Kind(
        "bce-target-outside",
        lambda i: _post("/loss", {"function": "binary_cross_entropy", "input": [0.5], "target": [1.5]}),
        frozenset({422}),
    ),
    Kind("overflow", lambda i: _post("/activate", {"function": "relu", "input": [1e39]}), frozenset({422})),
    Kind(
        "absurd-param",
        lambda i: _post("/activate", {"function": "leaky_relu", "input": [1.0], "params": {"negative_slope": 1e300}}),
        frozenset({422}),
    ),
    Kind("wrong-content-type", lambda i: _post("/loss", b"x", "Content-Type: text/plain\r\n"), frozenset({415})),
    Kind("get-on-post", lambda i: ("GET", "/activate", "", b""), frozenset({405})),
    Kind("unknown-route", lambda i: ("GET", f"/nowhere/{i}", "", b""), frozenset({404})),
]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)


async def send_all(url: str, start: int, count: int, concurrency: int, tally: Tally) -> None:
    host, port = url.split("//")[1].split(":")
    numbers = itertools.count(start)
    stop = start + count

    async def worker() -> None:
        conn: Connection | None = None
        while (i := next(numbers)) < stop:
            kind = KINDS[i % len(KINDS)]
            method, path, headers, body = kind.build(i)
            if conn is None:
                conn = await Connection.open(host, int(port))
            try:
                status, reply_headers, _ = await asyncio.wait_for(conn.request(host, method, path, headers, body), 30)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError) as error:
                tally.unexpected.append(f"{kind.name}: {type(error).__name__}")
                conn.close()
                conn = None
                continue
            tally.statuses[f"{kind.name} {status}"] += 1
            if status not in kind.statuses:
                tally.unexpected.append(f"{kind.name}: {status}")
            if reply_headers.get("connection", "").lower() == "close":
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


@dataclass
class MemoryReport:
    warm_up: int
    requests: int
    seconds: float
    baseline_mib: float
    max_mib: float
    final_mib: float
    growth_pct: float
    samples_mib: list[float]
    statuses: dict[str, int]
    unexpected: list[str]

    @property
    def ok(self) -> bool:
        return self.growth_pct <= 10.0 and not self.unexpected


def measure(url: str, pid: int, requests: int, warm_up: int, concurrency: int, samples: int) -> MemoryReport:
    tally = Tally()
    asyncio.run(send_all(url, 0, warm_up, concurrency, tally))
    baseline = rss_bytes(pid)
    seen = [baseline]
    step = max(1, requests // samples)
    started = time.perf_counter()
    sent = 0
    while sent < requests:
        batch = min(step, requests - sent)
        asyncio.run(send_all(url, warm_up + sent, batch, concurrency, tally))
        sent += batch
        seen.append(rss_bytes(pid))
    mib = [round(value / 2**20, 1) for value in seen]
    return MemoryReport(
        warm_up=warm_up,
        requests=requests,
        seconds=round(time.perf_counter() - started, 1),
        baseline_mib=mib[0],
        max_mib=max(mib),
        final_mib=mib[-1],
        growth_pct=round(100 * (max(seen) - baseline) / baseline, 2),
        samples_mib=mib,
        statuses=_by_status(tally),
        unexpected=tally.unexpected[:20],
    )


def _by_status(tally: Tally) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for key, count in tally.statuses.items():
        totals[key.split()[1]] += count
    return dict(sorted(totals.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000, help="requests after warm-up")
    parser.add_argument("--warm-up", type=int, default=5_000, help="requests before the baseline is taken")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--samples", type=int, default=50, help="RSS samples over the run")
    args = parser.parse_args(argv)
    with server(SERVER_ENV) as (url, pid):
        report = measure(url, pid, args.requests, args.warm_up, args.concurrency, args.samples)
    print(json.dumps({**report.__dict__, "ok": report.ok}, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
