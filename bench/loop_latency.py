"""The event loop while the largest JSON requests are served: four of the largest JSON requests any
function admits (``margin_ranking_loss`` on three float32 tensors, gradients, ``reduction: none``,
each body just under ``TORCHFN_MAX_BODY_BYTES``) are sent at once to the real server
(``python -m app.serve``, default settings) while a probe asks ``/healthz`` every 10 ms; it
reports the probe's latencies, the server's resident memory (its process and the parse process)
idle, at its peak and after the requests, and how long the four took.

    python -m bench.loop_latency                  # three rounds (``make bench``)
    python -m bench.loop_latency --rounds 1

Figures go to stdout and to ``bench/results/loop_latency.json``; the exit status is non-zero only
on errors (a request not answered 200), never on the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
import orjson

from bench.machine import ROOT, free_port, grpc_port_env, server_process

RESULTS = ROOT / "bench" / "results" / "loop_latency.json"
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
CONCURRENT = 4
PROBE_EVERY_S = 0.01


def largest_body(max_body_bytes: int, seed: int) -> bytes:
    """A ``margin_ranking_loss`` body of three float32 tensors as JSON numbers, as long as fits in
    ``max_body_bytes`` (within 2%)."""
    rng = np.random.default_rng(seed)

    def body(elements: int) -> bytes:
        x, y = rng.standard_normal((2, elements), dtype=np.float32)
        target = np.where(rng.standard_normal(elements) > 0, 1.0, -1.0).astype(np.float32)
        inputs = {"input1": x, "input2": y, "target": target}
        document = {"function": "margin_ranking_loss", "inputs": inputs, "params": {"reduction": "none"}, "grad": True}
        return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)

    sample = 10_000
    per_element = len(body(sample)) / sample
    elements = int(max_body_bytes * 0.98 / per_element)
    text = body(elements)
    while len(text) > max_body_bytes:
        elements = int(elements * 0.99)
        text = body(elements)
    return text


def resident_mib(pid: int) -> float:
    """Resident memory of a process and its living descendants (the parse process), MiB."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
    return total / 1024


@dataclass
class Round:
    body_mb: float
    statuses: list[int]
    seconds: float
    probes: int
    healthz_p50_ms: float
    healthz_p99_ms: float
    healthz_max_ms: float
    idle_mib: float
    peak_mib: float
    after_2s_mib: float
    after_5s_mib: float


async def measure(url: str, pid: int, bodies: list[bytes]) -> Round:
    """Send ``bodies`` to ``url``'s ``/loss`` at once while probing ``/healthz``; ``pid``: the
    server's process, for its memory."""
    idle = resident_mib(pid)
    latencies: list[float] = []
    peak = idle
    done = asyncio.Event()

    async def probe() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            while not done.is_set():
                started = time.perf_counter()
                reply = await client.get("/healthz")
                latencies.append(time.perf_counter() - started)
                reply.raise_for_status()
                await asyncio.sleep(PROBE_EVERY_S)

    async def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, resident_mib(pid))
            await asyncio.sleep(0.05)

    async def post(body: bytes) -> int:
        async with httpx.AsyncClient(base_url=url, timeout=600) as client:
            reply = await client.post("/loss", content=body, headers={"content-type": "application/json"})
            return reply.status_code

    probing = asyncio.gather(probe(), watch())
    started = time.perf_counter()
    try:
        statuses = list(await asyncio.gather(*(post(body) for body in bodies)))
    finally:
        elapsed = time.perf_counter() - started
        done.set()
        await probing
    await asyncio.sleep(2)
    after_2s = resident_mib(pid)
    await asyncio.sleep(3)
    latencies.sort()
    return Round(
        body_mb=round(len(bodies[0]) / 1e6, 1),
        statuses=statuses,
        seconds=round(elapsed, 2),
        probes=len(latencies),
        healthz_p50_ms=round(latencies[len(latencies) // 2] * 1000, 1),
        healthz_p99_ms=round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 1),
        healthz_max_ms=round(latencies[-1] * 1000, 1),
        idle_mib=round(idle),
        peak_mib=round(peak),
        after_2s_mib=round(after_2s),
        after_5s_mib=round(resident_mib(pid)),
    )


@contextlib.contextmanager
def served(env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """``python -m app.serve`` (the container's command) on loopback: (its URL, its pid)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    network = {"TORCHFN_HOST": "127.0.0.1", "TORCHFN_PORT": str(port), **grpc_port_env()}
    with server_process([sys.executable, "-m", "app.serve"], url, {**(env or {}), **network}) as pid:
        with httpx.Client(base_url=url) as client:  # warm: the first requests' one-off costs
            for _ in range(3):
                client.post("/loss", json={"function": "mse_loss", "input": [1.0], "target": [0.0], "grad": True})
        yield url, pid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    args = parser.parse_args(argv)
    bodies = [largest_body(args.max_body_bytes, seed) for seed in range(CONCURRENT)]
    rounds: list[Round] = []
    with served({"TORCHFN_MAX_BODY_BYTES": str(args.max_body_bytes)}) as (url, pid):
        for number in range(args.rounds):
            outcome = asyncio.run(measure(url, pid, bodies))
            rounds.append(outcome)
            print(f"round {number + 1}: {json.dumps(asdict(outcome))}", flush=True)
    keys = ("healthz_p50_ms", "healthz_p99_ms", "healthz_max_ms", "seconds", "peak_mib", "after_5s_mib")
    summary = {
        key: {
            "median": statistics.median(getattr(r, key) for r in rounds),
            "spread": [min(getattr(r, key) for r in rounds), max(getattr(r, key) for r in rounds)],
        }
        for key in keys
    }
    print(json.dumps(summary, indent=2))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"rounds": [asdict(r) for r in rounds], "summary": summary}, indent=2) + "\n")
    return 0 if all(status == 200 for r in rounds for status in r.statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
