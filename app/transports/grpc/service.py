"""The protocol's gRPC service, ``inference.GRPCInferenceService``: its six methods, the messages
each takes and returns, and the handler through which ``grpc.aio`` serves an implementation.

Serve one with ``server.add_generic_rpc_handlers((rpc_handler(servicer),))``; a method the protocol
does not define (Triton's ``ModelConfig``, ``ModelStreamInfer``...) is answered UNIMPLEMENTED by gRPC.
The service itself (``servicer.py``) is served with ``serialized_infer_handler``: its ``ModelInfer``
takes the request's bytes as gRPC received them, and returns the reply's, so that decoding and
encoding happen on the road (in a thread when large), not in gRPC's handler on the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Protocol

import grpc
from google.protobuf.message import Message

from app.protocols.oip.grpc.messages import (
    ModelInferRequest,
    ModelInferResponse,
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

SERVICE_NAME = "inference.GRPCInferenceService"


class InferenceServicer(Protocol):
    """What serves the protocol: one coroutine per method."""

    async def server_live(
        self, request: ServerLiveRequest, context: grpc.aio.ServicerContext[ServerLiveRequest, ServerLiveResponse]
    ) -> ServerLiveResponse: ...

    async def server_ready(
        self, request: ServerReadyRequest, context: grpc.aio.ServicerContext[ServerReadyRequest, ServerReadyResponse]
    ) -> ServerReadyResponse: ...

    async def model_ready(
        self, request: ModelReadyRequest, context: grpc.aio.ServicerContext[ModelReadyRequest, ModelReadyResponse]
    ) -> ModelReadyResponse: ...

    async def server_metadata(
        self,
        request: ServerMetadataRequest,
        context: grpc.aio.ServicerContext[ServerMetadataRequest, ServerMetadataResponse],
    ) -> ServerMetadataResponse: ...

    async def model_metadata(
        self,
        request: ModelMetadataRequest,
        context: grpc.aio.ServicerContext[ModelMetadataRequest, ModelMetadataResponse],
    ) -> ModelMetadataResponse: ...

    async def model_infer(
        self, request: ModelInferRequest, context: grpc.aio.ServicerContext[ModelInferRequest, ModelInferResponse]
    ) -> ModelInferResponse: ...


class SerializedInferenceServicer(Protocol):
    """``InferenceServicer`` whose ``model_infer`` takes and returns serialized messages."""

    async def server_live(
        self, request: ServerLiveRequest, context: grpc.aio.ServicerContext[ServerLiveRequest, ServerLiveResponse]
    ) -> ServerLiveResponse: ...

    async def server_ready(
        self, request: ServerReadyRequest, context: grpc.aio.ServicerContext[ServerReadyRequest, ServerReadyResponse]
    ) -> ServerReadyResponse: ...

    async def model_ready(
        self, request: ModelReadyRequest, context: grpc.aio.ServicerContext[ModelReadyRequest, ModelReadyResponse]
    ) -> ModelReadyResponse: ...

    async def server_metadata(
        self,
        request: ServerMetadataRequest,
        context: grpc.aio.ServicerContext[ServerMetadataRequest, ServerMetadataResponse],
    ) -> ServerMetadataResponse: ...

    async def model_metadata(
        self,
        request: ModelMetadataRequest,
        context: grpc.aio.ServicerContext[ModelMetadataRequest, ModelMetadataResponse],
    ) -> ModelMetadataResponse: ...

    async def model_infer(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes: ...


class Method(NamedTuple):
    name: str
    """As the protocol names it: the path is ``/inference.GRPCInferenceService/<name>``."""
    attribute: str
    """The ``InferenceServicer`` coroutine that serves it."""
    request: type[Message]
    response: type[Message]


METHODS = (
    Method("ServerLive", "server_live", ServerLiveRequest, ServerLiveResponse),
    Method("ServerReady", "server_ready", ServerReadyRequest, ServerReadyResponse),
    Method("ModelReady", "model_ready", ModelReadyRequest, ModelReadyResponse),
    Method("ServerMetadata", "server_metadata", ServerMetadataRequest, ServerMetadataResponse),
    Method("ModelMetadata", "model_metadata", ModelMetadataRequest, ModelMetadataResponse),
    Method("ModelInfer", "model_infer", ModelInferRequest, ModelInferResponse),
)


def method_path(name: str) -> str:
    return f"/{SERVICE_NAME}/{name}"


MODEL_INFER = "ModelInfer"


Coroutine = Callable[[Any, Any], Awaitable[Any]]
Wrap = Callable[[Method, Coroutine], Coroutine]
"""What every method's coroutine is wrapped in (the transport's per-call work)."""


def _unwrapped(method: Method, coroutine: Coroutine) -> Coroutine:
    return coroutine


def rpc_handler(servicer: InferenceServicer) -> grpc.GenericRpcHandler:
    """The service's methods, each deserializing its request and serializing its response with
    the protocol's messages (those of the private descriptor pool)."""
    return _handler(servicer, (), _unwrapped)


def serialized_infer_handler(servicer: SerializedInferenceServicer, wrap: Wrap = _unwrapped) -> grpc.GenericRpcHandler:
    """The service's methods, ``ModelInfer``'s request and response left serialized, each
    coroutine wrapped in ``wrap``."""
    return _handler(servicer, (MODEL_INFER,), wrap)


def _handler(servicer: object, serialized: tuple[str, ...], wrap: Wrap) -> grpc.GenericRpcHandler:
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        method.name: grpc.unary_unary_rpc_method_handler(
            wrap(method, getattr(servicer, method.attribute)),
            request_deserializer=None if method.name in serialized else method.request.FromString,
            response_serializer=None if method.name in serialized else method.response.SerializeToString,
        )
        for method in METHODS
    }
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)
