"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import ComputeDep
from app.api.responses import error_responses
from app.core.lifecycle import is_draining

router = APIRouter(tags=["health"])


def _unavailable(error: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": error, "message": message, "details": [], "truncated": False},
        status_code=503,
        headers={"Retry-After": "1"},
    )


@router.get(
    "/healthz",
    summary="The process is alive (503 once the device has failed for good, or a computation is stuck: restart it)",
    responses={200: {"description": "Alive."}, **error_responses(503)},
)
async def healthz(compute: ComputeDep) -> JSONResponse:
    failure = compute.device_failure
    if failure is not None:
        return _unavailable("device_failure", f"the device failed and the process needs a restart: {failure}")
    if compute.stuck:
        return _unavailable(
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
async def readyz(compute: ComputeDep) -> JSONResponse:
    if compute.device_failure is not None:
        return _unavailable("device_failure", "the device failed; not accepting work")
    if compute.ready and not is_draining():
        return JSONResponse({"status": "ready", "device": compute.device})
    return _unavailable("not_ready", "not accepting work")
