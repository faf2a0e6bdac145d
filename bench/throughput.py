"""Throughput and latency of small requests under concurrency: the service as it runs in the image
against the floors of the stack it stands on, measured in the same rounds.

Run with ``.venv/bin/python -m bench.throughput`` (``--help`` for the options; needs ``wrk``).
Four servers, each one process pinned to the same core (``taskset``), driven by ``wrk`` pinned to
the other:

* ``echo``:      ``uvicorn bench.echo_app:app``, a raw ASGI app that reads each body and sends it
                 back (the transport's floor: uvicorn, its parser and the loopback);
* ``starlette``: ``uvicorn bench.starlette_app:app``, bare Starlette endpoints that read the body and
                 return a constant;
* ``fastapi``:   ``uvicorn bench.bare_app:app``, the same as bare FastAPI endpoints;
* ``service``:   ``python -m app.serve`` with its default settings, as the image runs it (its access
                 log written, metrics on, batching on).

(``--configs`` adds ``service-batching-off``: the service with ``TORCHFN_BATCHING=false``.) Each
round starts them all, checks the service's replies against numpy, then for each payload
(``relu256``: relu on 256 floats through ``/activate``; ``ce32x10``: cross_entropy on 32x10 logits
through ``/loss``; ``relu256v2``: the same relu through ``/v2/models/relu/infer``) warms up and
measures every server at ``--connections`` for ``--duration`` seconds, in two halves run in
mirrored order (echo, starlette, fastapi, service, service, fastapi, starlette, echo), then each at
one connection (``-c1``) for the lone request's latency. A machine whose speed drifts (a shared VM)
would favour whichever server ran at a faster moment; measured back to back in mirrored halves, a
steady drift weighs on all alike. Each round yields its own ratios (from the requests of both
halves), and the report gives their median and range. The body, method and header are set by
``bench/post.lua``, which also counts statuses and the batch sizes the service reports in
``Server-Timing``.

It prints a table (requests/s, p50, p99 per server and payload), the ratios the service is held to
(relu through ``/activate`` and cross_entropy through ``/loss`` over the bare FastAPI endpoint,
``/v2`` over ``/activate``, the lone request's p50 over FastAPI's) and the fraction of the raw
echo reached, and writes everything to ``bench/results/throughput.json``. A benchmark, not a test:
the exit status is non-zero only on errors (a server failing, a wrong reply, a non-2xx status or a
socket error during a run), never because of a ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
import numpy as np
import orjson

from bench.machine import choose_cpus, free_port, grpc_port_env, pinned, server_command, stop, write_results

ROOT = Path(__file__).resolve().parent.parent
LUA_SCRIPT = ROOT / "bench" / "post.lua"
RESULTS = ROOT / "bench" / "results" / "throughput.json"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
WRK_TIMEOUT = "30s"
JSON_HEADERS = {"content-type": "application/json"}
TARGETS = {
    "activate_over_fastapi": (1.0, ">="),
    "loss_over_fastapi": (0.9, ">="),
    "v2_over_activate": (0.9, ">="),
    "lone_p50_over_fastapi": (1.5, "<="),
}
"""What the service is held to (issue: one road below every transport)."""


# ----------------------------------------------------------------------------- what is measured


@dataclass(frozen=True)
class ServerConfig:
    name: str
    app: str
    """``module:attribute`` of a floor run by uvicorn; empty for the service (``python -m app.serve``)."""
    env: dict[str, str]
    service: bool
    """The real service (ready through /readyz, replies checked) rather than a floor."""


@dataclass(frozen=True)
class Payload:
    name: str
    path: str
    body: bytes
    expected: dict[str, Any]
    """What the service must answer: ``output`` (relu) or ``loss`` (cross_entropy)."""


SERVICE = "service"
FLOORS = ("echo", "starlette", "fastapi")


def server_configs() -> list[ServerConfig]:
    return [
        ServerConfig("echo", "bench.echo_app:app", {}, service=False),
        ServerConfig("starlette", "bench.starlette_app:app", {}, service=False),
        ServerConfig("fastapi", "bench.bare_app:app", {}, service=False),
        ServerConfig(SERVICE, "", {}, service=True),
        ServerConfig("service-batching-off", "", {"TORCHFN_BATCHING": "false"}, service=True),
    ]


def payloads(seed: int = 0) -> list[Payload]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(256).astype(np.float32)
    relu = orjson.dumps({"function": "relu", "input": x}, option=orjson.OPT_SERIALIZE_NUMPY)
    logits = rng.standard_normal((32, 10)).astype(np.float32)
    target = rng.integers(0, 10, size=32)
    ce = orjson.dumps(
        {"function": "cross_entropy", "input": logits, "target": target.tolist()},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    z = logits.astype(np.float64)
    log_softmax = z - z.max(axis=1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(axis=1, keepdims=True))
    loss = float(-log_softmax[np.arange(32), target].mean())
    relu_v2 = orjson.dumps(
        {"inputs": [{"name": "input", "shape": [256], "datatype": "FP32", "data": x}]},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    return [
        Payload("relu256", "/activate", relu, {"output": np.maximum(x, np.float32(0.0))}),
        Payload("ce32x10", "/loss", ce, {"loss": loss}),
        Payload("relu256v2", "/v2/models/relu/infer", relu_v2, {"output": np.maximum(x, np.float32(0.0))}),
    ]


# ----------------------------------------------------------------------------- the server


@dataclass
class Server:
    config: ServerConfig
    process: subprocess.Popen[bytes]
    url: str
    log: TextIO

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-5000:]

    def cpu_s(self) -> float:
        """CPU seconds the server has used: its process and its workers'."""
        return process_tree_cpu_s(self.pid)

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.config.name}: the server exited with {self.process.returncode}:\n{self.log_text()}"
            )


@contextlib.contextmanager
def running_server(config: ServerConfig, cpu: int | None, probe: Payload) -> Iterator[Server]:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("TORCHFN_")}
    if config.service:  # as the image runs it: its default settings, but where to listen
        command = pinned([sys.executable, "-m", "app.serve"], cpu)
        env.update({"TORCHFN_HOST": "127.0.0.1", "TORCHFN_PORT": str(port), **grpc_port_env(), **config.env})
    else:
        command = server_command(config.app, port, cpu, "--no-access-log")
    with tempfile.TemporaryFile("w+", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        server = Server(config, process, f"http://127.0.0.1:{port}", log)
        try:
            wait_ready(server, probe)
            yield server
        finally:
            stop(process, STOP_TIMEOUT_S)


def wait_ready(server: Server, probe: Payload) -> None:
    """The service: GET /readyz answers 200. The bare app: a POST of ``probe`` answers 200."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        while time.monotonic() < deadline:
            server.check_alive()
            with contextlib.suppress(httpx.TransportError):
                if server.config.service:
                    response = client.get("/readyz")
                else:
                    response = client.post(probe.path, content=probe.body, headers=JSON_HEADERS)
                if response.status_code == 200:
                    return
            time.sleep(0.1)
    raise RuntimeError(f"{server.config.name}: not ready within {READY_TIMEOUT_S:.0f} s:\n{server.log_text()}")


def check_replies(server: Server, cases: list[Payload]) -> None:
    """One request of each payload answers 200, and the service's numbers are right."""
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        for payload in cases:
            response = client.post(payload.path, content=payload.body, headers=JSON_HEADERS)
            if response.status_code != 200:
                raise RuntimeError(
                    f"{server.config.name} {payload.name}: POST {payload.path} answered "
                    f"{response.status_code}: {response.text[:500]}"
                )
            if not server.config.service:
                continue
            reply = orjson.loads(response.content)
            if "outputs" in reply:  # the Open Inference Protocol's reply
                reply = {"output": reply["outputs"][0]["data"]}
            if "output" in payload.expected and not np.array_equal(
                np.asarray(reply.get("output"), dtype=np.float32), payload.expected["output"]
            ):
                raise RuntimeError(f"{server.config.name} {payload.name}: wrong output {str(reply)[:300]}")
            if "loss" in payload.expected:
                loss = reply.get("loss")
                if not isinstance(loss, float) or not math.isclose(loss, payload.expected["loss"], rel_tol=1e-5):
                    raise RuntimeError(
                        f"{server.config.name} {payload.name}: loss {loss!r}, expected {payload.expected['loss']!r}"
                    )
            if "batch;desc=" not in response.headers.get("server-timing", ""):
                raise RuntimeError(f"{server.config.name} {payload.name}: no batch entry in Server-Timing")


# ----------------------------------------------------------------------------- driving wrk


@dataclass
class Run:
    config: str
    payload: str
    connections: int
    duration_s: float
    requests: int
    requests_per_s: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float
    non_2xx: int
    statuses: dict[str, int]
    socket_errors: dict[str, int]
    mean_batch_size: float | None
    max_batch_size: int | None
    server_cpu_share: float
    """Server CPU seconds over wall seconds: near 1.0 when its core is saturated."""
    wrk_cpu_share: float
    other_cpu_share: float
    """CPU used by other processes over the run, as a share of all the machine's cores."""
    wrk_command: list[str] = field(default_factory=list)
    round: int = 0


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree_cpu_s(pid: int) -> float:
    """CPU seconds a process and its living descendants have used (a supervisor and its workers)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += process_cpu_s(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
    return total


def system_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (user, nice, system, steal; not irq/softirq)."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = values
    return (user + nice + system + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(server: Server, payload: Payload, connections: int, duration_s: int, cpu: int | None, workdir: Path) -> Run:
    """One wrk run against ``server``; raises on socket errors or any non-2xx reply."""
    body_file = workdir / f"{payload.name}.json"
    body_file.write_bytes(payload.body)
    result_file = workdir / "wrk-result.json"
    result_file.unlink(missing_ok=True)
    command = pinned(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration_s}s",
            "--timeout",
            WRK_TIMEOUT,
            "--latency",
            "-s",
            str(LUA_SCRIPT),
            server.url + payload.path,
        ],
        cpu,
    )
    env = {**os.environ, "BENCH_BODY_FILE": str(body_file), "BENCH_RESULT_FILE": str(result_file)}
    server.check_alive()
    server_before, wrk_before, busy_before = server.cpu_s(), children_cpu_s(), system_busy_s()
    started = time.monotonic()
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=duration_s + 120)
    wall = time.monotonic() - started
    busy = system_busy_s() - busy_before
    wrk_cpu = children_cpu_s() - wrk_before
    server.check_alive()
    server_cpu = server.cpu_s() - server_before
    if completed.returncode != 0 or not result_file.exists():
        raise RuntimeError(
            f"wrk failed ({completed.returncode}) on {server.config.name} {payload.name}:\n"
            f"{completed.stdout}\n{completed.stderr}"
        )
    raw: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
    latency: dict[str, float] = raw["latency_us"]
    duration = raw["duration_us"] / 1e6
    batched = int(raw["batched_responses"])
    cores = os.cpu_count() or 1
    run = Run(
        config=server.config.name,
        payload=payload.name,
        connections=connections,
        duration_s=duration,
        requests=int(raw["requests"]),
        requests_per_s=raw["requests"] / duration,
        p50_ms=latency["p50"] / 1000,
        p75_ms=latency["p75"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        p999_ms=latency["p999"] / 1000,
        mean_ms=latency["mean"] / 1000,
        max_ms=latency["max"] / 1000,
        non_2xx=int(raw["non_2xx"]),
        statuses={str(k): int(v) for k, v in raw["statuses"].items()},
        socket_errors={k: int(v) for k, v in raw["errors"].items() if k != "status"},
        mean_batch_size=raw["batch_size_sum"] / batched if batched else None,
        max_batch_size=int(raw["batch_size_max"]) if batched else None,
        server_cpu_share=server_cpu / wall,
        wrk_cpu_share=wrk_cpu / wall,
        other_cpu_share=max(0.0, busy - server_cpu - wrk_cpu) / (wall * cores),
        wrk_command=command,
    )
    problems = []
    if run.requests == 0:
        problems.append("no request completed")
    if run.non_2xx:
        problems.append(f"{run.non_2xx} non-2xx replies (statuses {run.statuses})")
    if any(run.socket_errors.values()):
        problems.append(f"socket errors {run.socket_errors}")
    if problems:
        raise RuntimeError(
            f"{server.config.name} {payload.name} -c{connections}: {'; '.join(problems)}\n{server.log_text()}"
        )
    return run


# ----------------------------------------------------------------------------- reporting


@dataclass
class Cell:
    """One configuration x payload x connection count, over every round: medians of the runs."""

    config: str
    payload: str
    connections: int
    rounds: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests_per_s_min: float
    requests_per_s_max: float
    mean_batch_size: float | None
    server_cpu_share: float
    wrk_cpu_share: float
    other_cpu_share: float


def summarize(runs: list[Run], configs: list[ServerConfig], cases: list[Payload]) -> list[Cell]:
    cells = []
    for connections in sorted({run.connections for run in runs}, reverse=True):
        for payload in cases:
            for config in configs:
                group = [
                    r for r in runs if (r.config, r.payload, r.connections) == (config.name, payload.name, connections)
                ]
                if not group:
                    continue
                batches = [r.mean_batch_size for r in group if r.mean_batch_size is not None]
                cells.append(
                    Cell(
                        config=config.name,
                        payload=payload.name,
                        connections=connections,
                        rounds=len({r.round for r in group}),
                        requests_per_s=statistics.median(r.requests_per_s for r in group),
                        p50_ms=statistics.median(r.p50_ms for r in group),
                        p99_ms=statistics.median(r.p99_ms for r in group),
                        requests_per_s_min=min(r.requests_per_s for r in group),
                        requests_per_s_max=max(r.requests_per_s for r in group),
                        mean_batch_size=statistics.median(batches) if batches else None,
                        server_cpu_share=statistics.median(r.server_cpu_share for r in group),
                        wrk_cpu_share=statistics.median(r.wrk_cpu_share for r in group),
                        other_cpu_share=max(r.other_cpu_share for r in group),
                    )
                )
    return cells


def find(cells: list[Cell], config: str, payload: str, connections: int) -> Cell | None:
    for cell in cells:
        if (cell.config, cell.payload, cell.connections) == (config, payload, connections):
            return cell
    return None


def round_throughput(runs: list[Run], connections: int) -> dict[tuple[int, str, str], float]:
    """Requests/s of each (round, server, payload) over both halves of the round."""
    requests: dict[tuple[int, str, str], int] = defaultdict(int)
    seconds: dict[tuple[int, str, str], float] = defaultdict(float)
    for run in runs:
        if run.connections == connections:
            requests[run.round, run.config, run.payload] += run.requests
            seconds[run.round, run.config, run.payload] += run.duration_s
    return {key: requests[key] / seconds[key] for key in requests}


RATIOS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "activate_over_fastapi": ((SERVICE, "relu256"), ("fastapi", "relu256")),
    "loss_over_fastapi": ((SERVICE, "ce32x10"), ("fastapi", "ce32x10")),
    "v2_over_activate": ((SERVICE, "relu256v2"), (SERVICE, "relu256")),
    "activate_over_starlette": ((SERVICE, "relu256"), ("starlette", "relu256")),
    "activate_over_echo": ((SERVICE, "relu256"), ("echo", "relu256")),
    "fastapi_over_echo": (("fastapi", "relu256"), ("echo", "relu256")),
    "batching_off_over_on": (("service-batching-off", "relu256"), (SERVICE, "relu256")),
}
"""Each ratio: (server, payload) over (server, payload), of requests/s in the same round."""


def ratios(runs: list[Run], connections: int) -> dict[str, dict[str, float]]:
    """Each ratio of ``RATIOS`` for every round that measured both sides: median, min, max."""
    throughput = round_throughput(runs, connections)
    rounds = sorted({index for index, _, _ in throughput})
    out: dict[str, dict[str, float]] = {}
    for name, (top, bottom) in RATIOS.items():
        per_round = [
            throughput[(index, *top)] / throughput[(index, *bottom)]
            for index in rounds
            if (index, *top) in throughput and (index, *bottom) in throughput
        ]
        if per_round:
            out[name] = {"median": statistics.median(per_round), "min": min(per_round), "max": max(per_round)}
    return out


def lone_latency(runs: list[Run]) -> dict[str, dict[str, float]]:
    """The lone request (-c1): the service's p50 over the bare FastAPI endpoint's, per payload and
    round (median, min, max), and both p50s (medians)."""
    by_round: dict[tuple[int, str, str], float] = {
        (run.round, run.config, run.payload): run.p50_ms for run in runs if run.connections == 1
    }
    out: dict[str, dict[str, float]] = {}
    for payload in sorted({key[2] for key in by_round}):
        pairs = [
            (by_round[index, SERVICE, payload], by_round[index, "fastapi", payload])
            for index in sorted({key[0] for key in by_round})
            if (index, SERVICE, payload) in by_round and (index, "fastapi", payload) in by_round
        ]
        if pairs:
            per_round = [service / fastapi for service, fastapi in pairs]
            out[payload] = {
                "median": statistics.median(per_round),
                "min": min(per_round),
                "max": max(per_round),
                "service_p50_ms": statistics.median(service for service, _ in pairs),
                "fastapi_p50_ms": statistics.median(fastapi for _, fastapi in pairs),
            }
    return out


def _verdict(name: str, value: float) -> str:
    if name not in TARGETS:
        return ""
    target, sense = TARGETS[name]
    met = value >= target if sense == ">=" else value <= target
    return f"  (target {sense} {target:g}: {'met' if met else 'NOT MET'})"


def print_report(
    runs: list[Run], cells: list[Cell], connections: int, out: TextIO = sys.stdout
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    rounds = max((cell.rounds for cell in cells), default=1)
    if rounds > 1:
        print(f"medians over {rounds} rounds (req/s range in brackets)", file=out)
    header = (
        f"{'server':<21} {'payload':<9} {'conns':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'batch':>6} {'srv cpu':>7} {'wrk cpu':>7} {'other':>6}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    for cell in cells:
        batch = "-" if cell.mean_batch_size is None else f"{cell.mean_batch_size:.1f}"
        spread = f"  [{cell.requests_per_s_min:.0f}..{cell.requests_per_s_max:.0f}]" if cell.rounds > 1 else ""
        print(
            f"{cell.config:<21} {cell.payload:<9} {cell.connections:>5} {cell.requests_per_s:>8.0f} "
            f"{cell.p50_ms:>8.3f} {cell.p99_ms:>8.3f} {batch:>6} {cell.server_cpu_share:>7.2f} "
            f"{cell.wrk_cpu_share:>7.2f} {cell.other_cpu_share:>6.2f}{spread}",
            file=out,
        )
    print(
        "(batch: mean requests per compute call from Server-Timing; srv/wrk cpu: cores used by the server and"
        " wrk; other: share of the machine used by other processes during the run)",
        file=out,
    )
    throughput = ratios(runs, connections)
    print(f"\nthroughput ratios at -c{connections}, median of the rounds' ratios [min..max]:", file=out)
    for name, entry in throughput.items():
        spread = f" [{entry['min']:.3f}..{entry['max']:.3f}]" if rounds > 1 else ""
        print(f"  {name:<24} {entry['median']:.3f}{spread}{_verdict(name, entry['median'])}", file=out)
    lone = lone_latency(runs)
    if lone:
        print("\nlone request (-c1) p50, the service over the bare FastAPI endpoint [min..max]:", file=out)
        for payload, entry in lone.items():
            spread = f" [{entry['min']:.3f}..{entry['max']:.3f}]" if rounds > 1 else ""
            verdict = _verdict("lone_p50_over_fastapi", entry["median"]) if payload == "relu256" else ""
            print(
                f"  {payload:<9} {entry['service_p50_ms']:.3f} ms over {entry['fastapi_p50_ms']:.3f} ms = "
                f"{entry['median']:.3f}{spread}{verdict}",
                file=out,
            )
    return throughput, lone


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "wrk": wrk_version[0] if wrk_version else "",
    }


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration",
        type=int,
        default=4,
        help="seconds each configuration is measured per round, in two halves (default 4)",
    )
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections (default 64)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="seconds of unmeasured load per payload before measuring (default 1)"
    )
    parser.add_argument("--c1-duration", type=int, default=3, help="seconds of each -c1 run (default 3); 0 skips them")
    parser.add_argument(
        "--configs",
        default="echo,starlette,fastapi,service",
        help="comma-separated servers, in the order of each round's first half: any of echo, starlette, "
        "fastapi, service, service-batching-off (default: the first four)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the service's, e.g. --set metrics=false (TORCHFN_METRICS); the default is none",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="repeat the whole measurement (servers restarted) and report medians (default 5: one round"
        " on a drifting machine is a lottery)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.connections < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--duration, --connections and --rounds must be positive, --warmup not negative")
    return args


def measure_round(
    configs: list[ServerConfig],
    cases: list[Payload],
    args: argparse.Namespace,
    c1_duration: int,
    server_cpu: int | None,
    client_cpu: int | None,
    workdir: Path,
) -> list[Run]:
    """Start every configuration's server and check it; then for each payload, warm up and
    measure the configurations at --connections in two mirrored halves, then each at one connection."""
    runs = []
    with contextlib.ExitStack() as stack:
        servers = []
        for config in configs:
            what = "python -m app.serve" if config.service else f"uvicorn {config.app}"
            print(f"  starting {config.name}: {what} {config.env or ''}", file=sys.stderr, flush=True)
            server = stack.enter_context(running_server(config, server_cpu, cases[0]))
            check_replies(server, cases)
            servers.append(server)
        half = math.ceil(args.duration / 2)
        for payload in cases:
            if args.warmup:
                for server in servers:
                    wrk(server, payload, args.connections, args.warmup, client_cpu, workdir)
            for server in [*servers, *reversed(servers)]:  # mirrored halves: a steady drift cancels out
                run = wrk(server, payload, args.connections, half, client_cpu, workdir)
                runs.append(run)
                print(
                    f"  {server.config.name:<21} {payload.name} -c{args.connections}: {run.requests_per_s:.0f} req/s, "
                    f"p50 {run.p50_ms:.3f} ms, p99 {run.p99_ms:.3f} ms, batch {run.mean_batch_size or 0:.1f}",
                    file=sys.stderr,
                    flush=True,
                )
            for server in servers if c1_duration else []:
                run = wrk(server, payload, 1, c1_duration, client_cpu, workdir)
                runs.append(run)
                print(
                    f"  {server.config.name:<21} {payload.name} -c1: {run.requests_per_s:.0f} req/s, "
                    f"p50 {run.p50_ms:.3f} ms",
                    file=sys.stderr,
                    flush=True,
                )
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed", file=sys.stderr)
        return 2
    c1_duration = args.c1_duration
    service_env = {f"TORCHFN_{name.upper()}": value for name, _, value in (s.partition("=") for s in args.set)}
    known = {config.name: config for config in server_configs()}
    wanted = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown or not wanted:
        print(f"unknown servers in --configs {args.configs!r}: {unknown}", file=sys.stderr)
        return 2
    configs = [
        ServerConfig(config.name, config.app, {**config.env, **service_env}, True) if config.service else config
        for config in (known[name] for name in wanted)
    ]
    server_cpu, client_cpu = choose_cpus()
    if server_cpu is None:
        print("warning: fewer than two CPUs (or no taskset): server and wrk are not pinned", file=sys.stderr)
    elif client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})  # keep this driver off the server's core too
    cases = payloads()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        workdir = Path(tmp)
        for round_index in range(args.rounds):
            print(f"# round {round_index + 1}/{args.rounds}", file=sys.stderr, flush=True)
            measured = measure_round(configs, cases, args, c1_duration, server_cpu, client_cpu, workdir)
            for run in measured:
                run.round = round_index
            runs.extend(measured)
    print()
    cells = summarize(runs, configs, cases)
    throughput, lone = print_report(runs, cells, args.connections)
    report = {
        "command": [sys.executable, "-m", "bench.throughput", *(sys.argv[1:] if argv is None else argv)],
        "settings": {
            "duration_s": args.duration,
            "c1_duration_s": c1_duration,
            "connections": args.connections,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "server_cpu": server_cpu,
            "wrk_cpu": client_cpu,
            "service_env": service_env,
            "configs": [asdict(config) for config in configs],
            "payloads": {p.name: {"path": p.path, "body_bytes": len(p.body)} for p in cases},
        },
        "machine": machine(),
        "cells": [asdict(cell) for cell in cells],
        "runs": [asdict(run) for run in runs],
        "throughput_ratios": throughput,
        "targets": {name: {"value": target, "sense": sense} for name, (target, sense) in TARGETS.items()},
        "lone_request": lone,
    }
    write_results(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
