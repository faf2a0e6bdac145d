"""The event loop keeps answering while the largest JSON requests are parsed and encoded, and the
memory they took goes back: four of the largest JSON requests any function admits, at once, against
the real server process (``bench/loop_latency.py`` measures the figures; its docstring says how).

The bounds here are a loaded machine's, looser than the figures the benchmark reports (p99 under
100 ms, max under 0.7 s on a busy two-core machine): what they catch is the loop held for the whole
of a parse or an encode (seconds each), and memory kept after the requests (a gigabyte)."""

from __future__ import annotations

import asyncio

import pytest

from bench.loop_latency import CONCURRENT, DEFAULT_MAX_BODY_BYTES, largest_body, measure
from tests.support.server_process import running_server

pytestmark = [pytest.mark.server, pytest.mark.serial]


def test_healthz_answers_while_four_of_the_largest_json_requests_are_served() -> None:
    bodies = [largest_body(DEFAULT_MAX_BODY_BYTES, seed) for seed in range(CONCURRENT)]
    with running_server({"TORCHFN_ACCESS_LOG": "false"}) as server:
        outcome = asyncio.run(measure(server.url, server.process.pid, bodies))
        assert server.process.poll() is None
    assert outcome.body_mb > 0.95 * DEFAULT_MAX_BODY_BYTES / 1e6
    assert outcome.statuses == [200] * CONCURRENT
    assert outcome.probes >= 20, outcome
    assert outcome.healthz_p99_ms <= 1000, outcome
    assert outcome.healthz_max_ms <= 3000, outcome
    assert outcome.after_5s_mib <= outcome.idle_mib + 400, outcome
