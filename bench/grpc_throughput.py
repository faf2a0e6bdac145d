"""The Open Inference Protocol over gRPC under load, against its floors, driven by ``h2load``.

Run with ``.venv/bin/python -m bench.grpc_throughput`` (``--help`` for the options; needs ``h2load``
from Debian's ``nghttp2-client``). The servers (``SERVERS``), each run alone pinned to the same core
(``taskset``; ``TORCHFN_TORCH_THREADS=1``, ``OMP_NUM_THREADS=1``), h2load pinned to another:

* ``bare``: ``python -m bench.grpc_bare_app``, a grpc.aio servicer of the same proto that decodes
  nothing and answers a constant ``ModelInferResponse`` (what grpc.aio costs per call);
* ``echo``: ``python -m bench.grpc_echo_app``, which sends the request's raw tensors back as raw
  outputs (what moving the bytes costs), with the allocator setting the service makes at start-up.

Both take the bounds of the service's own gRPC server (``app.transports.grpc.options``, default
settings). And the service itself:

* ``service``: ``python -m app.serve`` with its default settings (gRPC on a port of its own), pinned
  like the floors; it serves both payloads, and its replies are checked against numpy's relu;
* ``service-http``: the same process's ``POST /activate`` over HTTP/1.1 with the same 256 values,
  driven by ``wrk`` (``bench.throughput``'s script and checks, ``--connections`` x ``--streams``
  connections), measured in the same mirrored sequence as the gRPC servers on ``relu256``.

The payloads (``payloads()``), each with the server it is measured against first:

* ``relu256``: relu on 256 FP32 in ``raw_input_contents``, at ``--connections`` x ``--streams``
  concurrent calls (default 8 x 8 = 64): requests/s, against ``bare``;
* ``relu1m``: relu on 1,000,000 FP32 in ``raw_input_contents``, ``--large-calls`` at a time
  (default 1): latency, against ``echo``.

The load generator is h2load (nghttp2's C client, one thread, not the bottleneck: its core's share
is reported beside the server's), sending one prepared gRPC message per call over cleartext HTTP/2
with prior knowledge (h2load's default for ``http://``), for example::

    taskset -c 1 h2load -t1 -c8 -m8 -D2 -d relu256.grpc -H 'content-type: application/grpc' \\
        -H 'te: trailers' --log-file=calls.tsv http://127.0.0.1:PORT/inference.GRPCInferenceService/ModelInfer

``relu256.grpc`` is the message as gRPC frames it: a zero byte (not compressed), its length (4 bytes,
big-endian), the serialized ``ModelInferRequest``. h2load counts HTTP statuses, and a failed gRPC
call is HTTP 200 too (its ``grpc-status`` is in the trailers, with no message), so each run checks
that the DATA bytes h2load received are the successful calls times the framed reply, whose size is
taken from a call checked with a real gRPC client before the runs (a call still in flight when the
run stops may add part of one reply). Latency percentiles come from h2load's per-call log.

Each round starts every server, checks one call of each of its payloads, then for each payload
warms up and measures its servers at the payload's concurrency in two halves run in mirrored order
(a, b, b, a: a steady drift of the machine weighs on both alike). A ratio is each round's
(both halves), reported as the median over rounds with its range: every other server measured on a
payload against the payload's first (requests/s for ``relu256``, mean latency for ``relu1m``).
Figures go to stdout and ``bench/results/grpc_throughput.json``; the exit status is non-zero only
on errors (a server failing, a wrong reply, a failed call), never on a ratio.

The ratios: ``service/bare`` (calls/s) on ``relu256``, ``service/echo`` (mean latency) on
``relu1m``, and ``service/service-http`` (calls/s), gRPC against ``/activate`` in the same rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import grpc
import numpy as np
import orjson

from app.core.allocator import MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES
from app.protocols.oip.grpc.messages import ModelInferRequest, ModelInferResponse
from bench import throughput
from bench.grpc_serve import INFER_PATH
from bench.machine import choose_cpus, free_port, pinned, stop, write_results
from bench.throughput import children_cpu_s, process_cpu_s, system_busy_s

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "grpc_throughput.json"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
CALL_TIMEOUT_S = 60.0
UNLIMITED_MESSAGES = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
KEEP_FREED_MEMORY = {
    "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD_BYTES),
    "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD_BYTES),
}
"""What ``app.core.runtime.keep_freed_memory`` sets in the service, through glibc's variables."""


# ----------------------------------------------------------------------------- what is measured


@dataclass(frozen=True)
class Payload:
    name: str
    message: bytes
    """The serialized ``ModelInferRequest``."""
    raw_input: bytes
    """Its one tensor's raw bytes."""
    metric: str
    """What its ratios compare: ``requests_per_s`` (higher is better) or ``mean_ms`` (lower)."""
    large: bool
    """Measured at ``--large-calls`` concurrent calls rather than ``--connections`` x ``--streams``."""
    relu_output: bytes
    """``numpy.maximum(x, 0)``'s bytes: the service's raw output."""
    http_body: bytes | None = None
    """The same computation as ``POST /activate``'s JSON body, for the service's HTTP face."""

    @property
    def framed(self) -> bytes:
        """The message as gRPC sends it: not compressed, its length, itself."""
        return b"\x00" + len(self.message).to_bytes(4, "big") + self.message


def _relu_request(elements: int, seed: int) -> tuple[bytes, np.ndarray]:
    values = np.random.default_rng(seed).standard_normal(elements).astype("<f4")
    tensor = ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[elements])
    request = ModelInferRequest(model_name="relu", model_version="1", inputs=[tensor])
    request.raw_input_contents.append(values.tobytes())
    return request.SerializeToString(), values


def _relu_output(values: np.ndarray) -> bytes:
    output: np.ndarray = np.maximum(values, np.float32(0.0))
    return output.tobytes()


def payloads(seed: int = 0) -> list[Payload]:
    small, small_values = _relu_request(256, seed)
    large, large_values = _relu_request(1_000_000, seed)
    activate = orjson.dumps({"function": "relu", "input": small_values}, option=orjson.OPT_SERIALIZE_NUMPY)
    return [
        Payload(
            "relu256",
            small,
            small_values.tobytes(),
            "requests_per_s",
            large=False,
            relu_output=_relu_output(small_values),
            http_body=activate,
        ),
        Payload("relu1m", large, large_values.tobytes(), "mean_ms", large=True, relu_output=_relu_output(large_values)),
    ]


Check = Callable[[Payload, ModelInferResponse], bool]


@dataclass(frozen=True)
class GrpcServer:
    name: str
    command: Callable[[int], list[str]]
    """The command that serves gRPC on the given port (pinned by the benchmark)."""
    env: Callable[[int], dict[str, str]]
    payloads: tuple[str, ...]
    """The payloads it is measured on; the first server listed for a payload is its baseline."""
    check: Check
    """Whether its reply to a payload is right."""
    http: bool = False
    """It serves ``POST /activate`` too (on a port of its own), measured beside its gRPC face."""


def _module(name: str) -> Callable[[int], list[str]]:
    return lambda port: [sys.executable, "-m", name, "--port", str(port)]


SERVERS = [
    GrpcServer(
        "bare",
        _module("bench.grpc_bare_app"),
        env=lambda port: {},
        payloads=("relu256",),
        check=lambda payload, reply: [output.name for output in reply.outputs] == ["output"],
    ),
    GrpcServer(
        "echo",
        _module("bench.grpc_echo_app"),
        env=lambda port: dict(KEEP_FREED_MEMORY),
        payloads=("relu1m",),
        check=lambda payload, reply: list(reply.raw_output_contents) == [payload.raw_input],
    ),
    GrpcServer(
        "service",
        lambda port: [sys.executable, "-m", "app.serve"],
        env=lambda port: {"TORCHFN_HOST": "127.0.0.1", "TORCHFN_GRPC_PORT": str(port)},
        payloads=("relu256", "relu1m"),
        check=lambda payload, reply: list(reply.raw_output_contents) == [payload.relu_output],
        http=True,
    ),
]
HTTP_SUFFIX = "-http"
"""The name of a server's HTTP face in the runs: ``service-http``."""


# ----------------------------------------------------------------------------- the servers


@dataclass
class Server:
    spec: GrpcServer
    process: subprocess.Popen[bytes]
    port: int
    log: TextIO
    http_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{INFER_PATH}"

    def log_text(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-5000:]

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.spec.name}: the server exited with {self.process.returncode}:\n{self.log_text()}"
            )

    def call(self, message: bytes, timeout: float = CALL_TIMEOUT_S) -> bytes:
        """One call with a real gRPC client: the serialized reply."""
        with grpc.insecure_channel(f"127.0.0.1:{self.port}", options=UNLIMITED_MESSAGES) as channel:
            infer: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(INFER_PATH)
            reply: bytes = infer(message, timeout=timeout)
            return reply


@contextlib.contextmanager
def running_server(spec: GrpcServer, cpu: int | None, probe: Payload) -> Iterator[Server]:
    port = free_port()
    http_port = free_port() if spec.http else None
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TORCHFN_", "MALLOC_"))}
    env.update({"TORCHFN_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1", **spec.env(port)})
    if http_port is not None:
        env["TORCHFN_PORT"] = str(http_port)
    with tempfile.TemporaryFile("w+", encoding="utf-8") as log:
        process = subprocess.Popen(
            pinned(spec.command(port), cpu), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        server = Server(spec, process, port, log, http_port)
        try:
            wait_ready(server, probe)
            yield server
        finally:
            stop(process, STOP_TIMEOUT_S)


def wait_ready(server: Server, probe: Payload) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        server.check_alive()
        with contextlib.suppress(grpc.RpcError):
            server.call(probe.message, timeout=5.0)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{server.spec.name}: not ready within {READY_TIMEOUT_S:.0f} s:\n{server.log_text()}")


def checked_reply_size(server: Server, payload: Payload) -> int:
    """The size of the server's framed reply to ``payload``, once the reply is checked."""
    reply = server.call(payload.message)
    if not server.spec.check(payload, ModelInferResponse.FromString(reply)):
        raise RuntimeError(
            f"{server.spec.name} {payload.name}: wrong reply {ModelInferResponse.FromString(reply)}"[:800]
        )
    return 5 + len(reply)


# ----------------------------------------------------------------------------- driving h2load


@dataclass
class Run:
    server: str
    payload: str
    connections: int
    streams: int
    duration_s: float
    calls: int
    requests_per_s: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_share: float
    """Server CPU seconds over wall seconds: near 1.0 when its core is saturated."""
    h2load_cpu_share: float
    other_cpu_share: float
    """CPU used by other processes over the run, as a share of all the machine's cores."""
    h2load_command: list[str] = field(default_factory=list)
    round: int = 0


_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored"
)
_TRAFFIC = re.compile(r"traffic: .*\((\d+)\) data")
_FINISHED = re.compile(r"finished in ([\d.]+)(m?s)")


def h2load(
    server: Server,
    payload: Payload,
    body: Path,
    reply_size: int,
    shape: tuple[int, int],
    seconds: float,
    cpu: int | None,
) -> Run:
    """One h2load run; raises on any failed call (by status or by the DATA bytes received)."""
    connections, streams = shape
    log_file = body.with_suffix(".tsv")
    log_file.unlink(missing_ok=True)
    command = pinned(
        [
            "h2load",
            "-t1",
            f"-c{connections}",
            f"-m{streams}",
            f"-D{max(1, round(seconds))}",
            "-d",
            str(body),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            f"--log-file={log_file}",
            server.url,
        ],
        cpu,
    )
    server.check_alive()
    server_before, h2load_before, busy_before = process_cpu_s(server.process.pid), children_cpu_s(), system_busy_s()
    started = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    wall = time.monotonic() - started
    busy = system_busy_s() - busy_before
    h2load_cpu = children_cpu_s() - h2load_before
    server.check_alive()
    server_cpu = process_cpu_s(server.process.pid) - server_before
    requests, traffic, finished = (pattern.search(completed.stdout) for pattern in (_REQUESTS, _TRAFFIC, _FINISHED))
    where = f"{server.spec.name} {payload.name} -c{connections} -m{streams}"
    if completed.returncode != 0 or requests is None or traffic is None or finished is None:
        raise RuntimeError(
            f"h2load failed ({completed.returncode}) on {where}:\n{completed.stdout}\n{completed.stderr}"
        )
    _total, began, done, succeeded, failed, errored = (int(value) for value in requests.groups())
    extra = int(traffic[1]) - succeeded * reply_size
    in_flight = max(1, began - done)
    if succeeded == 0 or failed or errored or not 0 <= extra < in_flight * reply_size:
        raise RuntimeError(
            f"{where}: {succeeded} calls succeeded, {failed} failed, {errored} errored; {traffic[1]} DATA bytes for "
            f"replies of {reply_size} (a failed gRPC call sends none)\n{completed.stdout}\n{server.log_text()}"
        )
    duration = float(finished[1]) / (1000 if finished[2] == "ms" else 1)
    elapsed_ms = np.array([int(line.split("\t")[2]) / 1000 for line in log_file.read_text().splitlines() if line])
    cores = os.cpu_count() or 1
    return Run(
        server=server.spec.name,
        payload=payload.name,
        connections=connections,
        streams=streams,
        duration_s=duration,
        calls=succeeded,
        requests_per_s=succeeded / duration,
        mean_ms=float(elapsed_ms.mean()),
        p50_ms=float(np.percentile(elapsed_ms, 50)),
        p90_ms=float(np.percentile(elapsed_ms, 90)),
        p99_ms=float(np.percentile(elapsed_ms, 99)),
        max_ms=float(elapsed_ms.max()),
        server_cpu_share=server_cpu / wall,
        h2load_cpu_share=h2load_cpu / wall,
        other_cpu_share=max(0.0, busy - server_cpu - h2load_cpu) / (wall * cores),
        h2load_command=command,
    )


def http_face(server: Server) -> throughput.Server:
    """The server's HTTP face, as ``bench.throughput`` drives it."""
    config = throughput.ServerConfig(server.spec.name + HTTP_SUFFIX, "app.main:app", {}, service=True)
    return throughput.Server(config, server.process, f"http://127.0.0.1:{server.http_port}", server.log)


def http_payload(payload: Payload) -> throughput.Payload:
    assert payload.http_body is not None
    expected = np.frombuffer(payload.relu_output, dtype="<f4")
    return throughput.Payload(payload.name, "/activate", payload.http_body, {"output": expected})


def wrk(server: Server, payload: Payload, connections: int, seconds: float, cpu: int | None, workdir: Path) -> Run:
    """One wrk run against the server's ``POST /activate`` (``bench.throughput``'s, which raises on
    any non-2xx reply or socket error), as a ``Run`` of its HTTP face."""
    run = throughput.wrk(http_face(server), http_payload(payload), connections, max(1, round(seconds)), cpu, workdir)
    return Run(
        server=run.config,
        payload=payload.name,
        connections=connections,
        streams=1,
        duration_s=run.duration_s,
        calls=run.requests,
        requests_per_s=run.requests_per_s,
        mean_ms=run.mean_ms,
        p50_ms=run.p50_ms,
        p90_ms=run.p90_ms,
        p99_ms=run.p99_ms,
        max_ms=run.max_ms,
        server_cpu_share=run.server_cpu_share,
        h2load_cpu_share=run.wrk_cpu_share,
        other_cpu_share=run.other_cpu_share,
        h2load_command=run.wrk_command,
    )


# ----------------------------------------------------------------------------- a round


def measure(
    server: Server,
    http: bool,
    payload: Payload,
    shape: tuple[int, int],
    seconds: float,
    sizes: dict[tuple[str, str], int],
    client_cpu: int | None,
    workdir: Path,
) -> Run:
    """One run of ``payload``: over gRPC with h2load at ``shape`` (connections, streams), or over
    the server's HTTP face with wrk at as many connections (HTTP/1.1: a call in flight on each)."""
    if http:
        return wrk(server, payload, shape[0] * shape[1], seconds, client_cpu, workdir)
    size = sizes[server.spec.name, payload.name]
    return h2load(server, payload, workdir / f"{payload.name}.grpc", size, shape, seconds, client_cpu)


def measure_round(
    cases: list[Payload], args: argparse.Namespace, server_cpu: int | None, client_cpu: int | None, workdir: Path
) -> list[Run]:
    """Start every server and check its replies; then for each payload, warm up and measure its
    servers in two mirrored halves."""
    runs: list[Run] = []
    with contextlib.ExitStack() as stack:
        servers: dict[str, Server] = {}
        sizes: dict[tuple[str, str], int] = {}
        for spec in SERVERS:
            served = [payload for payload in cases if payload.name in spec.payloads]
            if not served:
                continue
            print(f"  starting {spec.name}", file=sys.stderr, flush=True)
            server = stack.enter_context(running_server(spec, server_cpu, served[0]))
            for payload in served:
                sizes[spec.name, payload.name] = checked_reply_size(server, payload)
            if spec.http:
                throughput.check_replies(http_face(server), [http_payload(p) for p in served if p.http_body])
            servers[spec.name] = server
        half = args.duration / 2
        for payload in cases:
            body = workdir / f"{payload.name}.grpc"
            body.write_bytes(payload.framed)
            shape = (args.large_calls, 1) if payload.large else (args.connections, args.streams)
            measured: list[tuple[Server, bool]] = [
                (server, False) for name, server in servers.items() if (name, payload.name) in sizes
            ]
            if payload.http_body is not None and not payload.large:
                measured += [(server, True) for server, _ in measured if server.spec.http]
            for server, http in measured if args.warmup else []:
                measure(server, http, payload, shape, args.warmup, sizes, client_cpu, workdir)
            for server, http in [*measured, *reversed(measured)]:
                run = measure(server, http, payload, shape, half, sizes, client_cpu, workdir)
                runs.append(run)
                print(
                    f"  {run.server:<12} {payload.name} {run.connections}x{run.streams}: "
                    f"{run.requests_per_s:.0f} calls/s, "
                    f"mean {run.mean_ms:.3f} ms, p50 {run.p50_ms:.3f} ms, p99 {run.p99_ms:.3f} ms, "
                    f"server cpu {run.server_cpu_share:.2f}, client cpu {run.h2load_cpu_share:.2f}",
                    file=sys.stderr,
                    flush=True,
                )
    return runs


# ----------------------------------------------------------------------------- reporting


def _pooled(group: list[Run], metric: str) -> float:
    """A round's figure over its halves: calls over seconds, or the call-weighted mean latency."""
    calls = sum(run.calls for run in group)
    if metric == "requests_per_s":
        return calls / sum(run.duration_s for run in group)
    return sum(run.mean_ms * run.calls for run in group) / calls


def summary(runs: list[Run], cases: list[Payload]) -> dict[str, Any]:
    """Per payload and server: the medians over rounds (and their range); per payload, every other
    server against its baseline, round by round."""
    out: dict[str, Any] = {}
    for payload in cases:
        by_round: dict[str, dict[int, list[Run]]] = defaultdict(lambda: defaultdict(list))
        for run in runs:
            if run.payload == payload.name:
                by_round[run.server][run.round].append(run)
        servers: dict[str, Any] = {}
        for name, rounds in by_round.items():
            every = [run for group in rounds.values() for run in group]
            figures = [_pooled(group, payload.metric) for group in rounds.values()]
            servers[name] = {
                payload.metric: statistics.median(figures),
                f"{payload.metric}_min": min(figures),
                f"{payload.metric}_max": max(figures),
                "p50_ms": statistics.median(run.p50_ms for run in every),
                "p99_ms": statistics.median(run.p99_ms for run in every),
                "server_cpu_share": statistics.median(run.server_cpu_share for run in every),
                "h2load_cpu_share": statistics.median(run.h2load_cpu_share for run in every),
                "other_cpu_share": max(run.other_cpu_share for run in every),
                "rounds": len(rounds),
            }
        ratios: dict[str, Any] = {}
        names = list(by_round)
        for name in names[1:]:
            common = sorted(set(by_round[name]) & set(by_round[names[0]]))
            per_round = [
                _pooled(by_round[name][index], payload.metric) / _pooled(by_round[names[0]][index], payload.metric)
                for index in common
            ]
            if per_round:
                ratios[f"{name}/{names[0]}"] = {
                    "median": statistics.median(per_round),
                    "min": min(per_round),
                    "max": max(per_round),
                }
        for name in names:  # a server's gRPC face against its HTTP face, round by round
            twin = name + HTTP_SUFFIX
            common = sorted(set(by_round[name]) & set(by_round.get(twin, {})))
            per_round = [
                _pooled(by_round[name][index], payload.metric) / _pooled(by_round[twin][index], payload.metric)
                for index in common
            ]
            if per_round:
                ratios[f"{name}/{twin}"] = {
                    "median": statistics.median(per_round),
                    "min": min(per_round),
                    "max": max(per_round),
                }
        out[payload.name] = {"metric": payload.metric, "servers": servers, "ratios": ratios}
    return out


def print_report(report: dict[str, Any], out: TextIO = sys.stdout) -> None:
    for payload, entry in report.items():
        metric = entry["metric"]
        unit = "calls/s" if metric == "requests_per_s" else "mean ms"
        print(f"{payload}: medians over rounds [range]", file=out)
        for name, figures in entry["servers"].items():
            print(
                f"  {name:<12} {figures[metric]:>10.3f} {unit}"
                f" [{figures[metric + '_min']:.3f}..{figures[metric + '_max']:.3f}]"
                f"  p50 {figures['p50_ms']:.3f} ms  p99 {figures['p99_ms']:.3f} ms"
                f"  server cpu {figures['server_cpu_share']:.2f}  h2load cpu {figures['h2load_cpu_share']:.2f}"
                f"  other {figures['other_cpu_share']:.2f}",
                file=out,
            )
        for name, ratio in entry["ratios"].items():
            print(f"  {name} ({unit}) = {ratio['median']:.3f} [{ratio['min']:.3f}..{ratio['max']:.3f}]", file=out)


def machine() -> dict[str, Any]:
    version = subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "grpcio": grpc.__version__,
        "cpus": os.cpu_count(),
        "h2load": version,
    }


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.grpc_throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=float, default=4, help="seconds per server and payload per round, in two halves"
    )
    parser.add_argument("--warmup", type=float, default=1, help="seconds of unmeasured load per server and payload")
    parser.add_argument(
        "--connections", type=int, default=8, help="HTTP/2 connections of the small payload (default 8)"
    )
    parser.add_argument("--streams", type=int, default=8, help="concurrent calls on each of them (default 8)")
    parser.add_argument("--large-calls", type=int, default=1, help="concurrent calls of the large payload (default 1)")
    parser.add_argument("--payloads", default="relu256,relu1m", help="comma-separated subset of relu256, relu1m")
    parser.add_argument("--rounds", type=int, default=5, help="repeat everything, servers restarted (default 5)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args(argv)
    if min(args.duration, args.connections, args.streams, args.large_calls, args.rounds) <= 0 or args.warmup < 0:
        parser.error("--duration, --connections, --streams, --large-calls and --rounds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("h2load") is None:
        print("h2load is not installed (Debian: apt-get install nghttp2-client)", file=sys.stderr)
        return 2
    wanted = {name.strip() for name in args.payloads.split(",")}
    cases = [payload for payload in payloads() if payload.name in wanted]
    if not cases:
        print(f"no known payload in --payloads {args.payloads!r}", file=sys.stderr)
        return 2
    server_cpu, client_cpu = choose_cpus()
    if server_cpu is None:
        print("warning: fewer than two CPUs (or no taskset): servers and h2load are not pinned", file=sys.stderr)
    elif client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})  # keep this driver off the servers' core too
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-grpc-") as tmp:
        for round_index in range(args.rounds):
            print(f"# round {round_index + 1}/{args.rounds}", file=sys.stderr, flush=True)
            measured = measure_round(cases, args, server_cpu, client_cpu, Path(tmp))
            for run in measured:
                run.round = round_index
            runs.extend(measured)
    report = summary(runs, cases)
    print()
    print_report(report)
    results = {
        "command": [sys.executable, "-m", "bench.grpc_throughput", *(sys.argv[1:] if argv is None else argv)],
        "settings": {
            **{key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()},
            "server_cpu": server_cpu,
            "h2load_cpu": client_cpu,
            "servers": [{"name": spec.name, "payloads": spec.payloads} for spec in SERVERS],
            "payloads": {payload.name: {"message_bytes": len(payload.message)} for payload in cases},
        },
        "machine": machine(),
        "summary": report,
        "runs": [asdict(run) for run in runs],
    }
    write_results(args.output, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
