"""What tracing costs: requests/s of relu on 256 floats through ``/activate`` at 64 connections,
tracing on (every request sampled) against tracing off.

Run with ``.venv/bin/python -m bench.tracing`` (``--help`` for the options). Two servers, each the
server command (``python -m app.serve``, default settings: metrics and access log on) pinned to the
same core, ``TORCHFN_TORCH_THREADS=1``; ``wrk`` pinned to the other core, as in
``bench.throughput`` (whose pieces it uses):

* ``tracing-off``: ``TORCHFN_TRACING=false``;
* ``tracing-on``: ``TORCHFN_TRACING=true``, ``OTEL_TRACES_SAMPLER=always_on``, and where the spans go:
  - ``--exporter otlp`` (the default): OTLP over HTTP (``http/protobuf``) to a local receiver
    that the benchmark starts (``bench.otlp_receiver``, on wrk's core), which counts the spans it
    decodes: the whole cost, the SDK's protobuf encoding of every span included (it runs in the
    server's process, on its core);
  - ``--exporter discard``: the SDK's batch processor to an exporter that discards the spans
    (``bench.traced_serve``): the cost up to the exporter, what the service's own code and the
    SDK's span pipeline add to the request path.

Every request carries a ``traceparent`` (a caller's trace, as behind a traced proxy or client),
unless ``--no-traceparent``. Each round starts both servers, checks a reply, warms each up, then
measures them in two halves run in mirrored order (off, on, on, off), so that a steady drift of
the machine weighs on both alike; the round's ratio is on / off from the requests of both halves,
and the report gives the median ratio and its range, and beside it the ratio of the server's CPU
time per request (off / on), which other processes on a shared machine disturb far less. The
target: 0.85. A benchmark, not a test: the exit status is non-zero only on errors (a server
failing, a wrong reply, a non-2xx status).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from bench.machine import choose_cpus, free_port, pinned, stop, write_results
from bench.throughput import Run, Server, ServerConfig, check_replies, payloads, wait_ready, wrk

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "tracing.json"
TARGET = 0.85
"""Tracing on (every request sampled) keeps at least this share of the throughput with it off."""
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
STOP_TIMEOUT_S = 15.0
SPANS_PER_REQUEST = 6
"""A relu request's spans: server, read body, decode, queue, compute, encode (and a batch's own)."""


def configs(exporter: str, receiver: str | None) -> list[ServerConfig]:
    on = {"TORCHFN_TRACING": "true", "OTEL_TRACES_SAMPLER": "always_on", "OTEL_SERVICE_NAME": "torchfn-bench"}
    if exporter == "otlp":
        assert receiver is not None
        on |= {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver,
        }
        command = "app.serve"
    else:
        command = "bench.traced_serve"
    return [
        ServerConfig("tracing-off", "app.serve", {"TORCHFN_TRACING": "false"}, service=True),
        ServerConfig("tracing-on", command, on, service=True),
    ]


@contextlib.contextmanager
def running_server(config: ServerConfig, cpu: int | None, log: TextIO) -> Iterator[Server]:
    """``python -m <config.app>`` (the server command, or the benchmark's variant of it) on a free
    loopback port, pinned to ``cpu``."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TORCHFN_", "OTEL_"))}
    env |= {
        "TORCHFN_HOST": "127.0.0.1",
        "TORCHFN_PORT": str(port),
        "TORCHFN_TORCH_THREADS": "1",
        "TORCHFN_GRPC_PORT": "0",
        "OMP_NUM_THREADS": "1",
        **config.env,
    }
    command = pinned([sys.executable, "-m", config.app], cpu)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(config, process, f"http://127.0.0.1:{port}", log)
    try:
        wait_ready(server, payloads()[0])
        yield server
    finally:
        stop(process, STOP_TIMEOUT_S)


@contextlib.contextmanager
def running_receiver(cpu: int | None) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The OTLP/HTTP receiver, as a process; yields its endpoint and the process (whose last line,
    once stopped, counts the spans it received)."""
    port = free_port()
    command = pinned([sys.executable, "-m", "bench.otlp_receiver", "--port", str(port)], cpu)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        json.loads(process.stdout.readline())  # listening
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop(process, STOP_TIMEOUT_S)


def measure_round(
    args: argparse.Namespace, server_cpu: int | None, client_cpu: int | None, workdir: Path
) -> dict[str, Any]:
    relu = payloads()[0]
    half = max(1, math.ceil(args.duration / 2))
    with contextlib.ExitStack() as stack:
        receiver, receiver_process = (None, None)
        if args.exporter == "otlp":
            receiver, receiver_process = stack.enter_context(running_receiver(client_cpu))
        servers = []
        for config in configs(args.exporter, receiver):
            log = stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8"))
            server = stack.enter_context(running_server(config, server_cpu, log))
            check_replies(server, [relu])
            servers.append(server)
        if args.warmup:
            for server in servers:
                wrk(server, relu, args.connections, args.warmup, client_cpu, workdir)
        runs: list[Run] = []
        for server in [*servers, *reversed(servers)]:
            run = wrk(server, relu, args.connections, half, client_cpu, workdir)
            runs.append(run)
            print(
                f"  {server.config.name:<12} {run.requests_per_s:8.0f} req/s  p50 {run.p50_ms:.3f} ms  "
                f"p99 {run.p99_ms:.3f} ms  batch {run.mean_batch_size or 0:.1f}  server cpu {run.server_cpu_share:.2f}",
                file=sys.stderr,
                flush=True,
            )
        traced_requests = sum(run.requests for run in runs if run.config == "tracing-on")
        spans = None
        if receiver_process is not None:
            time.sleep(6.0)  # the batch processor exports every 5 s at least
            stop(receiver_process, STOP_TIMEOUT_S)
            assert receiver_process.stdout is not None
            spans = json.loads(receiver_process.stdout.read().strip().splitlines()[-1])["spans_received"]
    rate = {
        name: sum(run.requests for run in runs if run.config == name)
        / sum(run.duration_s for run in runs if run.config == name)
        for name in ("tracing-off", "tracing-on")
    }
    cpu = {  # server CPU per request (µs): what a core of its own would give, whatever else runs
        name: 1e6
        * sum(run.server_cpu_share * run.duration_s for run in runs if run.config == name)
        / sum(run.requests for run in runs if run.config == name)
        for name in ("tracing-off", "tracing-on")
    }
    return {
        "runs": [asdict(run) for run in runs],
        "requests_per_s": rate,
        "cpu_us_per_request": cpu,
        "cpu_ratio": cpu["tracing-off"] / cpu["tracing-on"],
        "ratio": rate["tracing-on"] / rate["tracing-off"],
        "traced_requests": traced_requests,
        "spans_received": spans,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--exporter", choices=["otlp", "discard"], default="otlp", help="where spans go (default otlp)")
    parser.add_argument("--duration", type=int, default=4, help="seconds each server is measured per round (default 4)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load per server (default 1)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections (default 64)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, servers restarted each (default 3)")
    parser.add_argument("--no-traceparent", action="store_true", help="requests carry no traceparent")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.rounds < 1 or args.connections < 1 or args.warmup < 0:
        parser.error("--duration, --rounds and --connections must be positive, --warmup not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed", file=sys.stderr)
        return 2
    server_cpu, client_cpu = choose_cpus()
    if server_cpu is None:
        print("warning: fewer than two CPUs (or no taskset): server and wrk are not pinned", file=sys.stderr)
    elif client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    if not args.no_traceparent:
        os.environ["BENCH_TRACEPARENT"] = TRACEPARENT  # read by bench/post.lua
    rounds = []
    with tempfile.TemporaryDirectory(prefix="bench-tracing-") as tmp:
        for index in range(args.rounds):
            print(f"# round {index + 1}/{args.rounds} (exporter {args.exporter})", file=sys.stderr, flush=True)
            rounds.append(measure_round(args, server_cpu, client_cpu, Path(tmp)))
    ratios = [r["ratio"] for r in rounds]
    off = statistics.median(r["requests_per_s"]["tracing-off"] for r in rounds)
    on = statistics.median(r["requests_per_s"]["tracing-on"] for r in rounds)
    median = statistics.median(ratios)
    verdict = "meets" if median >= TARGET else "BELOW"
    print(f"\nrelu256 -c{args.connections}, exporter {args.exporter}, {args.rounds} rounds (medians):")
    print(f"  tracing off {off:8.0f} req/s")
    print(f"  tracing on  {on:8.0f} req/s")
    print(f"  on / off = {median:.3f} [{min(ratios):.3f}..{max(ratios):.3f}]  ({verdict} the target {TARGET})")
    cpu_ratios = [r["cpu_ratio"] for r in rounds]
    cpu_off = statistics.median(r["cpu_us_per_request"]["tracing-off"] for r in rounds)
    cpu_on = statistics.median(r["cpu_us_per_request"]["tracing-on"] for r in rounds)
    print(
        f"  server CPU per request: off {cpu_off:.0f} us, on {cpu_on:.0f} us; off / on = "
        f"{statistics.median(cpu_ratios):.3f} [{min(cpu_ratios):.3f}..{max(cpu_ratios):.3f}]"
        " (the throughput ratio on a core of its own)"
    )
    for index, entry in enumerate(rounds):
        if entry["spans_received"] is not None:
            expected = entry["traced_requests"] * SPANS_PER_REQUEST
            print(
                f"  round {index + 1}: {entry['spans_received']} spans received for {entry['traced_requests']} "
                f"traced requests (~{expected} of their own, and their batches')"
            )
    report = {
        "command": [sys.executable, "-m", "bench.tracing", *(sys.argv[1:] if argv is None else argv)],
        "settings": vars(args) | {"output": str(args.output), "server_cpu": server_cpu, "wrk_cpu": client_cpu},
        "rounds": rounds,
        "ratio_median": median,
        "ratio_range": [min(ratios), max(ratios)],
        "cpu_ratio_median": statistics.median(r["cpu_ratio"] for r in rounds),
        "target": TARGET,
    }
    write_results(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
