"""Process-wide interpreter tuning for a server that shares the GIL between its event loop and
its compute thread. Both were measured under load on one core (bench/throughput.py)."""

from __future__ import annotations

import gc
import sys

from app.core.config import Settings


def tune_process(settings: Settings) -> None:
    """Call once start-up has imported and built everything.

    - A short GIL switch interval: with Python's 5 ms default the loop and the compute thread
      stall each other (600 against 1,500 small requests/s).
    - ``gc.freeze``: torch and the app leave ~200k long-lived objects that every full collection
      would walk again (a ~100 ms stall every ~2,000 requests, the p99); freezing them after
      start-up, with a larger young generation, removes the stalls.
    """
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000.0)
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
