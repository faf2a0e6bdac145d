"""Dependencies: the resources the lifespan created, reached through ``Depends``.

``/activate`` and ``/loss`` read theirs with ``hot_path_resources`` instead. Dependencies
are ``async`` on purpose: FastAPI runs plain ``def`` dependencies in a thread pool, a
thread hop per dependency per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.compute.service import ComputeService
from app.core.config import Settings
from app.wire.json_protocol import DecodeOptions


async def get_compute(request: Request) -> ComputeService:
    compute: ComputeService = request.app.state.compute
    return compute


ComputeDep = Annotated[ComputeService, Depends(get_compute)]


def hot_path_resources(request: Request) -> tuple[ComputeService, DecodeOptions, Settings]:
    """What /activate and /loss need, without FastAPI's per-request dependency solving."""
    state = request.app.state
    return state.compute, state.decode_options, state.settings
