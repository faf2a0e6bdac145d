"""What the benchmarks share about this machine: a free loopback port and the cores to pin to."""

from __future__ import annotations

import os
import shutil
import socket
import sys


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def grpc_port_env() -> dict[str, str]:
    """A service's gRPC face on a free port: its default (8001) is fixed, and servers started side
    by side, by this benchmark or another's, would contend for it."""
    return {"TORCHFN_GRPC_PORT": str(free_port())}


def choose_cpus() -> tuple[int | None, int | None]:
    """(server cpu, client cpu): the first two CPUs this process may use, when taskset exists."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2 and shutil.which("taskset"):
        return cpus[0], cpus[1]
    return None, None


def pinned(command: list[str], cpu: int | None) -> list[str]:
    """``command`` run on ``cpu`` only (through taskset), or as it is."""
    return command if cpu is None else ["taskset", "-c", str(cpu), *command]


def server_command(app: str, port: int, cpu: int | None, *extra: str) -> list[str]:
    """One uvicorn worker on loopback serving ``app``, pinned to ``cpu``."""
    uvicorn = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    return pinned([*uvicorn, "--workers", "1", "--log-level", "warning", *extra], cpu)
