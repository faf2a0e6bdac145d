"""POST /activate and POST /loss: HTTP only; decoding, computing and encoding live elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.body import read_json_body
from app.api.deps import hot_path_resources
from app.api.openapi import request_body, timeout_header
from app.api.responses import COMPUTE_ERRORS
from app.api.timing import request_timeout, server_timing
from app.compute.catalogue import CATALOGUE
from app.compute.jobs import Result
from app.wire.json_protocol import (
    Decoded,
    DecodeOptions,
    decode_activation,
    decode_loss,
    encode_activation,
    encode_loss,
)
from app.wire.models import ActivateRequest, ActivateResponse, LossRequest, LossResponse

router = APIRouter(tags=["compute"])
T = TypeVar("T")


async def _maybe_off_loop(large: bool, fn: Callable[..., T], *args: Any) -> T:
    """Small payloads are handled inline; large ones in a thread so the loop stays responsive."""
    return await asyncio.to_thread(fn, *args) if large else fn(*args)


async def _serve(
    request: Request,
    decode: Callable[[bytes, DecodeOptions], Decoded],
    encode: Callable[[Decoded, Result], bytes],
) -> Response:
    # The hot path reads its resources directly: FastAPI's dependency solving costs ~50-80 µs
    # a request (measured with bench/throughput.py), a sixth of the whole budget.
    compute, options, settings = hot_path_resources(request)
    timeout = request_timeout(request)
    compute.admit()
    body = await read_json_body(request, settings.max_body_bytes, settings.body_idle_timeout_s)
    large = len(body) > settings.inline_decode_bytes
    decoded = await _maybe_off_loop(large, decode, body, options)
    served = await compute.run(decoded.job, timeout, request.is_disconnected)
    payload = await _maybe_off_loop(large, encode, decoded, served.result)
    return Response(payload, media_type="application/json", headers={"Server-Timing": server_timing(served)})


@router.post(
    "/activate",
    summary="Apply an activation function (and its vector-Jacobian product)",
    response_model=None,
    responses={
        200: {"model": ActivateResponse, "description": "The output, and its gradient when asked."},
        **COMPUTE_ERRORS,
    },
    openapi_extra={**request_body(ActivateRequest, CATALOGUE.of_kind("activation"), "leaky_relu"), **timeout_header()},
)
async def activate(request: Request) -> Response:
    return await _serve(request, decode_activation, encode_activation)


@router.post(
    "/loss",
    summary="Compute a loss function (and its gradients)",
    response_model=None,
    responses={
        200: {"model": LossResponse, "description": "The loss, and its gradients when asked."},
        **COMPUTE_ERRORS,
    },
    openapi_extra={**request_body(LossRequest, CATALOGUE.of_kind("loss"), "cross_entropy"), **timeout_header()},
)
async def loss(request: Request) -> Response:
    return await _serve(request, decode_loss, encode_loss)
