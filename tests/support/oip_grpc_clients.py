"""The service's protocol messages beside a real client's own: ``python -m tests.support.oip_grpc_clients
triton`` (``tritonclient.grpc``) or ``... kserve`` (KServe's gRPC client). Each runs in a process of
its own: the two clients register the same protobuf symbols in the default descriptor pool and
cannot be imported together (kserve/kserve#3099); the service's messages, in a pool of their own,
go beside either. Exits non-zero on the first difference.

``... triton-service ADDRESS KEY`` and ``... kserve-service ADDRESS KEY`` run each client, unchanged,
against the real service at ``ADDRESS`` (its gRPC face, with the API key ``KEY``): readiness,
metadata, inference in every form the client offers with its values against torch, and the
service's errors as the client reports them.

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
from collections.abc import Awaitable, Callable, Iterator
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


# ----------------------------------------------------------------------------- against the real service


def torch_sample(dtype: Any) -> Any:
    """A 2x4 tensor with the edge values (signed zeros, infinities, NaN, a subnormal) in ``dtype``."""
    import torch

    values = [[-1.5, 0.25, 3.0, -0.0], [float("inf"), float("-inf"), float("nan"), 1e-40]]
    return torch.tensor(values, dtype=torch.float64).to(dtype)


def relu_with_grad(x: Any, slope: float = 0.0) -> tuple[Any, Any]:
    import torch
    import torch.nn.functional as F

    leaf = x.clone().requires_grad_(True)
    value = F.leaky_relu(leaf, slope) if slope else torch.relu(leaf)
    (grad,) = torch.autograd.grad(value, leaf, torch.ones_like(value))
    return value.detach(), grad


def same(received: np.ndarray, expected: Any) -> None:
    """As ``tests/support/reference.assert_same``: NaN where torch has NaN, every other element
    with torch's bits (so ``0.0`` and ``-0.0`` differ)."""
    import torch

    assert received.shape == tuple(expected.shape), (received.shape, expected.shape)
    nan = torch.isnan(expected).numpy()
    assert np.array_equal(np.isnan(received.astype(np.float64)), nan), (received, expected)
    bits = {2: (np.int16, torch.int16), 4: (np.int32, torch.int32), 8: (np.int64, torch.int64)}[received.itemsize]
    got, wanted = received.view(bits[0]), expected.view(bits[1]).numpy()
    assert np.array_equal(got[~nan], wanted[~nan]), (received, expected)


def triton_numpy(tensor: Any) -> np.ndarray:
    import ml_dtypes
    import torch

    if tensor.dtype == torch.bfloat16:
        array: np.ndarray = tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return array
    return tensor.numpy()  # type: ignore[no-any-return]


def run_triton_service(address: str, key: str) -> None:
    import torch
    import tritonclient.grpc as triton

    headers = {"authorization": f"Bearer {key}"}
    client = triton.InferenceServerClient(address)
    assert client.is_server_live(headers=headers)
    assert client.is_server_ready(headers=headers)
    assert client.is_model_ready("relu", headers=headers)
    assert client.get_server_metadata(headers=headers).name == "torch functions service"
    metadata = client.get_model_metadata("mse_loss", headers=headers)
    assert [tensor.name for tensor in metadata.inputs] == ["input", "target", "weight", "grad_output"]
    assert [tensor.name for tensor in metadata.outputs] == ["loss", "grad_input", "grad_target", "grad_weight"]
    assert metadata.versions == ["1"]

    datatypes = {torch.float32: "FP32", torch.float64: "FP64", torch.float16: "FP16", torch.bfloat16: "BF16"}
    for dtype, datatype in datatypes.items():
        x = torch_sample(dtype)
        tensor = triton.InferInput("input", list(x.shape), datatype)
        tensor.set_data_from_numpy(triton_numpy(x))
        outputs = [triton.InferRequestedOutput("output"), triton.InferRequestedOutput("grad_input")]
        result = client.infer(
            "relu", [tensor], outputs=outputs, parameters={"grad": True}, request_id="t-1", headers=headers
        )
        value, grad = relu_with_grad(x)
        assert result.get_response().id == "t-1"
        same(result.as_numpy("output"), value)
        same(result.as_numpy("grad_input"), grad)

    # a float parameter (double_param), Triton's priority and timeout (µs), the call's deadline
    x = torch_sample(torch.float32)
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x.numpy())
    result = client.infer(
        "leaky_relu",
        [tensor],
        parameters={"negative_slope": 0.125},
        priority=1,
        timeout=30_000_000,
        client_timeout=30,
        headers=headers,
    )
    same(result.as_numpy("output"), relu_with_grad(x, 0.125)[0])

    # async_infer, and many calls in flight at once
    done: list[Any] = []
    finished = threading.Event()

    def callback(result: Any, error: Any) -> None:
        done.append(error if error is not None else result)
        if len(done) == 16:
            finished.set()

    for _ in range(16):
        client.async_infer("relu", [tensor], callback, headers=headers)
    assert finished.wait(60)
    for result in done:
        assert not isinstance(result, Exception), result
        same(result.as_numpy("output"), relu_with_grad(x)[0])

    # errors as the client reports them
    assert _triton_refusal(lambda: client.infer("relux", [tensor], headers=headers)) == "StatusCode.NOT_FOUND"
    assert _triton_refusal(lambda: client.infer("relu", [tensor])) == "StatusCode.UNAUTHENTICATED"
    assert _triton_refusal(lambda: client.is_server_ready(headers={"authorization": "Bearer no"})) == (
        "StatusCode.UNAUTHENTICATED"
    )
    loss_input = triton.InferInput("input", [2], "FP32")
    loss_input.set_data_from_numpy(np.array([1.0, 2.0], dtype=np.float32))
    assert _triton_refusal(lambda: client.infer("mse_loss", [loss_input], headers=headers)) == (
        "StatusCode.INVALID_ARGUMENT"
    )
    assert _triton_refusal(lambda: client.get_model_config("relu", headers=headers)) == "StatusCode.UNIMPLEMENTED"
    client.close()
    asyncio.run(_triton_aio(address, headers))


async def _triton_aio(address: str, headers: dict[str, str]) -> None:
    import torch
    import tritonclient.grpc.aio as triton_aio
    from tritonclient.grpc import InferInput

    async with triton_aio.InferenceServerClient(address) as client:
        assert await client.is_server_ready(headers=headers)
        x = torch_sample(torch.float32)
        tensor = InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x.numpy())
        results = await asyncio.gather(*(client.infer("relu", [tensor], headers=headers) for _ in range(8)))
        for result in results:
            same(result.as_numpy("output"), relu_with_grad(x)[0])


def run_kserve_service(address: str, key: str) -> None:
    asyncio.run(_kserve_service(address, key))


async def _kserve_service(address: str, key: str) -> None:
    import torch
    from kserve import InferenceGRPCClient
    from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

    headers = (("authorization", f"Bearer {key}"),)
    async with InferenceGRPCClient(address) as client:
        assert await client.is_server_live(headers=headers)
        assert await client.is_server_ready(headers=headers)
        assert await client.is_model_ready("relu", headers=headers)
        for dtype, datatype in ((torch.float32, "FP32"), (torch.float64, "FP64"), (torch.float16, "FP16")):
            x = torch_sample(dtype)
            value, grad = relu_with_grad(x)
            for binary in (True, False) if datatype != "FP16" else (True,):  # FP16: raw only
                tensor = InferInput("input", list(x.shape), datatype)
                tensor.set_data_from_numpy(x.numpy(), binary_data=binary)
                request = InferRequest(
                    model_name="relu",
                    infer_inputs=[tensor],
                    request_id="k-1",
                    parameters={"grad": True},
                    request_outputs=[RequestedOutput("grad_input"), RequestedOutput("output")],
                )
                response = await client.infer(request, headers=headers)
                assert response.id == "k-1"
                by_name = {output.name: output.as_numpy() for output in response.outputs}
                assert list(by_name) == ["grad_input", "output"]
                same(by_name["output"], value)
                same(by_name["grad_input"], grad)
        # a loss with an integer and a string parameter (KServe's client sends no floats)
        logits, target = torch.tensor([[1.0, -2.0, 0.5], [0.1, 0.2, 0.3]]), torch.tensor([2, 0])
        inputs = [InferInput("input", [2, 3], "FP32"), InferInput("target", [2], "INT64")]
        inputs[0].set_data_from_numpy(logits.numpy(), binary_data=False)
        inputs[1].set_data_from_numpy(target.numpy(), binary_data=False)
        request = InferRequest(
            model_name="cross_entropy", infer_inputs=inputs, parameters={"reduction": "none", "ignore_index": 0}
        )
        (loss,) = (await client.infer(request, headers=headers)).outputs
        expected = torch.nn.functional.cross_entropy(logits, target, reduction="none", ignore_index=0)
        same(loss.as_numpy(), expected)
        unknown = InferRequest(model_name="relux", infer_inputs=inputs)
        assert "NOT_FOUND" in await _kserve_refusal(client.infer(unknown, headers=headers))
        assert "UNAUTHENTICATED" in await _kserve_refusal(client.infer(request))
        assert "NOT_FOUND" in await _kserve_refusal(client.is_model_ready("relux", headers=headers))


async def _kserve_refusal(call: Awaitable[object]) -> str:
    """What KServe's client raises for a call that must fail (gRPC's error, passed on)."""
    try:
        await call
    except Exception as error:
        return str(error)
    raise AssertionError("the call was answered")


if __name__ == "__main__":
    runs: dict[str, Callable[..., None]] = {
        "triton": run_triton,
        "kserve": run_kserve,
        "triton-service": run_triton_service,
        "kserve-service": run_kserve_service,
    }
    runs[sys.argv[1]](*sys.argv[2:])
    print("ok")
