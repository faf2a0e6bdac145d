"""Side-by-side benchmark: a 1M-element relu through ``POST /v2/models/relu/infer`` (the Open
Inference Protocol) against the same work in-process, with binary tensors and with JSON tensors.

Run with ``.venv/bin/python -m bench.oip_large_tensor``. Like ``bench.large_tensor`` it starts
``uvicorn app.main:app`` pinned to one core (this process pinned to another) and alternates, per
form, the service and the bare in-process work on the same request bytes:

* binary: the body is the JSON header plus the 4,000,000 raw little-endian float32 bytes
  (``Inference-Header-Content-Length``), and the output is asked for as binary data.
  in-process: ``orjson.loads(header)`` + ``numpy.frombuffer`` + ``torch.relu`` + the reply header
  (``orjson.dumps``) joined with the output's bytes: the same reply bytes as the server's.
  Timed with two clients: ``lean`` (a keep-alive HTTP/1.1 client on a bare socket: ``sendall`` and
  ``recv_into`` a preallocated buffer, i.e. the bytes and little else) and ``httpx`` (the client of
  ``bench.large_tensor``), and reported once more as ``tritonclient.infer`` end to end (it also
  builds the request from a numpy array and returns one; its in-process side is the same).
* json: ``data`` is the flat list of the 1M floats; the output comes back as JSON data.
  in-process: ``orjson.loads(body)`` + ``numpy.asarray`` + float32 + relu + ``orjson.dumps(reply)``.
  Timed with httpx.
* transport floors: ``uvicorn bench.echo_app:app`` (no framework, no work) sends the binary request
  body straight back, timed with the lean client in the same rounds as the binary case (mirrored
  order from round to round): what moving the bytes through uvicorn and the loopback costs on this
  machine, with nothing of the service in it. Twice: as uvicorn runs it, and with the allocator
  setting the service makes at start-up (``app.core.runtime.keep_freed_memory``), whose absence
  costs the bare echo page faults the service no longer pays.

Each service call runs until the whole reply has been read as bytes; parsing the reply is in
neither column. Figures go to stdout and ``bench/results/oip_large_tensor.json``. The exit status
is non-zero only on errors (a server failing, wrong replies), never on the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import os
import socket
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import torch
import tritonclient.http as triton
from numpy.typing import NDArray

from app.core.allocator import MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES
from bench.large_tensor import (
    Cpus,
    Noise,
    checked_args,
    on_cpu,
    p90,
    report_main,
    run_config,
    running_server,
    server_timing,
    size_arguments,
)
from bench.machine import choose_cpus, free_port, server_command

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "oip_large_tensor.json"
PATH = "/v2/models/relu/infer"
HEADER_LENGTH = "inference-header-content-length"
MIB = 1024 * 1024
TIMEOUT_S = 300.0

warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


# ----------------------------------------------------------------------------- a lean client


class LeanHttp:
    """Keep-alive HTTP/1.1 over one socket: the request bytes out, the reply read into one buffer."""

    def __init__(self, url: str, capacity: int) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray(capacity)

    def close(self) -> None:
        self.sock.close()

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[dict[str, str], memoryview]:
        lines = [f"POST {path} HTTP/1.1", "host: bench", f"content-length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
        self.sock.sendall(body)
        view = memoryview(self.buffer)
        got = 0
        while (end := self.buffer.find(b"\r\n\r\n", 0, got)) < 0:
            got += self._recv(view[got:])
        status, *fields = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        reply_headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
        if " 200 " not in status + " ":
            raise RuntimeError(f"POST {path} answered {status}")
        total = end + 4 + int(reply_headers["content-length"])
        if total > len(self.buffer):
            raise RuntimeError(f"reply of {total} bytes exceeds the client buffer")
        while got < total:
            got += self._recv(view[got:total])
        return reply_headers, view[end + 4 : total]

    def _recv(self, into: memoryview) -> int:
        count = self.sock.recv_into(into)
        if count == 0:
            raise RuntimeError("the server closed the connection")
        return count


# ----------------------------------------------------------------------------- the work


def binary_request(values: NDArray[np.float32]) -> tuple[bytes, dict[str, str]]:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(values.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": values.nbytes},
                }
            ],
            "outputs": [{"name": "output", "parameters": {"binary_data": True}}],
        }
    )
    headers = {HEADER_LENGTH: str(len(header)), "content-type": "application/octet-stream"}
    return header + values.astype("<f4").tobytes(), headers


def json_request(values: NDArray[np.float32]) -> tuple[bytes, dict[str, str]]:
    body = {"inputs": [{"name": "input", "shape": list(values.shape), "datatype": "FP32", "data": values}]}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), {"content-type": "application/json"}


def in_process_binary(body: bytes, header_length: int) -> bytes:
    """The bare work behind a binary relu: header, frombuffer, relu, reply header + output bytes."""
    request = orjson.loads(memoryview(body)[:header_length])
    entry = request["inputs"][0]
    values = np.frombuffer(body, dtype="<f4", offset=header_length).reshape(entry["shape"])
    output = torch.relu(torch.from_numpy(values)).numpy()
    reply = {
        "model_name": "relu",
        "model_version": "1",
        "outputs": [
            {
                "name": "output",
                "shape": list(output.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": output.nbytes},
            }
        ],
    }
    return b"".join((orjson.dumps(reply), output.data))


def in_process_json(body: bytes) -> bytes:
    """The bare work behind a JSON relu: parse, array, float32, relu, serialise the reply."""
    request = orjson.loads(body)
    entry = request["inputs"][0]
    values = np.asarray(entry["data"]).astype(np.float32).reshape(entry["shape"])
    output = torch.relu(torch.from_numpy(values)).numpy()
    reply = {
        "model_name": "relu",
        "model_version": "1",
        "outputs": [{"name": "output", "shape": list(output.shape), "datatype": "FP32", "data": output.reshape(-1)}],
    }
    return orjson.dumps(reply, option=orjson.OPT_SERIALIZE_NUMPY)


# ----------------------------------------------------------------------------- measuring


@dataclass
class Case:
    name: str
    client: str
    body: bytes
    service: Callable[[], Any]
    in_process: Callable[[], bytes]
    agree: Callable[[Any, bytes], bool] = lambda reply, local: bool(reply == local)
    floors: dict[str, Callable[[], object]] = field(default_factory=dict)
    """Transport floors timed in the same rounds: the same bytes echoed, by name."""
    service_ms: list[float] = field(default_factory=list)
    in_process_ms: list[float] = field(default_factory=list)
    floor_ms: dict[str, list[float]] = field(default_factory=dict)
    server_timing_ms: dict[str, list[float]] = field(default_factory=dict)
    reply_bytes: int = 0
    identical_bytes: bool = False


def _ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - start) / 1e6


def measure(case: Case, cpus: Cpus, warmups: int, repeats: int) -> None:
    """Each round times every side once, in mirrored order from one round to the next."""
    for _ in range(warmups):
        reply = case.service()
        with on_cpu(cpus.in_process, cpus.client):
            local = case.in_process()
        for floor in case.floors.values():
            floor()
    case.identical_bytes = case.agree(reply, local)
    case.reply_bytes = len(reply) if isinstance(reply, bytes) else len(local)
    del reply, local
    sides = ["service", "in_process", *case.floors]
    for rep in range(repeats):
        gc.collect()
        for side in sides if rep % 2 == 0 else reversed(sides):
            if side == "service":
                case.service_ms.append(_ms(case.service))
            elif side == "in_process":
                with on_cpu(cpus.in_process, cpus.client):
                    case.in_process_ms.append(_ms(case.in_process))
            else:
                case.floor_ms.setdefault(side, []).append(_ms(case.floors[side]))


@dataclass
class Clients:
    lean: LeanHttp
    httpx: httpx.Client
    triton: triton.InferenceServerClient
    echoes: dict[str, LeanHttp]
    """The transport floors' clients, by floor name."""


def _post_httpx(client: httpx.Client, body: bytes, headers: dict[str, str], case: Case | None) -> bytes:
    response = client.post(PATH, content=body, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"POST {PATH} answered {response.status_code}: {response.text[:300]}")
    if case is not None:
        for name, duration in server_timing(response.headers.get("server-timing", "")).items():
            case.server_timing_ms.setdefault(name, []).append(duration)
    return response.content


def _cases(clients: Clients, values: NDArray[np.float32]) -> list[Case]:
    binary_body, binary_headers = binary_request(values)
    json_body, json_headers = json_request(values)
    header_length = int(binary_headers[HEADER_LENGTH])
    cases: list[Case] = []

    def local_binary() -> bytes:
        return in_process_binary(binary_body, header_length)

    def lean() -> bytes:
        headers, reply = clients.lean.post(PATH, binary_body, binary_headers)
        for name, duration in server_timing(headers.get("server-timing", "")).items():
            cases[0].server_timing_ms.setdefault(name, []).append(duration)
        return bytes(reply)

    given = triton.InferInput("input", list(values.shape), "FP32")
    requested = [triton.InferRequestedOutput("output", binary_data=True)]

    def with_tritonclient() -> NDArray[np.float32]:
        given.set_data_from_numpy(values, binary_data=True)
        output: NDArray[np.float32] = clients.triton.infer("relu", [given], outputs=requested).as_numpy("output")
        return output

    def same_output(output: NDArray[np.float32], local: bytes) -> bool:
        expected = np.frombuffer(local, dtype="<f4", offset=len(local) - values.nbytes)
        return bool(np.array_equal(output, expected))

    floors: dict[str, Callable[[], object]] = {
        name: functools.partial(echo.post, "/", binary_body, binary_headers) for name, echo in clients.echoes.items()
    }
    cases.append(Case("binary", "lean", binary_body, lean, local_binary, floors=floors))
    cases.append(
        Case(
            "binary",
            "httpx",
            binary_body,
            lambda: _post_httpx(clients.httpx, binary_body, binary_headers, cases[1]),
            local_binary,
        )
    )
    cases.append(Case("binary", "tritonclient", binary_body, with_tritonclient, local_binary, same_output))
    cases.append(
        Case(
            "json",
            "httpx",
            json_body,
            lambda: _post_httpx(clients.httpx, json_body, json_headers, cases[3]),
            lambda: in_process_json(json_body),
        )
    )
    return cases


ECHO_FLOORS = {
    "echo": {},
    "echo, freed memory kept": {
        # What app.core.runtime.keep_freed_memory sets in the service, through glibc's variables.
        "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD_BYTES),
        "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD_BYTES),
    },
}
"""The transport floors: ``bench.echo_app`` as uvicorn runs it, and with the allocator setting the
service makes at start-up (large blocks kept for reuse rather than mapped afresh each time)."""


@contextlib.contextmanager
def echo_server(cpu: int | None, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    command = server_command("bench.echo_app:app", port, cpu)
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the echo server did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


@contextlib.contextmanager
def echo_clients(cpu: int | None, capacity: int) -> Iterator[dict[str, LeanHttp]]:
    """A lean client of each transport floor's echo server (on the server's core, idle between uses)."""
    with contextlib.ExitStack() as stack:
        clients: dict[str, LeanHttp] = {}
        for name, env in ECHO_FLOORS.items():
            clients[name] = LeanHttp(stack.enter_context(echo_server(cpu, env)), capacity)
            stack.callback(clients[name].close)
        yield clients


# ----------------------------------------------------------------------------- reporting


def summary(case: Case) -> dict[str, Any]:
    service, local = statistics.median(case.service_ms), statistics.median(case.in_process_ms)
    return {
        "form": case.name,
        "client": case.client,
        "request_bytes": len(case.body),
        "reply_bytes": case.reply_bytes,
        "reply_identical_to_in_process": case.identical_bytes,
        "service_ms": {"median": service, "p90": p90(case.service_ms), "samples": case.service_ms},
        "in_process_ms": {"median": local, "p90": p90(case.in_process_ms), "samples": case.in_process_ms},
        "ratio_of_medians": service / local,
        "server_timing_ms": {name: statistics.median(s) for name, s in case.server_timing_ms.items()},
        "transport_floors_ms": {
            name: {
                "median": statistics.median(samples),
                "p90": p90(samples),
                "samples": samples,
                "service_over_floor": service / statistics.median(samples),
                "service_over_floor_by_round": _spread([a / b for a, b in zip(case.service_ms, samples, strict=True)]),
            }
            for name, samples in case.floor_ms.items()
        },
    }


def _spread(samples: list[float]) -> dict[str, float]:
    quartiles = statistics.quantiles(samples, n=4) if len(samples) > 1 else samples * 3
    return {"median": statistics.median(samples), "q1": quartiles[0], "q3": quartiles[2]}


def print_table(report: dict[str, Any]) -> None:
    config = report["config"]
    print()
    print(
        f"relu of {config['elements']:,} float32 elements through POST {PATH}; {config['repeats']} repeats after "
        f"{config['warmups']} warm-ups; cpu: server {config['server_cpu']}, client {config['client_cpu']}, "
        f"in-process {config['in_process_cpu']}; torch threads 1 on both sides"
    )
    header = (
        f"{'form':<7} {'client':<13} {'request':>9} {'service med':>12} {'p90':>8} {'in-proc med':>12} {'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in report["cases"]:
        print(
            f"{row['form']:<7} {row['client']:<13} {row['request_bytes'] / MIB:>7.1f}Mi "
            f"{row['service_ms']['median']:>9.2f} ms {row['service_ms']['p90']:>5.1f} ms "
            f"{row['in_process_ms']['median']:>9.2f} ms {row['ratio_of_medians']:>6.2f}x"
            + ("" if row["reply_identical_to_in_process"] else "  (replies differ)")
        )
    for row in report["cases"]:
        if row["server_timing_ms"]:
            parts = ", ".join(f"{name} {value:.2f} ms" for name, value in row["server_timing_ms"].items())
            print(f"{row['form']} via {row['client']}: Server-Timing medians: {parts}")
    for row in report["cases"]:
        for name, floor in row["transport_floors_ms"].items():
            by_round = floor["service_over_floor_by_round"]
            print(
                f"{row['form']} via {row['client']} against the transport floor '{name}' (bench.echo_app: the same "
                f"bytes there and back, no framework, no work; same rounds): floor median {floor['median']:.2f} ms "
                f"(p90 {floor['p90']:.2f}); service / floor {floor['service_over_floor']:.2f}x "
                f"(by round: median {by_round['median']:.2f}x, quartiles {by_round['q1']:.2f}-{by_round['q3']:.2f}x)"
            )
    other = report["other_processes"]
    print(
        f"other processes used {100 * other['other_share_of_machine']:.0f}% of the machine while measuring"
        + ("  ** busy machine: the timings are unreliable **" if other["other_share_of_machine"] > 0.1 else "")
    )
    print(f"figures written to {report['output']}")


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    size_arguments(parser, repeats=21, results=RESULTS)
    return checked_args(parser, argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    server_cpu, client_cpu = choose_cpus()
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    cpus = Cpus(client_cpu, server_cpu)
    torch.set_num_threads(1)
    values = np.random.default_rng(args.seed).standard_normal(args.elements, dtype=np.float32)
    capacity = 2 * values.nbytes + MIB
    with (
        running_server(server_cpu, 1) as server,
        httpx.Client(base_url=server.url, timeout=TIMEOUT_S) as plain,
        echo_clients(server_cpu, capacity) as echoes,
    ):
        clients = Clients(
            LeanHttp(server.url, capacity),
            plain,
            triton.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=TIMEOUT_S),
            echoes,
        )
        try:
            cases = _cases(clients, values)
            with Noise(server.pid) as noise:
                for case in cases:
                    print(f"measuring {case.name} via {case.client} ...", file=sys.stderr, flush=True)
                    measure(case, cpus, args.warmups, args.repeats)
        finally:
            clients.lean.close()
            clients.triton.close()
    return {
        "config": run_config(args, server_cpu, client_cpu, cpus),
        "cases": [summary(case) for case in cases],
        "other_processes": noise.report(),
        "output": str(args.output),
    }


def main(argv: list[str] | None = None) -> int:
    return report_main(parse_args(argv), run, print_table)


if __name__ == "__main__":
    sys.exit(main())
