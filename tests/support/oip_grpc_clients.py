"""The service's protocol messages beside a real client's own: ``python -m tests.support.oip_grpc_clients
triton`` (``tritonclient.grpc``) or ``... kserve`` (KServe's gRPC client). Each runs in a process of
its own: the two clients register the same protobuf symbols in the default descriptor pool and
cannot be imported together (kserve/kserve#3099); the service's messages, in a pool of their own,
go beside either. Exits non-zero on the first difference.

For each client: its messages and ours have the same fields (number, type, cardinality, oneof)
wherever both define one, and the same six methods; a request its API builds decodes to its
arrays bit for bit; a response we encode reads back through its API bit for bit; and over a real
connection, the client's own calls reach a ``grpc.aio`` server of ``service.rpc_handler`` (with a
servicer made here: relu in numpy through the codec) and read its answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np

from app.core.limits import TensorLimits
from app.protocols.oip.grpc import messages
from app.protocols.oip.grpc.infer import decode_infer_request, encode_infer_response
from app.protocols.oip.inference import InferRequest, OutputTensor
from app.transports.grpc.service import rpc_handler

METHODS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")
ONLY_OURS = {"inference.ModelMetadataResponse": {6}}
"""Fields the pinned protocol has and the clients' copies lack (``properties``: they skip it)."""
LIMITS = TensorLimits(max_elements=1_000_000, max_rank=8)


def _descriptors(descriptor: Any) -> Iterator[Any]:
    yield descriptor
    for nested in descriptor.nested_types:
        yield from _descriptors(nested)


def _field_key(field: Any) -> tuple[Any, ...]:
    message = field.message_type.full_name if field.message_type else None
    oneof = field.containing_oneof.name if field.containing_oneof else None
    return field.name, field.type, field.is_repeated, message, oneof


def check_wire_compatible(theirs: Any, missing_in_theirs: dict[str, set[int]]) -> None:
    """Every message of ours against the client's same-named one, field by field."""
    for top in messages.DESCRIPTOR.message_types_by_name.values():
        for ours in _descriptors(top):
            if ours.GetOptions().map_entry and ours.containing_type.full_name in missing_in_theirs:
                continue
            other = theirs.pool.FindMessageTypeByName(ours.full_name)
            our_fields = {field.number: _field_key(field) for field in ours.fields}
            their_fields = {field.number: _field_key(field) for field in other.fields}
            absent = missing_in_theirs.get(ours.full_name, set())
            for number, key in their_fields.items():
                assert our_fields.get(number) == key, (
                    f"{ours.full_name} field {number}: {key} vs {our_fields.get(number)}"
                )
            assert set(our_fields) - set(their_fields) == absent, f"{ours.full_name}: fields only in ours"
    our_service = messages.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    their_service = theirs.services_by_name["GRPCInferenceService"]
    assert [method.name for method in our_service.methods] == list(METHODS)
    for method in our_service.methods:
        other = their_service.methods_by_name[method.name]
        assert method.full_name == other.full_name
        assert method.input_type.full_name == other.input_type.full_name
        assert method.output_type.full_name == other.output_type.full_name


def sample_arrays() -> dict[str, np.ndarray]:
    """One input per datatype both clients send from numpy, with edge values."""
    rng = np.random.default_rng(7)
    floats = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -3.5, 65504.0], dtype=np.float64)
    return {
        "fp32": floats.astype(np.float32).reshape(2, 4),
        "fp64": np.concatenate([floats, rng.standard_normal(4)]).reshape(3, 4),
        "fp16": floats.astype(np.float16).reshape(4, 2),
        "int8": np.array([-128, 0, 127], dtype=np.int8),
        "int32": np.array([[-(2**31), 2**31 - 1]], dtype=np.int32),
        "int64": np.array([-(2**63), 2**63 - 1, 5], dtype=np.int64),
        "uint8": np.array([0, 255], dtype=np.uint8),
        "uint32": np.array([0, 2**32 - 1], dtype=np.uint32),
    }


def check_request(request_bytes: bytes, arrays: dict[str, np.ndarray], raw: bool) -> InferRequest:
    decoded = decode_infer_request(messages.ModelInferRequest.FromString(request_bytes), LIMITS, 10_000_000)
    assert decoded.raw is raw
    assert [tensor.name for tensor in decoded.inputs] == list(arrays)
    for tensor in decoded.inputs:
        sent = arrays[tensor.name]
        assert tensor.shape == list(sent.shape)
        expected = sent.astype(np.int64) if sent.dtype.kind == "u" and sent.itemsize > 1 else sent
        assert tensor.array.dtype == expected.dtype, (tensor.name, tensor.array.dtype)
        assert tensor.array.tobytes() == expected.tobytes(), tensor.name
    return decoded


def sample_outputs() -> list[OutputTensor]:
    values = np.array([[0.0, -0.0, np.inf, np.nan], [1.5, -2.25, 1e-40, 3.0]])
    return [
        OutputTensor("output", "FP32", values.astype(np.float32)),
        OutputTensor("grad_input", "FP64", values),
        OutputTensor("loss", "FP32", np.array(0.25, dtype=np.float32)),
    ]


def check_response(read: Callable[[bytes], dict[str, np.ndarray]], raw: bool) -> None:
    outputs = sample_outputs()
    response = encode_infer_response("relu", "1", "call-1", outputs, {}, raw)
    assert (len(response.raw_output_contents) > 0) is raw
    received = read(response.SerializeToString())
    for output in outputs:
        got = received[output.name]
        assert got.shape == output.array.shape, (output.name, got.shape)
        assert got.tobytes() == output.array.tobytes(), output.name


Context = grpc.aio.ServicerContext[Any, Any]


class ReluServicer:
    """The protocol's six methods for one model, ``relu``, computed in numpy through the codec."""

    async def server_live(self, request: messages.ServerLiveRequest, context: Context) -> messages.ServerLiveResponse:
        return messages.ServerLiveResponse(live=True)

    async def server_ready(
        self, request: messages.ServerReadyRequest, context: Context
    ) -> messages.ServerReadyResponse:
        return messages.ServerReadyResponse(ready=True)

    async def model_ready(self, request: messages.ModelReadyRequest, context: Context) -> messages.ModelReadyResponse:
        return messages.ModelReadyResponse(ready=request.name == "relu")

    async def server_metadata(
        self, request: messages.ServerMetadataRequest, context: Context
    ) -> messages.ServerMetadataResponse:
        return messages.ServerMetadataResponse(name="checks", version="1", extensions=["binary_tensor_data"])

    async def model_metadata(
        self, request: messages.ModelMetadataRequest, context: Context
    ) -> messages.ModelMetadataResponse:
        if request.name != "relu":
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no model {request.name!r}")
        tensor = messages.ModelMetadataResponse.TensorMetadata
        return messages.ModelMetadataResponse(
            name="relu",
            versions=["1"],
            platform="pytorch",
            inputs=[tensor(name="input", datatype="FP32", shape=[-1])],
            outputs=[tensor(name="output", datatype="FP32", shape=[-1])],
        )

    async def model_infer(self, request: messages.ModelInferRequest, context: Context) -> messages.ModelInferResponse:
        if request.model_name != "relu":
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no model {request.model_name!r}")
        decoded = decode_infer_request(request, LIMITS, 10_000_000)
        (tensor,) = decoded.inputs
        output = OutputTensor("output", tensor.datatype, np.maximum(tensor.array, tensor.array.dtype.type(0)))
        return encode_infer_response("relu", "1", decoded.id, [output], {}, decoded.raw)


@contextlib.contextmanager
def serving() -> Iterator[str]:
    """A grpc.aio server of ``ReluServicer`` on a loop in a thread of its own: its address."""
    loop = asyncio.new_event_loop()

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((rpc_handler(ReluServicer()),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def relu_of(array: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.maximum(array, array.dtype.type(0))
    return result


def run_triton() -> None:
    import tritonclient.grpc as triton
    from tritonclient.grpc import service_pb2
    from tritonclient.grpc._utils import _get_inference_request

    check_wire_compatible(service_pb2.DESCRIPTOR, ONLY_OURS)
    arrays = sample_arrays()
    inputs = []
    for name, array in arrays.items():
        tensor = triton.InferInput(name, list(array.shape), triton.np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    outputs = [triton.InferRequestedOutput("output")]
    request = _get_inference_request(
        model_name="relu",
        inputs=inputs,
        model_version="1",
        request_id="call-1",
        outputs=outputs,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        parameters={"grad": True, "negative_slope": 0.25, "reduction": "sum", "big": 2**40},
    )
    decoded = check_request(request.SerializeToString(), arrays, raw=True)
    assert decoded.parameters == {"big": 2**40, "grad": True, "negative_slope": 0.25, "reduction": "sum"}
    assert decoded.id == "call-1"
    assert decoded.model_name == "relu"
    assert decoded.model_version == "1"
    assert decoded.outputs is not None
    assert [output.name for output in decoded.outputs] == ["output"]

    def read(response: bytes) -> dict[str, np.ndarray]:
        result = triton.InferResult(service_pb2.ModelInferResponse.FromString(response))
        return {output.name: result.as_numpy(output.name) for output in sample_outputs()}

    check_response(read, raw=True)  # tritonclient reads raw_output_contents only
    with serving() as address:
        check_triton_live(address)


def check_triton_live(address: str) -> None:
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(address)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("relu")
    assert not client.is_model_ready("gelu")
    assert client.get_server_metadata().name == "checks"
    assert [tensor.name for tensor in client.get_model_metadata("relu").inputs] == ["input"]
    for array in (sample_arrays()["fp32"], sample_arrays()["fp16"], sample_arrays()["fp64"]):
        tensor = triton.InferInput("input", list(array.shape), triton.np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        result = client.infer("relu", [tensor], request_id="r1", outputs=[triton.InferRequestedOutput("output")])
        assert result.as_numpy("output").tobytes() == relu_of(array).tobytes()
        assert result.get_response().id == "r1"
    assert _triton_refusal(lambda: client.get_model_metadata("gelu")) == "StatusCode.NOT_FOUND"
    assert _triton_refusal(lambda: client.infer("gelu", [tensor])) == "StatusCode.NOT_FOUND"
    assert _triton_refusal(lambda: client.get_model_config("relu")) == "StatusCode.UNIMPLEMENTED"  # not the protocol's
    client.close()


def _triton_refusal(call: Callable[[], object]) -> str:
    """The gRPC status tritonclient reports for a call that must fail."""
    from tritonclient.utils import InferenceServerException

    try:
        call()
    except InferenceServerException as error:
        return str(error.status())
    raise AssertionError("the call was answered")


def run_kserve() -> None:
    from kserve import InferenceGRPCClient  # noqa: F401  (the client the tests use imports beside ours)
    from kserve.protocol.grpc import grpc_predict_v2_pb2
    from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse, RequestedOutput

    check_wire_compatible(grpc_predict_v2_pb2.DESCRIPTOR, {**ONLY_OURS, "inference.InferParameter": {4, 5}})
    arrays = sample_arrays()
    for binary in (True, False):
        typed = arrays if binary else {name: a for name, a in arrays.items() if name != "fp16"}  # FP16: raw only
        inputs = []
        for name, array in typed.items():
            tensor = InferInput(name, list(array.shape), _kserve_datatype(array))
            tensor.set_data_from_numpy(array, binary_data=binary)
            inputs.append(tensor)
        request = InferRequest(
            model_name="relu",
            infer_inputs=inputs,
            request_id="call-2",
            parameters={"grad": True, "reduction": "sum"},
            request_outputs=[RequestedOutput("output")],
        )
        decoded = check_request(request.to_grpc().SerializeToString(), typed, raw=binary)
        assert decoded.parameters == {"grad": True, "reduction": "sum"}
        assert decoded.id == "call-2"

    def read(response: bytes) -> dict[str, np.ndarray]:
        result = InferResponse.from_grpc(grpc_predict_v2_pb2.ModelInferResponse.FromString(response))
        return {output.name: output.as_numpy() for output in result.outputs}

    check_response(read, raw=True)
    check_response(read, raw=False)
    with serving() as address:
        asyncio.run(check_kserve_live(address))


async def check_kserve_live(address: str) -> None:
    from kserve import InferenceGRPCClient
    from kserve.protocol.infer_type import InferInput, InferRequest

    async with InferenceGRPCClient(address) as client:
        assert await client.is_server_live()
        assert await client.is_server_ready()
        assert await client.is_model_ready("relu")
        array = sample_arrays()["fp32"]
        for binary in (True, False):
            tensor = InferInput("input", list(array.shape), "FP32")
            tensor.set_data_from_numpy(array, binary_data=binary)
            response = await client.infer(InferRequest(model_name="relu", infer_inputs=[tensor], request_id="k1"))
            (output,) = response.outputs
            assert output.as_numpy().tobytes() == relu_of(array).tobytes(), binary


def _kserve_datatype(array: np.ndarray) -> str:
    from kserve.utils.numpy_codec import from_np_dtype

    datatype: str = from_np_dtype(array.dtype)
    return datatype


if __name__ == "__main__":
    {"triton": run_triton, "kserve": run_kserve}[sys.argv[1]]()
    print("ok")
