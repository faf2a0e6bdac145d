"""POST /activate and POST /loss: HTTP only; decoding, computing and encoding live elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter, Request

from app.api.body import read_json_body
from app.api.deps import hot_path_resources
from app.api.headers import compute_headers
from app.api.openapi import request_body, timeout_header
from app.api.responses import COMPUTE_ERRORS, EncodedJSON
from app.api.routing import RequestHandlerRoute
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

router = APIRouter(tags=["compute"], route_class=RequestHandlerRoute)


async def _serve(
    request: Request,
    decode: Callable[[bytes, DecodeOptions], Decoded],
    encode: Callable[[Decoded, Result], bytes],
) -> EncodedJSON:
    # The route skips FastAPI's endpoint wrapper (RequestHandlerRoute), dependencies included,
    # so the handler reads its resources from the app's state.
    compute, options, settings = hot_path_resources(request)
    headers = compute_headers(request)
    timeout = request_timeout(headers.request_timeout)
    compute.admit()
    async with compute.memory.reservation() as memory:
        wait = settings.memory_wait_s
        body = await read_json_body(
            request, headers, settings.max_body_bytes, settings.body_idle_timeout_s, memory, wait
        )
        # Small payloads are decoded and encoded inline; large ones in a thread, so the loop stays responsive.
        large = len(body) > settings.inline_decode_bytes
        decoded = await asyncio.to_thread(decode, body, options) if large else decode(body, options)
        del body
        served = await compute.run(decoded.job, timeout, request.is_disconnected, memory)
        result = served.result
        payload = await asyncio.to_thread(encode, decoded, result) if large else encode(decoded, result)
    return EncodedJSON(payload, server_timing(served))


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
async def activate(request: Request) -> EncodedJSON:
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
async def loss(request: Request) -> EncodedJSON:
    return await _serve(request, decode_loss, encode_loss)
