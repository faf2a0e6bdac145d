"""The idle watchdog behind the body reader's 408 (``app.serving.idle``): one timer chain per loop."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

from app.serving import idle

TIMEOUT = 0.4
"""Long enough that a loaded machine's late wake-ups (tens of ms) neither cut off the flowing body
nor stretch the stalled one's cut-off past the bound."""


async def _read(data_every: float | None, total: float) -> tuple[str, float]:
    """Pretend to read a body for ``total`` seconds, with data every ``data_every`` seconds."""
    started = time.monotonic()
    watch = idle.watch_body(TIMEOUT)
    try:
        while time.monotonic() - started < total:
            await asyncio.sleep(data_every or total)
            watch.saw_data()
    except asyncio.CancelledError:
        assert watch.fired
        watch.forgive()
        return "cut off", time.monotonic() - started
    finally:
        watch.stop()
    return "read", time.monotonic() - started


def test_a_stalled_body_is_cut_off_soon_after_its_timeout_and_a_flowing_one_is_not() -> None:
    async def both() -> tuple[tuple[str, float], tuple[str, float]]:
        return await asyncio.gather(_read(None, 10 * TIMEOUT), _read(TIMEOUT / 4, 3 * TIMEOUT))

    (stalled, stalled_after), (flowing, _) = asyncio.run(both())
    assert stalled == "cut off"
    assert TIMEOUT <= stalled_after < TIMEOUT * 2  # within a sweep period (TIMEOUT / 8) and ample slack
    assert flowing == "read"


def test_the_watchdogs_do_not_keep_event_loops_alive() -> None:
    loops = []
    for _ in range(3):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(_read(None, TIMEOUT / 2))  # the sweep chain is still pending at close
        loops.append(weakref.ref(loop))
        loop.close()
        del loop
    gc.collect()
    assert all(ref() is None for ref in loops)
