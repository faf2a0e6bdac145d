"""The process's draining state: the grace period counts from the drain that is under way."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from app.core import lifecycle


@pytest.fixture
def draining_afterwards() -> Iterator[None]:
    try:
        yield
    finally:
        lifecycle._draining.clear()
        lifecycle._draining_since.clear()


def test_no_drain_leaves_the_whole_grace() -> None:
    assert lifecycle.shutdown_time_left(30.0) == 30.0


@pytest.mark.usefixtures("draining_afterwards")
def test_a_drain_counts_its_grace_from_its_own_start(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    lifecycle.begin_draining()
    now[0] += 10.0
    assert lifecycle.shutdown_time_left(30.0) == 20.0
    lifecycle.begin_draining()  # again while draining: the first signal's start stands
    assert lifecycle.shutdown_time_left(30.0) == 20.0
    # A drain ended (as a test ends one) and another begun much later has all of its grace.
    lifecycle._draining.clear()
    now[0] += 100.0
    lifecycle.begin_draining()
    assert lifecycle.is_draining()
    assert lifecycle.shutdown_time_left(30.0) == 30.0
    now[0] += 40.0
    assert lifecycle.shutdown_time_left(30.0) == 0.0
