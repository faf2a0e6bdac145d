"""The gRPC server's bounds from the settings, and a real ``grpc.aio`` server keeping them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import pytest

from app.core.config import Settings
from app.protocols.oip.grpc.messages import ModelInferRequest, ModelInferResponse
from app.transports.grpc.options import INT32_MAX, grpc_server_bounds, largest_reply_bytes

SERVICE = "inference.GRPCInferenceService"


def test_the_defaults_bound_every_resource_a_client_can_hold() -> None:
    settings = Settings()
    bounds = grpc_server_bounds(settings)
    assert dict(bounds.options) == {
        "grpc.max_receive_message_length": settings.max_body_bytes,
        "grpc.max_send_message_length": 2 * settings.max_total_elements * 8 + 1024 * 1024,
        "grpc.max_allowed_incoming_connections": 2048,
        "grpc.max_concurrent_streams": 100,
        "grpc.http.overload_protection": 0,
        "grpc.max_metadata_size": 16384,
        "grpc.absolute_max_metadata_size": 16384,
        "grpc.server_handshake_timeout_ms": 10_000,
        "grpc.http2.min_ping_interval_without_data_ms": 10_000,
        "grpc.http2.max_ping_strikes": 2,
        "grpc.keepalive_permit_without_calls": 0,
        "grpc.max_connection_idle_ms": 300_000,
    }
    assert len(bounds.options) == len(dict(bounds.options))
    assert bounds.maximum_concurrent_rpcs == 1024


def test_each_setting_reaches_its_option() -> None:
    settings = Settings(
        max_body_bytes=5000,
        max_total_elements=10,
        grpc_max_connections=3,
        grpc_max_concurrent_streams=7,
        grpc_max_concurrent_calls=11,
        grpc_max_metadata_bytes=2048,
        head_timeout_s=2.5,
        grpc_min_ping_interval_s=0.25,
        grpc_max_connection_idle_s=60,
        grpc_max_connection_age_s=3600,
        shutdown_grace_s=15,
    )
    bounds = grpc_server_bounds(settings)
    options = dict(bounds.options)
    assert options["grpc.max_receive_message_length"] == 5000
    assert options["grpc.max_send_message_length"] == largest_reply_bytes(settings) == 160 + 1024 * 1024
    assert options["grpc.max_allowed_incoming_connections"] == 3
    assert options["grpc.max_concurrent_streams"] == 7
    assert options["grpc.max_metadata_size"] == options["grpc.absolute_max_metadata_size"] == 2048
    assert options["grpc.server_handshake_timeout_ms"] == 2500
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 250
    assert options["grpc.max_connection_idle_ms"] == 60_000
    assert options["grpc.max_connection_age_ms"] == 3_600_000
    assert options["grpc.max_connection_age_grace_ms"] == 15_000
    assert bounds.maximum_concurrent_rpcs == 11


def test_sizes_past_a_c_int_are_clamped() -> None:
    options = dict(grpc_server_bounds(Settings(max_body_bytes=2**33, max_total_elements=2**31)).options)
    assert options["grpc.max_receive_message_length"] == options["grpc.max_send_message_length"] == INT32_MAX


def test_the_port_is_tritons_and_zero_turns_grpc_off() -> None:
    assert Settings.model_fields["grpc_port"].default == 8001  # (the suite's own environment sets 0)
    assert Settings(grpc_port=0).grpc_port == 0
    with pytest.raises(ValueError, match="grpc_port"):
        Settings(grpc_port=-1)


Handler = Callable[
    [ModelInferRequest, grpc.aio.ServicerContext[ModelInferRequest, ModelInferResponse]], Awaitable[ModelInferResponse]
]


async def _serve(settings: Settings, infer: Handler) -> tuple[grpc.aio.Server, str]:
    bounds = grpc_server_bounds(settings)
    server = grpc.aio.server(options=bounds.options, maximum_concurrent_rpcs=bounds.maximum_concurrent_rpcs)
    method = grpc.unary_unary_rpc_method_handler(
        infer,
        request_deserializer=ModelInferRequest.FromString,
        response_serializer=ModelInferResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"ModelInfer": method}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


def _infer(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable[ModelInferRequest, ModelInferResponse]:
    return channel.unary_unary(
        f"/{SERVICE}/ModelInfer",
        request_serializer=ModelInferRequest.SerializeToString,
        response_deserializer=ModelInferResponse.FromString,
    )


async def _until(condition: Callable[[], bool]) -> None:
    """Polls ``condition`` (a generous bound, never a measured limit: a stuck server fails the test)."""
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server never got there")


async def _answer(request: ModelInferRequest, context: object) -> ModelInferResponse:
    return ModelInferResponse(model_name=request.model_name)


def test_a_message_or_metadata_past_its_limit_is_refused_before_the_handler() -> None:
    async def run() -> list[grpc.StatusCode]:
        settings = Settings(max_body_bytes=2048, grpc_max_metadata_bytes=1024)
        server, target = await _serve(settings, _answer)
        codes = []
        try:
            async with grpc.aio.insecure_channel(target) as channel:
                call = _infer(channel)
                assert (await call(ModelInferRequest(model_name="x" * 2000), timeout=30)).model_name == "x" * 2000
                for request, metadata in (
                    (ModelInferRequest(model_name="x" * 2100), ()),
                    (ModelInferRequest(model_name="x"), (("key", "v" * 1100),)),
                ):
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await call(request, metadata=metadata, timeout=30)
                    codes.append(refused.value.code())
        finally:
            await server.stop(None)
        return codes

    assert asyncio.run(run()) == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2


class HeldCalls:
    """A handler that holds every call until released (an event, no sleeps), noting who arrived."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.arrived: list[str] = []

    async def handle(self, request: ModelInferRequest, context: object) -> ModelInferResponse:
        self.arrived.append(request.model_name)
        await self.release.wait()
        return ModelInferResponse(model_name=request.model_name)


LOCAL_POOL = [("grpc.use_local_subchannel_pool", 1)]
"""A channel option that gives each channel a connection of its own."""


def test_a_call_past_the_process_cap_is_refused_at_once() -> None:
    async def run() -> None:
        held = HeldCalls()
        server, target = await _serve(Settings(grpc_max_concurrent_calls=2), held.handle)
        try:
            async with grpc.aio.insecure_channel(target) as channel:
                call = _infer(channel)
                calls = [asyncio.ensure_future(call(ModelInferRequest(model_name=n), timeout=60)) for n in "ab"]
                await _until(lambda: len(held.arrived) == 2)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call(ModelInferRequest(model_name="c"), timeout=60)
                assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                held.release.set()
                assert [answer.model_name for answer in await asyncio.gather(*calls)] == ["a", "b"]
        finally:
            await server.stop(None)

    asyncio.run(run())


def test_a_connections_calls_past_its_stream_cap_wait_and_a_connection_past_the_cap_is_closed() -> None:
    async def run() -> None:
        held = HeldCalls()
        server, target = await _serve(Settings(grpc_max_concurrent_streams=2, grpc_max_connections=1), held.handle)
        channels = [grpc.aio.insecure_channel(target, options=LOCAL_POOL) for _ in range(2)]
        try:
            first, second = (_infer(channel) for channel in channels)
            calls = [asyncio.ensure_future(first(ModelInferRequest(model_name=n), timeout=60)) for n in "abc"]
            await _until(lambda: len(held.arrived) == 2)
            with pytest.raises(grpc.aio.AioRpcError) as closed:
                await second(ModelInferRequest(model_name="d"), timeout=60)
            assert closed.value.code() == grpc.StatusCode.UNAVAILABLE
            assert len(held.arrived) == 2  # the third call waits for one of the connection's two streams
            held.release.set()
            assert [answer.model_name for answer in await asyncio.gather(*calls)] == ["a", "b", "c"]
        finally:
            for channel in channels:
                await channel.close()
            await server.stop(None)

    asyncio.run(run())


def test_a_client_keeping_to_the_stream_cap_has_none_of_its_calls_refused() -> None:
    async def run() -> list[str]:
        server, target = await _serve(Settings(grpc_max_concurrent_streams=4), _answer)
        try:
            async with grpc.aio.insecure_channel(target) as channel:
                call = _infer(channel)
                names = [str(index) for index in range(200)]
                answers = await asyncio.gather(*(call(ModelInferRequest(model_name=n), timeout=60) for n in names))
                return [answer.model_name for answer in answers]
        finally:
            await server.stop(None)

    assert asyncio.run(run()) == [str(index) for index in range(200)]
