"""What the compute service reports as it serves jobs, for a metrics exporter or the inference
statistics (``statistics.py``) to record.

An interface only: the compute layer knows nothing of Prometheus or HTTP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from app.compute.batching import Served
from app.compute.jobs import Job, Result
from app.core.errors import ServiceError


class ComputeObserver(Protocol):
    def computed(self, jobs: Sequence[Job], seconds: float) -> None:
        """One compute call ran ``jobs`` (a batch, or a job alone) in ``seconds``."""

    def served(self, job: Job, served: Served[Result], seconds: float) -> None:
        """``job`` was computed: how long it queued, computed and in how large a batch;
        ``seconds`` in the compute service in all."""

    def refused(self, job: Job, error: ServiceError, seconds: float) -> None:
        """``job`` failed with ``error`` after ``seconds``: refused (queue full, deadline, not
        ready), dropped because its client left, or rejected by torch."""

    def cancelled(self, job: Job, seconds: float) -> None:
        """The caller of ``job`` was cancelled after ``seconds`` (it disconnected or the server cut
        it off)."""


class Observers:
    """Several observers told of everything, in order."""

    def __init__(self, observers: Sequence[ComputeObserver]) -> None:
        self._observers = tuple(observers)

    def computed(self, jobs: Sequence[Job], seconds: float) -> None:
        for observer in self._observers:
            observer.computed(jobs, seconds)

    def served(self, job: Job, served: Served[Result], seconds: float) -> None:
        for observer in self._observers:
            observer.served(job, served, seconds)

    def refused(self, job: Job, error: ServiceError, seconds: float) -> None:
        for observer in self._observers:
            observer.refused(job, error, seconds)

    def cancelled(self, job: Job, seconds: float) -> None:
        for observer in self._observers:
            observer.cancelled(job, seconds)
