"""What the compute service reports as it serves jobs, for a metrics exporter to record.

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

    def served(self, job: Job, served: Served[Result]) -> None:
        """``job`` was computed: how long it queued, computed and in how large a batch."""

    def refused(self, job: Job, error: ServiceError) -> None:
        """``job`` failed with ``error``: refused (queue full, deadline, not ready), dropped
        because its client left, or rejected by torch."""

    def cancelled(self, job: Job) -> None:
        """The caller of ``job`` was cancelled (it disconnected or the server cut it off)."""
