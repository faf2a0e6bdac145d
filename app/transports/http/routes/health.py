"""Liveness and readiness, from the one health model (``app.serving.health``)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app.core.errors import Problem
from app.serving.health import Verdict
from app.transports.http.deps import HealthDep
from app.transports.http.errors import Refusal, error_pipeline, status_headers
from app.transports.http.responses import error_responses

router = APIRouter(tags=["health"])


def _unavailable(request: Request, verdict: Verdict) -> Response:
    refusal = Refusal(503, verdict.code, [Problem(("service",), verdict.message, verdict.code)], status_headers(503))
    return error_pipeline(request).render(request.url.path, refusal)


@router.get(
    "/healthz",
    summary="The process is alive (503 once the device has failed for good, or a computation is stuck: restart it)",
    responses={200: {"description": "Alive."}, **error_responses(503)},
)
async def healthz(request: Request, health: HealthDep) -> Response:
    verdict = health.liveness()
    return JSONResponse({"status": "alive"}) if verdict.ok else _unavailable(request, verdict)


@router.get(
    "/readyz",
    summary="The device is initialised, work is accepted and the process is not shutting down",
    responses={200: {"description": "Ready."}, **error_responses(503)},
)
async def readyz(request: Request, health: HealthDep) -> Response:
    verdict = health.readiness()
    return JSONResponse({"status": "ready", "device": health.device}) if verdict.ok else _unavailable(request, verdict)
