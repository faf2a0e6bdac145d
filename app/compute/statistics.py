"""Each function's inference statistics since the process started, tallied from the compute
service's observer hooks whether metrics are on or off; transport-neutral (the Open Inference
Protocol's statistics extension shows them in Triton's shape).

All hooks run on the event loop, so the tallies need no lock. They are this process's own: with
several server processes each answers with its own. Their cost, measured with ``timeit`` on the
2-core development machine: ~1.5 µs a request served and ~0.7 µs a compute call (of a ~70 µs
small relu request, as ``bench/operations_overhead.py`` measures the other per-request pieces)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.compute.batching import Served
from app.compute.jobs import Job, Result
from app.core.errors import ServiceError

_NS = 1_000_000_000


@dataclass(slots=True)
class Duration:
    """How many times something was timed, and the nanoseconds it took in all."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.ns += int(seconds * _NS)


@dataclass(slots=True)
class BatchTally:
    """The compute calls that ran ``size`` requests of one function together."""

    size: int
    compute_infer: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class FunctionTally:
    """One function's statistics: the requests that reached the compute service and its calls."""

    last_inference_ms: int = 0
    """When a request last ended (served or failed), in milliseconds since the epoch; 0 before any."""
    inference_count: int = 0
    """Requests computed successfully (one inference each: a request is never split)."""
    execution_count: int = 0
    """Compute calls that ran some of its requests (a batch counts once)."""
    success: Duration = field(default_factory=Duration)
    """Requests served: from entering the compute service to their result."""
    fail: Duration = field(default_factory=Duration)
    """Requests that failed in the compute service (refused for want of room or time, over the
    cost limit, rejected by torch) or whose client left or was cut off, timed likewise."""
    queue: Duration = field(default_factory=Duration)
    """The served requests' waits for a compute call."""
    compute: Duration = field(default_factory=Duration)
    """The served requests' compute calls, each timed whole (the host-side cast, the copy to the
    device, the torch call and its gradients, the copy back): a batch's time counts for each of
    its requests, as Triton counts it."""
    batches: dict[int, BatchTally] = field(default_factory=dict)
    """By the number of this function's requests a compute call ran."""


class InferenceStatistics:
    """A ``ComputeObserver`` that keeps a ``FunctionTally`` per function name."""

    def __init__(self) -> None:
        self._tallies: dict[str, FunctionTally] = {}

    def tally(self, name: str) -> FunctionTally:
        """The function's statistics (all zero for one never requested)."""
        tally = self._tallies.get(name)
        return tally if tally is not None else FunctionTally()

    def _of(self, job: Job) -> FunctionTally:
        tally = self._tallies.get(job.spec.name)
        if tally is None:
            tally = self._tallies[job.spec.name] = FunctionTally()
        return tally

    def computed(self, jobs: Sequence[Job], seconds: float) -> None:
        if len(jobs) == 1:  # most calls: nothing to count
            self._executed(jobs[0].spec.name, 1, seconds)
            return
        sizes: dict[str, int] = {}
        for job in jobs:
            sizes[job.spec.name] = sizes.get(job.spec.name, 0) + 1
        for name, size in sizes.items():
            self._executed(name, size, seconds)

    def _executed(self, name: str, size: int, seconds: float) -> None:
        tally = self._tallies.get(name)
        if tally is None:
            tally = self._tallies[name] = FunctionTally()
        tally.execution_count += 1
        batch = tally.batches.get(size)
        if batch is None:
            batch = tally.batches[size] = BatchTally(size)
        batch.compute_infer.count += 1
        batch.compute_infer.ns += int(seconds * _NS)

    def served(self, job: Job, served: Served[Result], seconds: float) -> None:
        """Updated field by field (three ``Duration.add`` calls would double its ~1 µs)."""
        tally = self._of(job)
        tally.inference_count += 1
        success, queue, compute = tally.success, tally.queue, tally.compute
        success.count += 1
        success.ns += int(seconds * _NS)
        queue.count += 1
        queue.ns += int(served.queue_wait * _NS)
        compute.count += 1
        compute.ns += int(served.compute_time * _NS)
        tally.last_inference_ms = time.time_ns() // 1_000_000

    def refused(self, job: Job, error: ServiceError, seconds: float) -> None:
        self._failed(job, seconds)

    def cancelled(self, job: Job, seconds: float) -> None:
        self._failed(job, seconds)

    def _failed(self, job: Job, seconds: float) -> None:
        tally = self._of(job)
        tally.fail.add(seconds)
        tally.last_inference_ms = time.time_ns() // 1_000_000
