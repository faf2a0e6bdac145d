"""What the benchmarks share about this machine: a free loopback port, the cores to pin to, and a
server process started and stopped."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


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


@contextlib.contextmanager
def server_process(command: list[str], url: str, env: Mapping[str, str] | None = None) -> Iterator[int]:
    """``command`` run from the repository's root with ``env`` added, once ``url``'s ``/readyz``
    answers 200 (within a minute): its pid. Stopped with SIGTERM (SIGKILL after 15 s) on exit."""
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})}, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {' '.join(command)}")
            time.sleep(0.1)
        yield process.pid
    finally:
        stop(process, 15.0)


def stop(process: subprocess.Popen[Any], within: float) -> None:
    """SIGTERM, then SIGKILL if ``process`` has not ended ``within`` seconds later."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=within)


def write_results(path: Path, results: Mapping[str, Any]) -> None:
    """A benchmark's results as indented JSON at ``path`` (its folder made), and where they went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {path}")
