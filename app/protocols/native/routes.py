"""POST /activate and POST /loss: the service's own JSON protocol on the one road (``serve``);
this module holds only its codec and its routes' declarations."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request, Response

from app.api.body import Body, read_json_body
from app.api.headers import ComputeHeaders
from app.api.hot_routes import RequestHandlerRoute
from app.api.openapi import request_body, timeout_header
from app.api.responses import COMPUTE_ERRORS, EncodedJSON
from app.api.serving import Codec, Subject, serve
from app.compute.catalogue import CATALOGUE
from app.compute.jobs import Result
from app.compute.service import reply_bytes
from app.protocols.decoding import DecodeOptions
from app.protocols.native.codec import Decoded, decode_activation, decode_loss, encode_activation, encode_loss
from app.protocols.native.models import ActivateRequest, ActivateResponse, LossRequest, LossResponse

router = APIRouter(tags=["compute"], route_class=RequestHandlerRoute)


def _codec(
    decode: Callable[[bytes, DecodeOptions], Decoded], encode: Callable[[Decoded, Result], bytes]
) -> Codec[Decoded, bytes]:
    def decode_body(body: Body, headers: ComputeHeaders, subject: Subject, options: DecodeOptions) -> Decoded:
        return decode(body if isinstance(body, bytes) else bytes(body), options)

    return Codec(
        read=read_json_body,
        parsed_bytes=lambda body, headers: len(body),
        decode=decode_body,
        reply_bytes=lambda decoded: reply_bytes(decoded.job),
        encode=encode,
        respond=EncodedJSON,
    )


ACTIVATE = _codec(decode_activation, encode_activation)
LOSS = _codec(decode_loss, encode_loss)


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
    return await serve(request, ACTIVATE)


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
    return await serve(request, LOSS)
