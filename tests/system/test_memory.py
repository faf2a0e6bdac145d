"""The quick version of ``make memory``: the real server's RSS over a few thousand mixed valid and
invalid requests stays within 10% of its level after warm-up, and every kind of request gets its
expected status. See ``bench/memory.py``."""

from __future__ import annotations

import pytest

from bench.memory import KINDS, SERVER_ENV, measure
from tests.support.server_process import running_server

pytestmark = pytest.mark.server


def test_rss_holds_over_mixed_valid_and_invalid_requests() -> None:
    with running_server(SERVER_ENV) as server:
        report = measure(server.url, server.process.pid, requests=2000, warm_up=1000, concurrency=8, samples=6)
        assert server.process.poll() is None
    assert not report.unexpected, report.unexpected
    assert report.growth_pct <= 10.0, report
    assert sum(report.statuses.values()) == 3000
    assert {"200", "400", "404", "405", "413", "415", "422"} <= set(report.statuses), report.statuses
    assert len(KINDS) >= 20
