"""Dependencies: the resources the lifespan created, reached through ``Depends``. They are ``async``
on purpose: FastAPI runs plain ``def`` dependencies in a thread pool, a thread hop per dependency
per request. (The compute routes are plain ASGI endpoints and read the road from the app's state.)"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.compute.catalogue import Catalogue
from app.compute.service import ComputeService
from app.serving.health import Health


async def get_compute(request: Request) -> ComputeService:
    compute: ComputeService = request.app.state.compute
    return compute


ComputeDep = Annotated[ComputeService, Depends(get_compute)]


async def get_catalogue(request: Request) -> Catalogue:
    """The functions this service runs: torch's and the plugins its settings name."""
    catalogue: Catalogue = request.app.state.catalogue
    return catalogue


CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]


async def get_health(request: Request) -> Health:
    """The one health model every protocol's health endpoints report."""
    health: Health = request.app.state.health
    return health


HealthDep = Annotated[Health, Depends(get_health)]
