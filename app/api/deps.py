"""Dependencies: the resources the lifespan created, reached through ``Depends``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.compute.service import ComputeService
from app.core.config import Settings
from app.wire.json_protocol import DecodeOptions


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_compute(request: Request) -> ComputeService:
    compute: ComputeService = request.app.state.compute
    return compute


def get_decode_options(request: Request) -> DecodeOptions:
    options: DecodeOptions = request.app.state.decode_options
    return options


SettingsDep = Annotated[Settings, Depends(get_settings)]
ComputeDep = Annotated[ComputeService, Depends(get_compute)]
DecodeOptionsDep = Annotated[DecodeOptions, Depends(get_decode_options)]
