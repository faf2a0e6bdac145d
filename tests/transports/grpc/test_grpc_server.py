"""The gRPC server's assembly: the address it binds, a port in use with one worker, the
open-files limit counting its connections, and its start and stop within the app's lifespan."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import grpc
import pytest

from app import serve
from app.protocols.oip.grpc.messages import ServerLiveRequest
from app.transports.grpc.server import listen_address
from tests.support.oip_grpc import Client, grpc_serving
from tests.support.server_process import running_server


def test_the_address_is_https_with_ipv6_in_brackets() -> None:
    assert listen_address("127.0.0.1", 8001) == "127.0.0.1:8001"
    assert listen_address("0.0.0.0", 8001) == "0.0.0.0:8001"
    assert listen_address("::", 8001) == "[::]:8001"
    assert listen_address("[::1]", 8001) == "[::1]:8001"


@pytest.fixture
def taken() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.server
def test_with_one_worker_a_grpc_port_in_use_stops_the_start_up(taken: int) -> None:
    with pytest.raises(RuntimeError) as failed, running_server({"TORCHFN_GRPC_PORT": str(taken)}):
        pass
    assert "server exited with 3" in str(failed.value)
    assert f"Failed to bind to address 127.0.0.1:{taken}" in str(failed.value)


def test_the_lifespan_starts_and_stops_the_grpc_server() -> None:
    with grpc_serving() as served:
        client = Client(served.address)
        assert client.live_call(ServerLiveRequest(), timeout=10).live
        client.close()
    client = Client(served.address)
    with pytest.raises(grpc.RpcError) as refused:
        client.live_call(ServerLiveRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    client.close()


@pytest.mark.parametrize(("grpc_port", "counted"), [("8001", 2048 + 100), ("0", 100)])
def test_the_open_files_limit_counts_the_grpc_connections(
    monkeypatch: pytest.MonkeyPatch, grpc_port: str, counted: int
) -> None:
    asked: list[int] = []

    def fit(connections: int) -> str:
        asked.append(connections)
        return "too few"

    monkeypatch.setenv("TORCHFN_GRPC_PORT", grpc_port)
    monkeypatch.setenv("TORCHFN_MAX_CONNECTIONS", "100")
    monkeypatch.setattr(serve, "fit_open_files_limit", fit)
    assert serve.main() == serve.BAD_SETTINGS
    assert asked == [counted]
