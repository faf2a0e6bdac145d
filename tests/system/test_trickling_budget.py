"""Slow bodies cannot starve the others of the memory budget: what a body holds follows the bytes
that have arrived, not the length it declares. As many connections as the cap allows each declare
the largest body and trickle it, a byte at a time but never stalling long enough to be cut off:
held as declared they would be the budget hundreds of times over. Against the real server process
an honest 20-byte relu is still answered 200, on both protocols, and what the budget holds is about
what the tricklers have sent."""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.exposition import metric
from tests.support.server_process import RunningServer, running_server

pytestmark = pytest.mark.server

BUDGET = 64 * 1024 * 1024
BODY_LIMIT = 32 * 1024 * 1024
MAX_CONNECTIONS = 512
TRICKLERS = MAX_CONNECTIONS - 4
"""The cap less the honest clients' connections: no trickler has to give way to them."""


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    env = {
        "TORCHFN_MEMORY_BUDGET_BYTES": str(BUDGET),
        "TORCHFN_MAX_BODY_BYTES": str(BODY_LIMIT),
        "TORCHFN_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "TORCHFN_MEMORY_WAIT_S": "0.5",
    }
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 4 * MAX_CONNECTIONS) if hard != resource.RLIM_INFINITY else 4 * MAX_CONNECTIONS
    if wanted < 2 * MAX_CONNECTIONS:
        pytest.skip("too few open files allowed for the tricklers")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        with running_server(env) as running:
            yield running
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _tricklers_and_honest_clients(url: str, trickled_path: str) -> tuple[httpx.Response, httpx.Response, float]:
    parts = urlsplit(url)
    head = (
        f"POST {trickled_path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {BODY_LIMIT}\r\n\r\n"
    ).encode()
    writers: list[asyncio.StreamWriter] = []
    try:
        for _ in range(TRICKLERS):
            _, writer = await asyncio.open_connection(parts.hostname, parts.port)
            writer.write(head + b'{"function": "relu", "input": [')
            writers.append(writer)
        for _ in range(5):  # 1.5 s of trickling: every body under way, none stalled
            await asyncio.sleep(0.3)
            for writer in writers:
                writer.write(b"1,")
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            native = await client.post("/activate", json={"function": "relu", "input": [-1.0]})
            oip_body = {"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [-1.0]}]}
            oip = await client.post("/v2/models/relu/infer", json=oip_body)
            held = metric((await client.get("/metrics")).text, "torchfn_memory_budget_bytes", kind="held")
        return native, oip, held
    finally:
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@pytest.mark.parametrize("trickled_path", ["/activate", "/v2/models/relu/infer"])
def test_an_honest_small_request_is_served_while_the_cap_of_bodies_declaring_the_largest_length_trickle(
    server: RunningServer, trickled_path: str
) -> None:
    native, oip, held = asyncio.run(_tricklers_and_honest_clients(server.url, trickled_path))
    assert native.status_code == 200, native.text
    assert native.json()["output"] == [0.0]
    assert oip.status_code == 200, oip.text
    assert oip.json()["outputs"][0]["data"] == [0.0]
    assert held < BUDGET / 4, f"{TRICKLERS} tricklers hold {held} bytes of the budget for the little they sent"
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/healthz").status_code == 200
