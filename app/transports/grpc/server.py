"""The gRPC server: the protocol's service and gRPC's health service on ``TORCHFN_GRPC_PORT``, in
the same process and on the same event loop as HTTP, started and stopped by the app's lifespan.

It binds the address HTTP binds (``TORCHFN_HOST``) within the bounds of ``options.py``. With several
workers each one binds the port (``SO_REUSEPORT``: the kernel shares the connections out, as HTTP's
shared socket does); with one, a port in use fails start-up.

Draining: from the stop signal (``app.core.lifecycle``) readiness fails, so the health service
answers NOT_SERVING to a probe that still comes through, and gRPC refuses new calls (its server
stops accepting: GOAWAY, new streams refused), while the calls in flight have what is left of
``TORCHFN_SHUTDOWN_GRACE_S``; those still running then are cut off with UNAVAILABLE (retry
elsewhere). The lifespan waits for that before it stops the compute service.

gRPC receives each call's whole message before the service sees it, so the memory budget cannot
gate that reading: what messages being received hold is bounded by ``grpc_max_concurrent_calls``
times the largest message (``max_body_bytes``), besides the budget.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2_grpc

from app.compute.catalogue import Catalogue
from app.core.config import Settings
from app.core.lifecycle import shutdown_time_left, when_draining
from app.serving.auth import ApiKeys
from app.serving.health import Health
from app.serving.road import Road
from app.telemetry.metrics import Metrics
from app.transports.grpc.calls import CallGuard
from app.transports.grpc.health import ReadinessHealth
from app.transports.grpc.options import grpc_server_bounds
from app.transports.grpc.service import MODEL_INFER, Method, method_path, serialized_infer_handler
from app.transports.grpc.servicer import InferenceService

if TYPE_CHECKING:
    from app.telemetry.tracing import Tracing

logger = logging.getLogger(__name__)

REFUSED_WHILE_DRAINING = frozenset((MODEL_INFER,))
"""Methods refused (UNAVAILABLE) from the stop signal on; health and metadata still answer."""


def _nothing() -> None:
    pass


def listen_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class GrpcServer:
    def __init__(
        self,
        settings: Settings,
        road: Road,
        health: Health,
        catalogue: Catalogue,
        metrics: Metrics | None,
        name: str,
        version: str,
        tracing: Tracing | None = None,
    ) -> None:
        """``tracing``: the calls' tracing when it is on (``TORCHFN_TRACING``)."""
        self.settings = settings
        keys = ApiKeys(settings.api_keys) if settings.api_keys else None
        self.guard = CallGuard(metrics, settings.access_log, keys, settings.max_reported_errors, tracing)
        self.service = InferenceService(road, health, catalogue, name, version)
        self.health = ReadinessHealth(health)
        bounds = grpc_server_bounds(settings)
        options: list[tuple[str, Any]] = [*bounds.options, ("grpc.so_reuseport", 1 if settings.workers > 1 else 0)]
        self.server = grpc.aio.server(options=options, maximum_concurrent_rpcs=bounds.maximum_concurrent_rpcs)
        self.server.add_generic_rpc_handlers((serialized_infer_handler(self.service, self._guarded),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = 0
        self._draining: asyncio.Task[None] | None = None
        self._forget_draining: Callable[[], None] = _nothing

    def _guarded(self, method: Method, coroutine: Any) -> Any:
        return self.guard.guarded(
            method_path(method.name), coroutine, refused_while_draining=method.name in REFUSED_WHILE_DRAINING
        )

    async def start(self) -> int:
        """Listen and serve; the port bound (the setting's, or the one chosen for port 0 in tests)."""
        address = listen_address(self.settings.host, self.settings.grpc_port)
        self.port = self.server.add_insecure_port(address)
        await self.server.start()
        loop = asyncio.get_running_loop()

        def signalled() -> None:
            loop.call_soon_threadsafe(self.drain)

        self._forget_draining = when_draining(signalled)
        logger.info("gRPC listening on %s", listen_address(self.settings.host, self.port))
        return self.port

    def drain(self) -> None:
        """Stop taking calls, and give those in flight what is left of the grace period."""
        if self._draining is None:
            self._draining = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        grace = shutdown_time_left(self.settings.shutdown_grace_s)
        stopping = asyncio.ensure_future(self.server.stop(grace + 1.0))  # refuses new calls at once
        await self.guard.cut_off_after(grace)
        await stopping

    async def stop(self) -> None:
        """Drain (if the stop signal has not begun it) and wait for the end."""
        self._forget_draining()
        self.drain()
        assert self._draining is not None
        await self._draining
