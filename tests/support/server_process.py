"""Start the real server the way the container does: the Dockerfile's CMD with its ENV (its
``python`` is this interpreter, and it listens on free loopback ports: HTTP's, and gRPC's unless
the environment given turns it off with ``TORCHFN_GRPC_PORT=0``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.support.container import container
from tests.support.cpu import tree_cpu_seconds
from tests.support.paths import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    grpc_address: str | None = None
    """``127.0.0.1:PORT`` of its gRPC face (None when off)."""

    def log(self) -> str:
        """What the server has written to stderr so far (its logs)."""
        return self.log_path.read_text(errors="replace")

    def json_lines_about(self, request_id: str, within: float = 10.0) -> list[dict[str, Any]]:
        """The server's JSON log lines about a request, once its access line has been written
        (access lines are written in batches, a moment after the request: ``app.core.logs``)."""
        deadline = time.monotonic() + within
        while True:
            lines = [orjson.loads(line) for line in self.log().splitlines() if line.startswith("{")]
            about = [line for line in lines if line.get("request_id") == request_id]
            if any(line.get("logger") == "torchfn.access" for line in about) or time.monotonic() > deadline:
                return about
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far: its process, all its threads, and its own processes
        (the parse process)."""
        return tree_cpu_seconds(self.process.pid)


def container_command_and_env(
    port: int, env: Mapping[str, str] | None = None, command: Sequence[str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """The image's command (or ``command``, as a runtime's manifest gives it) and environment,
    ``python`` being this interpreter, on a loopback port (and gRPC on another, unless ``env``
    names one: never the image's fixed port, which concurrent test servers would share through
    ``SO_REUSEPORT``)."""
    image = container()
    given = list(command or image.command)
    command = [sys.executable if given[0] == "python" else given[0], *given[1:]]
    image_env = {key: value for key, value in image.env.items() if key != "PATH"}  # PATH names the image's venv
    return command, {
        **os.environ,
        **image_env,
        "TORCHFN_HOST": "127.0.0.1",
        "TORCHFN_PORT": str(port),
        "TORCHFN_GRPC_PORT": str(free_port()),
        **(env or {}),
    }


@contextmanager
def running_server(
    env: Mapping[str, str] | None = None, timeout: float = 60.0, command: Sequence[str] | None = None
) -> Iterator[RunningServer]:
    port = free_port()
    command, full_env = container_command_and_env(port, env, command)
    with tempfile.TemporaryDirectory(prefix="torchfn-test-") as scratch:
        log_path = Path(scratch) / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        grpc_port = int(full_env["TORCHFN_GRPC_PORT"])
        grpc_address = f"127.0.0.1:{grpc_port}" if grpc_port else None
        server = RunningServer(process, f"http://127.0.0.1:{port}", log_path, grpc_address)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited with {process.returncode}: {server.log()[-2000:]}")
                try:
                    if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("server did not become ready")
                time.sleep(0.1)
            yield server
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
