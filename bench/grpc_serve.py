"""What the gRPC floor apps share: serve one ``ModelInfer`` behaviour of the Open Inference
Protocol's service with ``grpc.aio``, under the bounds the service's own gRPC server takes
(``app.transports.grpc.options``, default settings), on ``127.0.0.1:<port>`` until terminated."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import grpc

from app.core.config import Settings
from app.transports.grpc.options import grpc_server_bounds

SERVICE = "inference.GRPCInferenceService"
INFER_PATH = f"/{SERVICE}/ModelInfer"


def port_argument(description: str) -> int:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    port: int = parser.parse_args().port
    return port


async def _serve(handler: grpc.RpcMethodHandler[Any, Any], port: int) -> None:
    bounds = grpc_server_bounds(Settings())
    server = grpc.aio.server(options=bounds.options, maximum_concurrent_rpcs=bounds.maximum_concurrent_rpcs)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"ModelInfer": handler}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def serve_model_infer(handler: grpc.RpcMethodHandler[Any, Any], port: int) -> None:
    asyncio.run(_serve(handler, port))
