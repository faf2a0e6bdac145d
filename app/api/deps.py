"""Dependencies: the resources the lifespan created, reached through ``Depends``.

``/activate`` and ``/loss`` read theirs with ``hot_path_resources`` instead. Dependencies
are ``async`` on purpose: FastAPI runs plain ``def`` dependencies in a thread pool, a
thread hop per dependency per request."""

from __future__ import annotations

from typing import Annotated, NamedTuple

from fastapi import Depends, Request

from app.compute.catalogue import Catalogue
from app.compute.service import ComputeService
from app.core.config import Settings
from app.protocols.decoding import DecodeOptions


async def get_compute(request: Request) -> ComputeService:
    compute: ComputeService = request.app.state.compute
    return compute


ComputeDep = Annotated[ComputeService, Depends(get_compute)]


async def get_catalogue(request: Request) -> Catalogue:
    """The functions this service runs: torch's and the plugins its settings name."""
    catalogue: Catalogue = request.app.state.catalogue
    return catalogue


CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]


class HotPathResources(NamedTuple):
    compute: ComputeService
    options: DecodeOptions
    settings: Settings


def hot_path_resources(request: Request) -> HotPathResources:
    """What /activate and /loss need, without FastAPI's per-request dependency solving: one
    attribute of the app's state, set by the lifespan."""
    resources: HotPathResources = request.app.state.hot_path
    return resources
