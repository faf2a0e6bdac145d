"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app.api.deps import ComputeDep
from app.api.errors import Refusal, error_pipeline, status_headers
from app.api.responses import error_responses
from app.core.errors import Problem
from app.core.lifecycle import is_draining

router = APIRouter(tags=["health"])


def _unavailable(request: Request, code: str, message: str) -> Response:
    refusal = Refusal(503, code, [Problem(("service",), message, code)], status_headers(503))
    return error_pipeline(request).render(request.url.path, refusal)


@router.get(
    "/healthz",
    summary="The process is alive (503 once the device has failed for good, or a computation is stuck: restart it)",
    responses={200: {"description": "Alive."}, **error_responses(503)},
)
async def healthz(request: Request, compute: ComputeDep) -> Response:
    failure = compute.device_failure
    if failure is not None:
        return _unavailable(request, "device_failure", f"the device failed and the process needs a restart: {failure}")
    if compute.stuck:
        return _unavailable(
            request,
            "compute_stuck",
            f"a computation has run for {compute.stuck_for:.0f} s (limit {compute.settings.stuck_compute_s:g} s); "
            "the process needs a restart",
        )
    return JSONResponse({"status": "alive"})


@router.get(
    "/readyz",
    summary="The device is initialised, work is accepted and the process is not shutting down",
    responses={200: {"description": "Ready."}, **error_responses(503)},
)
async def readyz(request: Request, compute: ComputeDep) -> Response:
    if compute.device_failure is not None:
        return _unavailable(request, "device_failure", "the device failed; not accepting work")
    if compute.ready and not is_draining():
        return JSONResponse({"status": "ready", "device": compute.device})
    return _unavailable(request, "not_ready", "not accepting work")
