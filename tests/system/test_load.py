"""Load beyond saturation against the real server process on loopback (the quick version of
``make load``): twice the measured saturation rate for two seconds. The excess gets 503 with
Retry-After quickly, accepted requests finish within their deadline, no client times out, and
every answer is exactly its own request's. See ``bench/load.py`` for the rules and the client."""

from __future__ import annotations

import asyncio

import pytest

from bench.load import SERVER_ENV, run
from tests.support.server_process import running_server

pytestmark = [pytest.mark.server, pytest.mark.serial]


def test_twice_the_saturation_rate_is_refused_quickly_and_the_rest_served_exactly() -> None:
    with running_server(SERVER_ENV) as server:
        report = asyncio.run(run(server.url, seconds=2.0, overload=2.0, deadline_s=1.0, probe_s=1.5, clients=8))
        assert server.process.poll() is None
    assert report.ok, report
    assert report.statuses.get("503", 0) > 0
    assert report.statuses.get("200", 0) > 0
    assert set(report.statuses) <= {"200", "503"}, report.statuses
