"""What request ids, metrics, access logs and auth add to one small request, in-process.

    .venv/bin/python -m bench.operations_overhead [--requests 2000] [--rounds 7]

Drives ``/activate`` (relu on 256 floats) straight through the ASGI app, with its lifespan
running, one request at a time, no sockets: so the difference between configurations is the
middleware's own cost. Configurations, interleaved round by round:

* ``bare``:    metrics off, access log off (the request-id middleware only),
* ``metrics``: metrics on, access log off,
* ``log``:     access log on (JSON lines written to /dev/null), metrics off,
* ``default``: metrics on, access log on,
* ``auth``:    as ``default`` with an API key required and presented.

Then times each piece alone (``timeit``): the request metrics, the compute observer, the
in-flight gauge, one access-log line and a request id.

Time is the process's CPU time (all its threads), which a busy machine disturbs far less than
wall time. Prints the fastest round and the median round per request of each configuration,
and their differences to ``bare``. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import os
import statistics
import time
import timeit
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI

from app.compute.batching import Served
from app.compute.catalogue import CATALOGUE
from app.compute.jobs import Job
from app.compute.statistics import InferenceStatistics
from app.core.config import Settings
from app.core.logs import logging_config
from app.core.request_context import RequestContext, current_request
from app.main import create_app
from app.telemetry.access_log import log_access
from app.telemetry.metrics import Metrics, MetricsObserver
from app.transports.http.middleware import incoming_request_id

BODY = orjson.dumps(
    {"function": "relu", "input": np.random.default_rng(0).standard_normal(256)}, option=orjson.OPT_SERIALIZE_NUMPY
)
CLIENT = "127.0.0.1:50000"
CONFIGS: dict[str, dict[str, Any]] = {
    "bare": {"metrics": False, "access_log": False},
    "metrics": {"access_log": False},
    "log": {"metrics": False},
    "default": {},
    "auth": {"api_keys": ["bench-key"]},
}


def _log_to_devnull() -> None:
    config = logging_config(Settings())
    config["handlers"]["stderr"] = {
        "class": "logging.FileHandler",
        "filename": os.devnull,
        "formatter": "default",
    }
    logging.config.dictConfig(config)


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/activate",
        "raw_path": b"/activate",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _one(app: FastAPI, headers: list[tuple[bytes, bytes]]) -> int:
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(_scope(headers), receive, send)  # type: ignore[arg-type]
    return status


async def _measure(
    apps: dict[str, tuple[FastAPI, list[tuple[bytes, bytes]]]], requests: int, rounds: int
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, (app, headers) in apps.items():
            started = time.process_time()
            for _ in range(requests):
                if await _one(app, headers) != 200:
                    raise RuntimeError(f"{name}: a request failed")
            times[name].append((time.process_time() - started) / requests * 1e6)
    return times


async def _main(requests: int, rounds: int) -> None:
    _log_to_devnull()
    common = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    apps: dict[str, tuple[FastAPI, list[tuple[bytes, bytes]]]] = {}
    contexts: list[Callable[[], Awaitable[None]]] = []
    for name, overrides in CONFIGS.items():
        app = create_app(Settings(**overrides))
        context = app.router.lifespan_context(app)
        await context.__aenter__()
        contexts.append(lambda context=context: context.__aexit__(None, None, None))  # type: ignore[misc]
        headers = [*common, (b"x-api-key", b"bench-key")] if name == "auth" else common
        apps[name] = (app, headers)
    try:
        await _measure(apps, max(1, requests // 10), 1)  # warm-up
        times = await _measure(apps, requests, rounds)
    finally:
        for close in contexts:
            await close()
    best_base, median_base = min(times["bare"]), statistics.median(times["bare"])
    print(f"{requests} requests x {rounds} rounds, CPU time per request (relu on 256 floats, in-process)")
    print(f"  {'config':8s} {'fastest':>9s} {'vs bare':>9s} {'median':>9s} {'vs bare':>9s}")
    for name, values in times.items():
        best, median = min(values), statistics.median(values)
        print(f"  {name:8s} {best:7.1f}us {best - best_base:+7.1f}us {median:7.1f}us {median - median_base:+7.1f}us")


def _in_and_out(metrics: Metrics) -> None:
    metrics.in_flight_now += 1
    metrics.in_flight_now -= 1


def component_costs(number: int = 20_000) -> dict[str, float]:
    """Microseconds per call of each piece the middleware and the observer add to a request."""
    metrics = Metrics()
    observer = MetricsObserver(metrics)
    tallies = InferenceStatistics()
    spec = CATALOGUE.find("relu")
    assert spec is not None
    job = Job(spec=spec, arrays={}, params={}, locs={}, dtype="float32", grad=False)
    served: Served[Any] = Served(None, 0.0, 0.001, 1)
    context = RequestContext("0123456789abcdef", "relu")
    token = current_request.set(context)
    pieces: dict[str, Callable[[], object]] = {
        "request metrics (counter + latency histogram)": lambda: metrics.observe_request(
            "/activate", "relu", 200, 0.001
        ),
        "compute observer (queue wait)": lambda: observer.served(job, served, 0.001),
        "inference statistics (a request served)": lambda: tallies.served(job, served, 0.001),
        "in-flight gauge (inc + dec)": lambda: _in_and_out(metrics),
        "access-log line (JSON, to /dev/null)": lambda: log_access(
            "POST", "/activate", 200, 0.001, context, "127.0.0.1:5000"
        ),
        "request id": lambda: incoming_request_id({"headers": []}),
    }
    try:
        return {name: timeit.timeit(piece, number=number) / number * 1e6 for name, piece in pieces.items()}
    finally:
        current_request.reset(token)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(_main(args.requests, args.rounds))
    print("each piece alone (timeit, microseconds a call)")
    for name, micros in component_costs().items():
        print(f"  {micros:6.2f} us  {name}")


if __name__ == "__main__":
    main()
