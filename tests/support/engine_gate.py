"""A gate on the engine: holds the first compute call until released, so that later requests
queue behind it (deterministic batching tests, no sleeps), and records what reached the engine."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from app.compute.engine import Engine
from app.compute.jobs import Job, Result
from app.compute.service import ComputeService


class Gate:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.computed: list[list[float]] = []
        """The inputs of every job that reached the engine, flattened."""
        self._first = True
        original = Engine.run_group
        gate = self

        def gated(engine: Engine, jobs: Sequence[Job], key: tuple[Any, ...] | None) -> list[Result | Exception]:
            gate.computed.extend(np.asarray(job.arrays["input"], dtype=np.float64).ravel().tolist() for job in jobs)
            if gate._first:
                gate._first = False
                gate.entered.set()
                gate.release.wait(10)
            return original(engine, jobs, key)

        monkeypatch.setattr(Engine, "run_group", gated)
        # The gate holds a compute thread; a tiny request computed on the loop would hold the loop.
        monkeypatch.setattr(ComputeService, "_small_enough_for_the_loop", lambda service, job: False)
