"""The protocol's gRPC service over the road and the health model: what ``ComputeEndpoint`` is for
HTTP. ``ModelInfer`` hands the road the message's bytes as gRPC received them (the body, one
piece), the call's deadline as the request's timeout, and returns the reply's bytes; the rest
answers from the health model and the catalogue. Every error is raised as the service's own and
becomes a gRPC status in ``calls.py``."""

from __future__ import annotations

from typing import Any

import grpc

from app.compute.catalogue import Catalogue
from app.protocols.oip.grpc.codec import MODEL_INFER
from app.protocols.oip.grpc.messages import (
    ModelMetadataRequest,
    ModelMetadataResponse,
    ModelReadyRequest,
    ModelReadyResponse,
    ServerLiveRequest,
    ServerLiveResponse,
    ServerMetadataRequest,
    ServerMetadataResponse,
    ServerReadyRequest,
    ServerReadyResponse,
)
from app.protocols.oip.grpc.metadata import model_metadata_response
from app.protocols.oip.metadata import find_model, model_metadata
from app.serving.codec import RequestMeta
from app.serving.health import Health
from app.serving.road import Road

Context = grpc.aio.ServicerContext[Any, Any]
CONTENT_TYPE = "application/grpc"


class WholeMessage:
    """The road's ``BodySource`` over a message gRPC has received whole: one piece."""

    __slots__ = ("_message",)

    def __init__(self, message: bytes) -> None:
        self._message: bytes | None = message

    async def read(self) -> bytes | None:
        message, self._message = self._message, None
        return message


class InferenceService:
    """``inference.GRPCInferenceService`` (``service.SerializedInferenceServicer``)."""

    def __init__(self, road: Road, health: Health, catalogue: Catalogue, name: str, version: str) -> None:
        self.road = road
        self.health = health
        self.catalogue = catalogue
        self.name = name
        self.version = version

    async def server_live(self, request: ServerLiveRequest, context: Context) -> ServerLiveResponse:
        return ServerLiveResponse(live=self.health.liveness().ok)

    async def server_ready(self, request: ServerReadyRequest, context: Context) -> ServerReadyResponse:
        return ServerReadyResponse(ready=self.health.readiness().ok)

    async def model_ready(self, request: ModelReadyRequest, context: Context) -> ModelReadyResponse:
        find_model(self.catalogue, request.name, request.version or None)  # NOT_FOUND when unknown
        return ModelReadyResponse(ready=self.health.readiness().ok)

    async def server_metadata(self, request: ServerMetadataRequest, context: Context) -> ServerMetadataResponse:
        """No extensions: the REST face's (binary tensor data, statistics, model configuration)
        are HTTP's; raw tensors are the gRPC protocol's own."""
        return ServerMetadataResponse(name=self.name, version=self.version)

    async def model_metadata(self, request: ModelMetadataRequest, context: Context) -> ModelMetadataResponse:
        spec = find_model(self.catalogue, request.name, request.version or None)
        return model_metadata_response(model_metadata(spec))

    async def model_infer(self, request: bytes, context: Context) -> bytes:
        meta = RequestMeta(content_type=CONTENT_TYPE, content_length=len(request), timeout=context.time_remaining())
        reply = await self.road.serve(MODEL_INFER, meta, WholeMessage(request))
        (message,) = reply.encoded.parts
        return bytes(message)
