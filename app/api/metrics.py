"""Prometheus metrics (``prometheus_client``): what the HTTP layer and the compute service report.

One ``Metrics`` per app, on its own registry. With several server processes
(``PROMETHEUS_MULTIPROC_DIR`` set, as ``python -m app.serve`` does when ``TORCHFN_WORKERS`` > 1)
the values live in shared files and ``/metrics`` sums them over the processes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from app.compute.batching import ClientGone, Served
from app.compute.jobs import Job, Result
from app.core.errors import Overloaded, ServiceError
from app.core.request_context import current_request

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
NO_FUNCTION = "-"
"""The ``function`` label of requests that named no function, or none that could be decoded."""


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_ENV) or None


class _DeviceMemory(Collector):
    """Device memory read when scraped (one process per GPU, so this process's view is the GPU's)."""

    def __init__(self, read: Callable[[], Mapping[str, int]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "torchfn_device_memory_bytes", "Device memory held by torch, on a GPU only.", labels=["kind"]
        )
        for kind, value in self._read().items():
            family.add_metric([kind], value)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._multiprocess = multiprocess_dir() is not None
        if not self._multiprocess:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        self.device_memory: Callable[[], Mapping[str, int]] = dict
        """Read at scrape time; the lifespan points it at the compute service."""
        self.read_queue_depth: Callable[[], int] = int
        """Read at scrape time (and the gauge also follows every computed request)."""
        reg = self.registry
        self.requests = Counter(
            "torchfn_requests", "HTTP requests answered.", ["endpoint", "function", "status"], registry=reg
        )
        self.latency = Histogram(
            "torchfn_request_duration_seconds",
            "Time from a request's arrival to the end of its response.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.in_flight = Gauge(
            "torchfn_requests_in_flight", "HTTP requests being served now.", multiprocess_mode="livesum", registry=reg
        )
        self.queue_depth = Gauge(
            "torchfn_queue_depth", "Requests waiting for compute.", multiprocess_mode="livesum", registry=reg
        )
        self.batch_size = Histogram(
            "torchfn_batch_size",
            "Requests per compute call (1 for a request computed alone).",
            buckets=BATCH_BUCKETS,
            registry=reg,
        )
        self.queue_wait = Histogram(
            "torchfn_queue_wait_seconds",
            "Time a request waited for compute.",
            ["function"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.compute_time = Histogram(
            "torchfn_compute_seconds",
            "Time of each compute call, under each function it computed.",
            ["function"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.rejected = Counter(
            "torchfn_rejected",
            "Requests refused by the compute service: queue full, deadline exceeded, not ready, out of memory.",
            ["reason"],
            registry=reg,
        )
        self.cancelled = Counter(
            "torchfn_cancelled",
            "Requests dropped because their client went away or was cut off.",
            ["reason"],
            registry=reg,
        )
        self.registry.register(_DeviceMemory(lambda: self.device_memory()))

        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._function_children: dict[str, tuple[Histogram, Histogram]] = {}

    def observe_request(self, endpoint: str, function: str, status: int, seconds: float) -> None:
        key = (endpoint, function, status)
        children = self._request_children.get(key)
        if children is None:  # ``labels()`` costs microseconds a call: look each set up once
            children = (
                self.requests.labels(endpoint, function or NO_FUNCTION, str(status)),
                self.latency.labels(endpoint),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def function_children(self, function: str) -> tuple[Histogram, Histogram]:
        """The queue-wait and compute-time histograms of ``function``."""
        children = self._function_children.get(function)
        if children is None:
            children = self.queue_wait.labels(function), self.compute_time.labels(function)
            self._function_children[function] = children
        return children

    def render(self) -> bytes:
        """The exposition text: this process's metrics, or every worker's in multi-process mode."""
        self.queue_depth.set(self.read_queue_depth())
        if not self._multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(_DeviceMemory(lambda: self.device_memory()))
        return generate_latest(registry)

    def process_exit(self) -> None:
        """Drop this process's live gauges from the shared files (multi-process mode)."""
        if self._multiprocess:
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class MetricsObserver:
    """The compute service's observer: records how each job was served, and names its function
    for the request's access log and request counter."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    @staticmethod
    def _name(job: Job) -> str:
        context = current_request.get()
        if context is not None:
            context.function = job.spec.name
        return job.spec.name

    def computed(self, jobs: Sequence[Job], seconds: float) -> None:
        """Once per compute call, as Triton counts executions: its size, and its time under each
        function it computed (a batch of unfusable jobs may mix functions)."""
        metrics = self._metrics
        metrics.batch_size.observe(len(jobs))
        for function in {job.spec.name for job in jobs}:
            metrics.function_children(function)[1].observe(seconds)

    def served(self, job: Job, served: Served[Result], queue_depth: int) -> None:
        metrics = self._metrics
        metrics.function_children(self._name(job))[0].observe(served.queue_wait)
        metrics.queue_depth.set(queue_depth)

    def refused(self, job: Job, error: ServiceError, queue_depth: int) -> None:
        self._name(job)
        if isinstance(error, ClientGone):
            self._metrics.cancelled.labels(error.code).inc()
        elif isinstance(error, Overloaded):
            reason = error.problems[0].type if error.problems else error.code
            self._metrics.rejected.labels(reason).inc()
        self._metrics.queue_depth.set(queue_depth)

    def cancelled(self, job: Job, queue_depth: int) -> None:
        self._name(job)
        self._metrics.cancelled.labels("cancelled").inc()
        self._metrics.queue_depth.set(queue_depth)
