"""The compute service: owns the device, the worker threads and the batcher; transport-neutral."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import ParamSpec, TypeVar

import torch

from app.compute.batching import DynamicBatcher, GoneProbe, Served
from app.compute.engine import Engine, resolve_device
from app.compute.fusion import fusion_key
from app.compute.jobs import Job, Result, over_cost_limit, reserved_bytes, result_bytes
from app.compute.jobs import job_size as job_size  # the batcher's size of a job; the codecs' too
from app.compute.jobs import reply_bytes as reply_bytes
from app.compute.memory import MemoryBudget, Reservation
from app.compute.observer import ComputeObserver, Observers
from app.compute.statistics import InferenceStatistics
from app.compute.threads import DaemonThreadPool
from app.core.allocator import trim_memory
from app.core.cgroup_limits import default_memory_budget, threads_per_worker
from app.core.config import Settings
from app.core.errors import Overloaded, PluginFailure, ServiceError

logger = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

_PROBE_AFTER = 0.05
"""Queued requests are asked whether their client is still there only after this long: asking
costs about 20 µs, and computing a request whose client left sooner is harmless."""


COMPUTE_THREAD_PREFIX = "torch-compute"


def log_plugin_failure(error: PluginFailure) -> None:
    """The plugin's failure with what it raised and its traceback, logged here, on the request's
    task (so with its id), rather than on the compute thread; then let go of the traceback (its
    frames hold the request's tensors)."""
    cause = error.__cause__
    logger.error("%s", error, exc_info=(type(cause), cause, cause.__traceback__) if cause is not None else None)
    error.__cause__ = None


class ComputeService:
    """Started and stopped by the app's lifespan."""

    def __init__(self, settings: Settings, observer: ComputeObserver | None = None) -> None:
        self.settings = settings
        self.statistics = InferenceStatistics()
        """Each function's inference statistics, kept whether or not ``observer`` is given."""
        self._observer: ComputeObserver = Observers([self.statistics, *([observer] if observer is not None else [])])
        self._executor: DaemonThreadPool | None = None
        self._engine: Engine | None = None
        self._batcher: DynamicBatcher[Job, Result] | None = None
        self._accepting = False
        self.memory = MemoryBudget(settings.memory_budget_bytes or default_memory_budget(), trim_memory)
        """Bytes requests in flight hold together (``memory.py``)."""
        self._inline_on = False
        """Whether a lone tiny request may be computed on the loop (``_small_enough_for_the_loop``)."""
        self._computing_since: dict[int, float] = {}
        """When the compute call now running on each worker thread started, by thread id."""

    @property
    def ready(self) -> bool:
        """The device is initialised, has not failed, and work is accepted."""
        return self._accepting and self._engine is not None and self._engine.failure is None

    @property
    def device_failure(self) -> str | None:
        """Why the device is unusable until the process restarts (a sticky device error), if it is."""
        return self._engine.failure if self._engine else None

    @property
    def device(self) -> str:
        return str(self._engine.device) if self._engine else "uninitialised"

    @property
    def queue_depth(self) -> int:
        """Requests waiting for compute now."""
        return self._batcher.depth if self._batcher is not None else 0

    @property
    def stuck_for(self) -> float:
        """Seconds the oldest compute call now running has run; 0 when none runs."""
        started = min(self._computing_since.values(), default=None)
        return 0.0 if started is None else time.monotonic() - started

    @property
    def stuck(self) -> bool:
        """A compute call has run past ``stuck_compute_s``: liveness fails so that the process is
        restarted (the thread cannot be interrupted)."""
        return self.stuck_for > self.settings.stuck_compute_s

    def device_memory(self) -> dict[str, int]:
        """Bytes of device memory torch has allocated and reserved; empty off a GPU."""
        if self._engine is None or self._engine.device.type != "cuda":
            return {}
        device = self._engine.device
        return {
            "allocated": torch.cuda.memory_allocated(device),
            "reserved": torch.cuda.memory_reserved(device),
        }

    async def start(self) -> None:
        settings = self.settings
        device = resolve_device(settings.device)
        torch.set_num_threads(threads_per_worker(settings.workers, settings.torch_threads))
        self._executor = DaemonThreadPool(settings.compute_workers, COMPUTE_THREAD_PREFIX)
        engine = Engine(device, settings.max_request_cost)
        await asyncio.get_running_loop().run_in_executor(self._executor, self._warm_up, engine)
        self._engine = engine
        # Without batching every request is its own batch: the same queue, deadlines and limits.
        self._batcher = DynamicBatcher(
            self._compute_batch,
            key=fusion_key,
            size=job_size,
            executor=self._executor,
            max_batch_size=settings.max_batch_size if settings.batching else 1,
            max_batch_elements=settings.max_batch_elements,
            max_batch_delay=settings.max_batch_delay_ms / 1000.0,
            max_queue_size=settings.max_queue_size,
            consumers=settings.compute_workers,
            probe_after=_PROBE_AFTER,
            on_computed=self._observer.computed,
        )
        self._batcher.start()
        self._inline_on = device.type == "cpu" and settings.inline_compute_max_cost > 0
        self._accepting = True
        logger.info("compute ready on %s with %d torch threads", device, torch.get_num_threads())

    async def stop(self, within: float | None = None) -> bool:
        """Refuse new work, finish the queued work, release the threads, in ``within`` seconds
        at most: a computation still running then is abandoned (a thread cannot be interrupted;
        the process must exit without waiting for it). Returns whether it stopped cleanly."""
        self._accepting = False
        batcher, executor = self._batcher, self._executor
        finishing = asyncio.ensure_future(batcher.stop()) if batcher is not None else None
        if finishing is not None:
            done, _ = await asyncio.wait({finishing}, timeout=within)
            if not done:
                finishing.cancel()
                logger.warning("compute still running at shutdown; leaving it to the process exit")
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        return not self._computing_since

    def admit(self) -> None:
        """Refuse at once (503) what ``run`` would refuse for want of room, before a body is even
        read: under overload the excess must cost next to nothing."""
        if not self._accepting:
            raise Overloaded.at(("service",), "not accepting work (starting or shutting down)", "not_ready")
        if self._batcher is not None:
            self._batcher.check_room()

    def check_cost(self, job: Job) -> None:
        """413 for a job whose estimated compute exceeds the limit, before any of it is spent."""
        refusal = over_cost_limit(job, job.cost, self.settings.max_request_cost)
        if refusal is not None:
            raise refusal

    async def run(
        self,
        job: Job,
        timeout: float | None = None,
        gone: GoneProbe | None = None,
        memory: Reservation | None = None,
    ) -> Served[Result]:
        """Compute ``job`` within the shortest of ``timeout``, the job's own ``Job.timeout`` and the
        service's limit. ``memory``: the request's reservation, grown to what computing and
        encoding the job take first, then resized to what its result and the reply's encoding take."""
        observer = self._observer
        started = time.monotonic()
        try:
            if not self._accepting or self._batcher is None:
                raise Overloaded.at(("service",), "not accepting work (starting or shutting down)", "not_ready")
            self.check_cost(job)
            limit = self.settings.request_timeout_s
            if timeout is not None:
                limit = min(timeout, limit)
            if job.timeout is not None:
                limit = min(job.timeout, limit)
            wait = min(self.settings.memory_wait_s, limit)
            if memory is not None and not memory.resize_now(needed := reserved_bytes(job)):
                await memory.resize(needed, wait, ("body",), "computing it")
            # Tiny, and (the batcher sees) alone: computed on the loop. Under load, batched.
            inline = self._inline_on and self._small_enough_for_the_loop(job)
            served = await self._batcher.submit(job, limit, gone, inline)
            if memory is not None and not memory.resize_now(needed := result_bytes(served.result)):
                await memory.resize(needed, wait, ("body",), "encoding its reply")
        except ServiceError as error:
            if isinstance(error, PluginFailure):
                log_plugin_failure(error)
            observer.refused(job, error, time.monotonic() - started)
            raise
        except asyncio.CancelledError:
            observer.cancelled(job, time.monotonic() - started)
            raise
        observer.served(job, served, time.monotonic() - started)
        return served

    def _small_enough_for_the_loop(self, job: Job) -> bool:
        """Torch's own function, chained to torch's own if at all, of a few microseconds."""
        return (
            job.cost.work <= self.settings.inline_compute_max_cost
            and job.spec.plugin is None
            and (job.activation is None or job.activation.spec.plugin is None)
        )

    def _compute_batch(self, jobs: Sequence[Job], key: Hashable | None) -> list[Result | Exception]:
        """The batcher's compute call, in a worker thread: its jobs share the fusion ``key`` (None:
        they cannot be fused, and share only the trip to the worker thread)."""
        engine = self._engine
        assert engine is not None  # the batcher starts after the engine
        return self._timed(engine.run_group, jobs, key if isinstance(key, tuple) else None)

    def _timed(self, compute: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a compute call on this worker thread, known to ``stuck_for`` while it runs."""
        thread = threading.get_ident()
        self._computing_since[thread] = time.monotonic()
        try:
            return compute(*args, **kwargs)
        finally:
            del self._computing_since[thread]

    @staticmethod
    def _warm_up(engine: Engine) -> None:
        x = torch.linspace(-1.0, 1.0, 8, device=engine.device, requires_grad=True)
        torch.autograd.grad(torch.relu(x).sum(), x)
        if engine.device.type == "cuda":
            torch.cuda.synchronize(engine.device)
