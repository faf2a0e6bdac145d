"""The gRPC transport floor of large tensors: ``python -m bench.grpc_echo_app --port N`` answers a
``ModelInfer`` call with its own raw tensors: each input named as an output (name, datatype, shape)
and its ``raw_input_contents`` sent back as ``raw_output_contents``, with no work. What moving the
bytes through grpc.aio, protobuf and the loopback costs, for ``bench.grpc_throughput`` to compare
the service's large relu with."""

from __future__ import annotations

import grpc

from app.protocols.oip.grpc.messages import ModelInferRequest, ModelInferResponse
from bench.grpc_serve import port_argument, serve_model_infer


def echo(request: ModelInferRequest) -> ModelInferResponse:
    reply = ModelInferResponse(model_name=request.model_name, model_version=request.model_version, id=request.id)
    for tensor in request.inputs:
        reply.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
    reply.raw_output_contents.extend(request.raw_input_contents)
    return reply


def main() -> None:
    port = port_argument(__doc__.split("\n\n")[0])

    async def infer(request: ModelInferRequest, context: object) -> ModelInferResponse:
        return echo(request)

    handler = grpc.unary_unary_rpc_method_handler(
        infer,
        request_deserializer=ModelInferRequest.FromString,
        response_serializer=ModelInferResponse.SerializeToString,
    )
    serve_model_infer(handler, port)


if __name__ == "__main__":
    main()
