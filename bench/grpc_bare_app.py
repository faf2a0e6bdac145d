"""The gRPC floor of small calls: ``python -m bench.grpc_bare_app --port N`` answers every
``ModelInfer`` call with one constant ``ModelInferResponse`` (relu's reply to 256 FP32 in raw form,
all zeros), decoding nothing: no request deserializer, the reply serialized once. What grpc.aio
itself costs per call, for ``bench.grpc_throughput`` to compare the service with."""

from __future__ import annotations

import grpc

from app.protocols.oip.grpc.messages import ModelInferResponse
from bench.grpc_serve import port_argument, serve_model_infer

ELEMENTS = 256


def constant_reply() -> bytes:
    output = ModelInferResponse.InferOutputTensor(name="output", datatype="FP32", shape=[ELEMENTS])
    reply = ModelInferResponse(model_name="relu", model_version="1", outputs=[output])
    reply.raw_output_contents.append(bytes(4 * ELEMENTS))
    return reply.SerializeToString()


def main() -> None:
    port = port_argument(__doc__.split("\n\n")[0])
    reply = constant_reply()

    async def infer(request: bytes, context: object) -> bytes:
        return reply

    serve_model_infer(grpc.unary_unary_rpc_method_handler(infer), port)


if __name__ == "__main__":
    main()
