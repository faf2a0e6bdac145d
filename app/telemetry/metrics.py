"""Prometheus metrics (``prometheus_client``): what the transports and the compute service report.

One ``Metrics`` per app, on its own registry. With several server processes
(``PROMETHEUS_MULTIPROC_DIR`` set, as ``python -m app.serve`` does when ``TORCHFN_WORKERS`` > 1)
the values live in shared files and ``/metrics`` sums them over the processes.

What every request records (its count, latency and queue wait, the requests in flight) is tallied
in plain numbers on the event loop and folded into the registry when ``/metrics`` is scraped and
every ``FOLD_S`` (so that other processes see it): each ``prometheus_client`` update takes a lock
and walks the buckets in Python, and the nine of a request cost 8 to 12 µs of a ~70 µs relu
(``bench/throughput.py``'s payload, measured in process)."""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

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

from app.compute.batching import Served
from app.compute.jobs import Job, Result
from app.core.errors import ClientGone, Overloaded, ServiceError
from app.core.internals import add_to_histogram, histogram_bounds

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
FOLD_S = 1.0
"""How often the tallies are folded into the registry, besides at every scrape."""
NO_FUNCTION = "-"
"""The ``function`` label of requests that named no function, or none that could be decoded."""


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_ENV) or None


class _ReadWhenScraped(Collector):
    """A gauge with a ``kind`` label whose values are read when scraped (this process's view)."""

    def __init__(self, name: str, documentation: str, read: Callable[[], Mapping[str, int]]) -> None:
        self._name, self._documentation, self._read = name, documentation, read

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self._name, self._documentation, labels=["kind"])
        for kind, value in self._read().items():
            family.add_metric([kind], value)
        yield family


class _Observations:
    """A histogram child's observations since the last fold: a count per bucket and their sum."""

    __slots__ = ("bounds", "child", "counts", "total")

    def __init__(self, child: Histogram) -> None:
        self.child = child
        self.bounds: Sequence[float] = histogram_bounds(child)  # ascending, ending with +Inf
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        """What ``Histogram.observe`` counts: the first bucket whose bound is at least ``value``."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def fold(self) -> None:
        """Add the tally to the child (what ``observe`` would have done one by one) and start again."""
        if not any(self.counts):
            return
        add_to_histogram(self.child, self.counts, self.total)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._multiprocess = multiprocess_dir() is not None
        if not self._multiprocess:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        self.device_memory: Callable[[], Mapping[str, int]] = dict
        """Read at scrape time; the lifespan points it at the compute service."""
        self.budget_memory: Callable[[], Mapping[str, int]] = dict
        """Read at scrape time; the lifespan points it at the compute service's memory budget."""
        self.read_queue_depth: Callable[[], int] = int
        """Read at every fold (and so at every scrape)."""
        reg = self.registry
        self.requests = Counter(
            "torchfn_requests",
            "Requests answered, HTTP requests and gRPC calls (status: HTTP's, or the gRPC status code's name).",
            ["endpoint", "function", "status", "protocol"],
            registry=reg,
        )
        self.latency = Histogram(
            "torchfn_request_duration_seconds",
            "Time from a request's arrival to the end of its response.",
            ["endpoint", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.in_flight = Gauge(
            "torchfn_requests_in_flight",
            "Requests being served now: HTTP requests and gRPC calls.",
            multiprocess_mode="livesum",
            registry=reg,
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
        for collector in self._read_when_scraped():
            self.registry.register(collector)

        # The tallies, by label set (``labels()`` costs microseconds a call: each set is looked up once).
        self.in_flight_now = 0
        """Requests being served now, whatever their transport (the gauge follows it at each fold)."""
        self._request_counts: dict[tuple[str, str, int | str, str], list[Any]] = {}
        """[counter child, requests since the last fold] by (endpoint, function, status, protocol)."""
        self._latencies: dict[tuple[str, str], _Observations] = {}
        self._function_children: dict[str, tuple[_Observations, _Observations]] = {}
        self._batch_sizes = _Observations(self.batch_size)
        self._folder: asyncio.TimerHandle | None = None

    def observe_request(
        self, endpoint: str, function: str, status: int | str, seconds: float, protocol: str = "http"
    ) -> None:
        """``protocol``: the transport (``http``, ``grpc``); ``status``: its status (an HTTP status,
        a gRPC status code's name)."""
        key = (endpoint, function, status, protocol)
        counted = self._request_counts.get(key)
        if counted is None:
            counted = self._request_counts[key] = [
                self.requests.labels(endpoint, function or NO_FUNCTION, str(status), protocol),
                0,
            ]
        counted[1] += 1
        latency = self._latencies.get((endpoint, protocol))
        if latency is None:
            latency = self._latencies[endpoint, protocol] = _Observations(self.latency.labels(endpoint, protocol))
        latency.observe(seconds)

    def function_children(self, function: str) -> tuple[_Observations, _Observations]:
        """The queue-wait and compute-time tallies of ``function``."""
        children = self._function_children.get(function)
        if children is None:
            children = (
                _Observations(self.queue_wait.labels(function)),
                _Observations(self.compute_time.labels(function)),
            )
            self._function_children[function] = children
        return children

    def observe_batch(self, size: int) -> None:
        self._batch_sizes.observe(size)

    def fold(self) -> None:
        """Bring the registry up to date with the tallies."""
        self.in_flight.set(self.in_flight_now)
        self.queue_depth.set(self.read_queue_depth())
        for counted in self._request_counts.values():
            if counted[1]:
                counted[0].inc(counted[1])
                counted[1] = 0
        for latency in self._latencies.values():
            latency.fold()
        for queue_wait, compute_time in self._function_children.values():
            queue_wait.fold()
            compute_time.fold()
        self._batch_sizes.fold()

    def fold_periodically(self) -> None:
        """Fold every ``FOLD_S`` on the running loop until ``stop_folding``."""
        self.fold()
        self._folder = asyncio.get_running_loop().call_later(FOLD_S, self.fold_periodically)

    def stop_folding(self) -> None:
        if self._folder is not None:
            self._folder.cancel()
            self._folder = None
        self.fold()

    def render(self) -> bytes:
        """The exposition text: this process's metrics, or every worker's in multi-process mode."""
        self.fold()
        if not self._multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        for collector in self._read_when_scraped():
            registry.register(collector)
        return generate_latest(registry)

    def _read_when_scraped(self) -> list[Collector]:
        """The gauges read from the compute service at each scrape (per process: a worker's own)."""
        return [
            _ReadWhenScraped(
                "torchfn_device_memory_bytes",
                "Device memory held by torch, on a GPU only.",
                lambda: self.device_memory(),
            ),
            _ReadWhenScraped(
                "torchfn_memory_budget_bytes",
                "The memory budget: its limit, what requests hold of it, and what waiting requests ask.",
                lambda: self.budget_memory(),
            ),
        ]

    def process_exit(self) -> None:
        """Drop this process's live gauges from the shared files (multi-process mode)."""
        if self._multiprocess:
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class MetricsObserver:
    """The compute service's observer: records how each job was served."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def computed(self, jobs: Sequence[Job], seconds: float) -> None:
        """Once per compute call, as Triton counts executions: its size, and its time under each
        function it computed (a batch of unfusable jobs may mix functions)."""
        metrics = self._metrics
        metrics.observe_batch(len(jobs))
        for function in {job.spec.name for job in jobs}:
            metrics.function_children(function)[1].observe(seconds)

    def served(self, job: Job, served: Served[Result], seconds: float) -> None:
        self._metrics.function_children(job.spec.name)[0].observe(served.queue_wait)

    def refused(self, job: Job, error: ServiceError, seconds: float) -> None:
        if isinstance(error, ClientGone):
            self._metrics.cancelled.labels(error.code).inc()
        elif isinstance(error, Overloaded):
            reason = error.problems[0].type if error.problems else error.code
            self._metrics.rejected.labels(reason).inc()

    def cancelled(self, job: Job, seconds: float) -> None:
        self._metrics.cancelled.labels("cancelled").inc()
