"""The compute service: owns the device, the worker threads and the batcher; transport-neutral."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

from app.compute.batching import DeadlineExceeded, DynamicBatcher, GoneProbe, Served
from app.compute.engine import Engine, resolve_device
from app.compute.fusion import fusion_key
from app.compute.jobs import Job, Result
from app.compute.observer import ComputeObserver
from app.core.config import Settings
from app.core.cpu_quota import threads_per_worker
from app.core.errors import Overloaded, ServiceError

logger = logging.getLogger(__name__)

_COMPUTED_ONE_BY_ONE = "one-by-one"
"""Batch key of jobs that cannot be fused: they still share one trip to the worker thread."""


_PROBE_AFTER = 0.05
"""Queued requests are asked whether their client is still there only after this long: asking
costs about 20 µs, and computing a request whose client left sooner is harmless."""


def batch_key(job: Job) -> Hashable:
    return fusion_key(job) or _COMPUTED_ONE_BY_ONE


def job_size(job: Job) -> int:
    return sum(arr.size for arr in job.arrays.values())


class ComputeService:
    """Started and stopped by the app's lifespan."""

    def __init__(self, settings: Settings, observer: ComputeObserver | None = None) -> None:
        self.settings = settings
        self._observer = observer
        self._executor: ThreadPoolExecutor | None = None
        self._engine: Engine | None = None
        self._batcher: DynamicBatcher[Job, Result] | None = None
        self._accepting = False

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
        self._executor = ThreadPoolExecutor(settings.compute_workers, thread_name_prefix="torch-compute")
        engine = Engine(device)
        await asyncio.get_running_loop().run_in_executor(self._executor, self._warm_up, engine)
        self._engine = engine
        if settings.batching:
            self._batcher = DynamicBatcher(
                self._compute_batch,
                key=batch_key,
                size=job_size,
                executor=self._executor,
                max_batch_size=settings.max_batch_size,
                max_batch_elements=settings.max_batch_elements,
                max_batch_delay=settings.max_batch_delay_ms / 1000.0,
                max_queue_size=settings.max_queue_size,
                consumers=settings.compute_workers,
                probe_after=_PROBE_AFTER,
                on_computed=self._observer.computed if self._observer is not None else None,
            )
            self._batcher.start()
        self._accepting = True
        logger.info("compute ready on %s with %d torch threads", device, torch.get_num_threads())

    async def stop(self) -> None:
        """Refuse new work, finish the queued work, release the threads."""
        self._accepting = False
        if self._batcher is not None:
            await self._batcher.stop()
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)
            self._executor = None

    def admit(self) -> None:
        """Refuse at once (503) what ``run`` would refuse for want of room, before a body is even
        read: under overload the excess must cost next to nothing."""
        if not self._accepting:
            raise Overloaded.at(("service",), "not accepting work (starting or shutting down)", "not_ready")
        if self._batcher is not None:
            self._batcher.check_room()

    async def run(self, job: Job, timeout: float | None = None, gone: GoneProbe | None = None) -> Served[Result]:
        observer = self._observer
        try:
            if not self._accepting or self._executor is None or self._engine is None:
                raise Overloaded.at(("service",), "not accepting work (starting or shutting down)", "not_ready")
            limit = self.settings.request_timeout_s
            if timeout is not None:
                limit = min(timeout, limit)
            if self._batcher is not None:
                served = await self._batcher.submit(job, limit, gone)
            else:
                served = await self._run_unbatched(job, limit)
        except ServiceError as error:
            if observer is not None:
                observer.refused(job, error, self.queue_depth)
            raise
        except asyncio.CancelledError:
            if observer is not None:
                observer.cancelled(job, self.queue_depth)
            raise
        if observer is not None:
            observer.served(job, served, self.queue_depth)
        return served

    async def _run_unbatched(self, job: Job, limit: float) -> Served[Result]:
        executor, engine = self._executor, self._engine
        assert executor is not None  # run() checked both
        assert engine is not None
        started = time.monotonic()
        work = asyncio.get_running_loop().run_in_executor(executor, engine.run, job)
        try:
            result = await asyncio.wait_for(work, limit)
        except TimeoutError:
            raise DeadlineExceeded.after(limit) from None
        seconds = time.monotonic() - started
        if self._observer is not None:
            self._observer.computed([job], seconds)
        return Served(result, 0.0, seconds, 1)

    def _compute_batch(self, jobs: Sequence[Job], key: Hashable | None) -> list[Result | Exception]:
        """The batcher's compute call, in a worker thread: its jobs share ``key`` (``batch_key``)."""
        assert self._engine is not None  # the batcher starts after the engine
        return self._engine.run_group(jobs, key if isinstance(key, tuple) else None)

    @staticmethod
    def _warm_up(engine: Engine) -> None:
        x = torch.linspace(-1.0, 1.0, 8, device=engine.device, requires_grad=True)
        torch.autograd.grad(torch.relu(x).sum(), x)
        if engine.device.type == "cuda":
            torch.cuda.synchronize(engine.device)
