"""The compute service: owns the device and the worker threads; runs jobs off the event loop."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import torch

from app.compute.catalogue import CATALOGUE, Catalogue
from app.compute.engine import Engine, resolve_device
from app.compute.jobs import Job, Result
from app.core.config import Settings
from app.core.errors import Overloaded

logger = logging.getLogger(__name__)


class ComputeService:
    """Started and stopped by the app's lifespan; transport-neutral."""

    def __init__(self, settings: Settings, catalogue: Catalogue = CATALOGUE) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self._executor: ThreadPoolExecutor | None = None
        self._engine: Engine | None = None
        self._accepting = False

    @property
    def ready(self) -> bool:
        """The device is initialised and work is accepted."""
        return self._accepting and self._engine is not None

    @property
    def device(self) -> str:
        return str(self._engine.device) if self._engine else "uninitialised"

    async def start(self) -> None:
        device = resolve_device(self.settings.device)
        if self.settings.torch_threads is not None:
            torch.set_num_threads(self.settings.torch_threads)
        self._executor = ThreadPoolExecutor(self.settings.compute_workers, thread_name_prefix="torch-compute")
        self._engine = Engine(device)
        await asyncio.get_running_loop().run_in_executor(self._executor, self._warm_up, self._engine)
        self._accepting = True
        logger.info("compute ready on %s with %d torch threads", device, torch.get_num_threads())

    async def stop(self) -> None:
        self._accepting = False
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)
            self._executor = None

    async def run(self, job: Job) -> Result:
        if not self._accepting or self._executor is None or self._engine is None:
            raise Overloaded.at(("service",), "not accepting work (starting or shutting down)", "not_ready")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._engine.run, job)

    @staticmethod
    def _warm_up(engine: Engine) -> None:
        x = torch.linspace(-1.0, 1.0, 8, device=engine.device, requires_grad=True)
        torch.autograd.grad(torch.relu(x).sum(), x)
        if engine.device.type == "cuda":
            torch.cuda.synchronize(engine.device)
