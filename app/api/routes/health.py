"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import ComputeDep
from app.api.responses import error_responses
from app.core.lifecycle import is_draining

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "alive"}


@router.get(
    "/readyz",
    summary="The device is initialised, work is accepted and the process is not shutting down",
    responses={200: {"description": "Ready."}, **error_responses(503)},
)
async def readyz(compute: ComputeDep) -> JSONResponse:
    if compute.ready and not is_draining():
        return JSONResponse({"status": "ready", "device": compute.device})
    return JSONResponse(
        {"error": "not_ready", "message": "not accepting work", "details": [], "truncated": False},
        status_code=503,
        headers={"Retry-After": "1"},
    )
