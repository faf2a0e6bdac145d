"""gRPC's standard health service, ``grpc.health.v1.Health`` (grpcio-health-checking's messages and
servicer base), reporting the one health model's readiness: what Kubernetes' gRPC probes and gRPC
load balancers ask.

Its services are the server as a whole (``""``) and ``inference.GRPCInferenceService``: SERVING
while the service is ready, NOT_SERVING otherwise (starting, a failed device, and from the stop
signal on); any other service is NOT_FOUND, as the health protocol says. ``Check`` answers the
readiness of the moment; ``Watch`` sends it, then each change, read every ``WATCH_INTERVAL_S``.
It needs no API key: a probe cannot send one, and it tells nothing but readiness.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from app.serving.health import Health
from app.transports.grpc.service import SERVICE_NAME

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICES = frozenset(("", SERVICE_NAME))
WATCH_INTERVAL_S = 1.0
Context = grpc.aio.ServicerContext[Any, Any]


class ReadinessHealth(health_pb2_grpc.HealthServicer):
    def __init__(self, model: Health) -> None:
        self._model = model

    def status(self) -> health_pb2.HealthCheckResponse.ServingStatus:
        return SERVING if self._model.readiness().ok else NOT_SERVING

    async def _known(self, request: health_pb2.HealthCheckRequest, context: Context) -> None:
        if request.service not in SERVICES:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service[:100]!r}")

    async def Check(  # noqa: N802 (gRPC's names)
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> health_pb2.HealthCheckResponse:
        await self._known(request, context)
        return health_pb2.HealthCheckResponse(status=self.status())

    async def Watch(  # noqa: N802
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        await self._known(request, context)
        last = None
        while True:
            status = self.status()
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(WATCH_INTERVAL_S)
