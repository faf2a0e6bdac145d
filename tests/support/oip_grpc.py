"""Test helpers for the Open Inference Protocol over gRPC: the service served in this process on
real sockets (uvicorn and gRPC on one loop in a thread, so a test can still gate the engine), a
client of the protocol's six methods over the service's own messages, and a REST request turned
into a ``ModelInferRequest``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import grpc
import numpy as np
import torch
from fastapi import FastAPI
from grpc_health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from app.core.config import Settings
from app.main import create_app
from app.protocols.oip.grpc.messages import (
    InferParameter,
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
from tests.support.inprocess_server import serving
from tests.support.oip_wire import from_raw, raw_bytes
from tests.support.server_process import free_port

if TYPE_CHECKING:
    from app.telemetry.tracing import Tracing

SERVICE = "/inference.GRPCInferenceService/"
HEALTH = "/grpc.health.v1.Health/"
UNLIMITED = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
FIELD = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT64": "int64_contents", "INT32": "int_contents"}
Metadata = tuple[tuple[str, str | bytes], ...]


class Served(NamedTuple):
    url: str
    """The HTTP face's base URL."""
    address: str
    """The gRPC face's ``host:port``."""
    app: FastAPI


@contextlib.contextmanager
def grpc_serving(settings: Settings | None = None, tracing: Tracing | None = None, **changes: Any) -> Iterator[Served]:
    """The app with ``settings`` (and ``changes``) on real sockets, gRPC on a port of its own;
    ``tracing``: its tracing, when ``settings.tracing`` is on."""
    port = free_port()
    settings = (settings or Settings()).model_copy(update={**changes, "grpc_port": port})
    app = create_app(settings, tracing)
    with serving(app) as url:
        yield Served(url, f"127.0.0.1:{port}", app)


class Client:
    """The protocol's methods over a channel, with the service's own messages."""

    def __init__(self, address: str, options: Sequence[tuple[str, Any]] = UNLIMITED) -> None:
        self.channel = grpc.insecure_channel(address, options=list(options))

        def method(name: str, request: Any, response: Any) -> grpc.UnaryUnaryMultiCallable[Any, Any]:
            return self.channel.unary_unary(
                SERVICE + name, request_serializer=request.SerializeToString, response_deserializer=response.FromString
            )

        self.infer_call = method("ModelInfer", ModelInferRequest, ModelInferResponse)
        self.live_call = method("ServerLive", ServerLiveRequest, ServerLiveResponse)
        self.ready_call = method("ServerReady", ServerReadyRequest, ServerReadyResponse)
        self.model_ready_call = method("ModelReady", ModelReadyRequest, ModelReadyResponse)
        self.server_metadata_call = method("ServerMetadata", ServerMetadataRequest, ServerMetadataResponse)
        self.model_metadata_call = method("ModelMetadata", ModelMetadataRequest, ModelMetadataResponse)
        self.health_check: grpc.UnaryUnaryMultiCallable[HealthCheckRequest, HealthCheckResponse] = (
            self.channel.unary_unary(
                HEALTH + "Check",
                request_serializer=HealthCheckRequest.SerializeToString,
                response_deserializer=HealthCheckResponse.FromString,
            )
        )
        self.health_watch: grpc.UnaryStreamMultiCallable[HealthCheckRequest, HealthCheckResponse] = (
            self.channel.unary_stream(
                HEALTH + "Watch",
                request_serializer=HealthCheckRequest.SerializeToString,
                response_deserializer=HealthCheckResponse.FromString,
            )
        )

    def infer(self, request: ModelInferRequest, metadata: Metadata = (), timeout: float = 60) -> ModelInferResponse:
        response: ModelInferResponse = self.infer_call(request, metadata=metadata, timeout=timeout)
        return response

    def refusal(self, request: ModelInferRequest, metadata: Metadata = (), timeout: float = 60) -> grpc.RpcError:
        """The error of a call that must fail."""
        try:
            self.infer_call(request, metadata=metadata, timeout=timeout)
        except grpc.RpcError as error:
            return error
        raise AssertionError("the call was answered")

    def close(self) -> None:
        self.channel.close()


def parameter(value: bool | int | float | str) -> InferParameter:
    if isinstance(value, bool):
        return InferParameter(bool_param=value)
    if isinstance(value, int):
        return InferParameter(int64_param=value)
    if isinstance(value, float):
        return InferParameter(double_param=value)
    return InferParameter(string_param=value)


def infer_request(
    model: str,
    inputs: Mapping[str, torch.Tensor],
    parameters: Mapping[str, bool | int | float | str] | None = None,
    raw: bool = True,
    outputs: Sequence[str] | None = None,
    request_id: str = "",
) -> ModelInferRequest:
    """A request of torch tensors: raw (``raw_input_contents``) or typed (FP32, FP64, INT64 only)."""
    request = ModelInferRequest(model_name=model, id=request_id)
    for name, value in (parameters or {}).items():
        request.parameters[name].CopyFrom(parameter(value))
    for name, tensor in inputs.items():
        datatype = _datatype(tensor)
        entry = request.inputs.add(name=name, datatype=datatype, shape=list(tensor.shape))
        if raw:
            request.raw_input_contents.append(raw_bytes(tensor))
        else:
            getattr(entry.contents, FIELD[datatype]).extend(tensor.reshape(-1).tolist())
    for name in outputs or ():
        request.outputs.add(name=name)
    return request


def _datatype(tensor: torch.Tensor) -> str:
    return {
        torch.float16: "FP16",
        torch.float32: "FP32",
        torch.float64: "FP64",
        torch.bfloat16: "BF16",
        torch.int64: "INT64",
        torch.int32: "INT32",
    }[tensor.dtype]


def from_rest(model: str, body: Mapping[str, Any], raw: bool) -> ModelInferRequest:
    """A REST JSON inference request as the same ``ModelInferRequest`` (JSON data, FP32/FP64/INT64)."""
    request = ModelInferRequest(model_name=model)
    for name, value in (body.get("parameters") or {}).items():
        request.parameters[name].CopyFrom(parameter(value))
    for entry in body["inputs"]:
        tensor = request.inputs.add(name=entry["name"], datatype=entry["datatype"], shape=entry["shape"])
        dtype = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64}[entry["datatype"]]
        values = np.asarray(entry["data"], dtype=dtype)
        if raw:
            request.raw_input_contents.append(values.astype(values.dtype.newbyteorder("<")).tobytes())
        else:
            getattr(tensor.contents, FIELD[entry["datatype"]]).extend(values.tolist())
    return request


def outputs_of(response: ModelInferResponse) -> dict[str, torch.Tensor]:
    """Each output as a torch tensor of its datatype, from raw or typed contents."""
    tensors: dict[str, torch.Tensor] = {}
    for index, output in enumerate(response.outputs):
        shape = list(output.shape)
        if response.raw_output_contents:
            tensors[output.name] = from_raw(response.raw_output_contents[index], output.datatype, shape)
        else:
            dtype = {"FP32": np.float32, "FP64": np.float64}[output.datatype]
            values = np.array(getattr(output.contents, FIELD[output.datatype]), dtype=dtype)
            tensors[output.name] = torch.from_numpy(values.reshape(shape))
    return tensors


def status_of(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """A failed call's code, message and trailing metadata."""
    call: Any = error
    trailing: dict[str, str] = dict(call.trailing_metadata() or ())
    return call.code(), call.details() or "", trailing
