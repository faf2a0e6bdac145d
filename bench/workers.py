"""Throughput of small requests with one server process and with two (``TORCHFN_WORKERS``), on the
same cores.

Run with ``.venv/bin/python -m bench.workers`` (``--help`` for the options). Each configuration is
the server command itself, ``python -m app.serve`` (with several workers, uvicorn's supervisor and
its worker processes sharing the port), pinned with ``taskset`` to the cores given (default: the
first two this process may use), each worker sizing torch's threads to its share of them as in
production. ``wrk`` drives it from the same cores: on a two-core machine there is no third one for
the load generator, so its CPU share is measured and reported next to the server's, and the
figures are what two cores give the server and its client together.

Each round starts both servers (an idle server uses no CPU), checks one reply of each payload
(``bench/throughput.py``'s: relu on 256 floats through ``/activate`` and through
``/v2/models/relu/infer``, cross_entropy on 32x10 through ``/loss``), then for each payload warms
both up and measures them at ``--connections`` for ``--duration`` seconds each, in two halves run
in mirrored order (1, 2, 2, 1 workers), so that a machine's drift weighs on both alike. Each round
yields its own ratio of requests/s (2 workers over 1, from both halves); the report gives the
median of the rounds and their range, the requests/s, latencies and the CPU shares (server
processes together, wrk, and whatever else ran).

Results go to ``bench/results/workers.json``. A benchmark, not a test: the exit status is
non-zero only on errors (a server failing, a wrong reply, a non-2xx status or a socket error).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.machine import free_port, grpc_port_env, stop, write_results
from bench.throughput import (
    STOP_TIMEOUT_S,
    Payload,
    Run,
    Server,
    ServerConfig,
    check_replies,
    machine,
    payloads,
    wait_ready,
    wrk,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "workers.json"
APP = "app.main:app"
"""What ``python -m app.serve`` serves (recorded with the configuration; the command is fixed)."""


def server_configs(workers: list[int]) -> list[ServerConfig]:
    """One configuration per worker count, named ``1-worker``, ``2-workers``..."""
    return [
        ServerConfig(f"{count}-worker{'s' if count > 1 else ''}", APP, {"TORCHFN_WORKERS": str(count)}, service=True)
        for count in workers
    ]


def taskset_cpus(cpus: list[int]) -> str:
    return ",".join(str(cpu) for cpu in cpus)


@contextlib.contextmanager
def running_server(config: ServerConfig, cpus: list[int] | None, probe: Payload) -> Iterator[Server]:
    """``python -m app.serve`` as the container runs it, on loopback, pinned to ``cpus``."""
    port = free_port()
    command = [sys.executable, "-m", "app.serve"]
    if cpus:
        command = ["taskset", "-c", taskset_cpus(cpus), *command]
    env = {key: value for key, value in os.environ.items() if not key.startswith("TORCHFN_")}
    env.update(
        {
            "TORCHFN_HOST": "127.0.0.1",
            "TORCHFN_PORT": str(port),
            "TORCHFN_ACCESS_LOG": "false",
            "TORCHFN_LOG_LEVEL": "warning",
            **grpc_port_env(),
            **config.env,
        }
    )
    with tempfile.TemporaryFile("w+", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        server = Server(config, process, f"http://127.0.0.1:{port}", log)
        try:
            wait_ready(server, probe)
            yield server
        finally:
            stop(process, STOP_TIMEOUT_S)


def measure_round(
    configs: list[ServerConfig], cases: list[Payload], args: argparse.Namespace, cpus: list[int] | None, workdir: Path
) -> list[Run]:
    runs = []
    with contextlib.ExitStack() as stack:
        servers = []
        for config in configs:
            print(f"  starting {config.name}", file=sys.stderr, flush=True)
            server = stack.enter_context(running_server(config, cpus, cases[0]))
            check_replies(server, cases)
            servers.append(server)
        half = math.ceil(args.duration / 2)
        for payload in cases:
            if args.warmup:
                for server in servers:
                    wrk(server, payload, args.connections, args.warmup, None, workdir)
            for server in [*servers, *reversed(servers)]:  # mirrored halves: a steady drift cancels out
                run = wrk(server, payload, args.connections, half, None, workdir)
                runs.append(run)
                print(
                    f"  {server.config.name:<10} {payload.name}: {run.requests_per_s:.0f} req/s, "
                    f"p50 {run.p50_ms:.3f} ms, p99 {run.p99_ms:.3f} ms, "
                    f"server {run.server_cpu_share:.2f} cores, wrk {run.wrk_cpu_share:.2f}",
                    file=sys.stderr,
                    flush=True,
                )
    return runs


def summary(runs: list[Run], configs: list[ServerConfig], cases: list[Payload]) -> dict[str, Any]:
    """Per payload and configuration: requests/s over both halves of each round (median, range),
    latencies and CPU shares (medians); per payload, the rounds' ratios to the first configuration."""
    out: dict[str, Any] = {}
    base = configs[0].name
    for payload in cases:
        requests: dict[tuple[int, str], int] = defaultdict(int)
        seconds: dict[tuple[int, str], float] = defaultdict(float)
        for run in runs:
            if run.payload == payload.name:
                requests[run.round, run.config] += run.requests
                seconds[run.round, run.config] += run.duration_s
        rounds = sorted({index for index, _ in requests})
        entry: dict[str, Any] = {}
        for config in configs:
            group = [run for run in runs if (run.payload, run.config) == (payload.name, config.name)]
            per_round = [requests[index, config.name] / seconds[index, config.name] for index in rounds]
            entry[config.name] = {
                "requests_per_s": statistics.median(per_round),
                "requests_per_s_min": min(per_round),
                "requests_per_s_max": max(per_round),
                "p50_ms": statistics.median(run.p50_ms for run in group),
                "p99_ms": statistics.median(run.p99_ms for run in group),
                "server_cpu_share": statistics.median(run.server_cpu_share for run in group),
                "wrk_cpu_share": statistics.median(run.wrk_cpu_share for run in group),
                "other_cpu_share": max(run.other_cpu_share for run in group),
            }
            if config.name != base:
                ratios = [
                    (requests[index, config.name] / seconds[index, config.name])
                    / (requests[index, base] / seconds[index, base])
                    for index in rounds
                ]
                entry[config.name] |= {
                    f"over_{base}": statistics.median(ratios),
                    f"over_{base}_min": min(ratios),
                    f"over_{base}_max": max(ratios),
                }
        out[payload.name] = entry
    return out


def print_report(report: dict[str, Any], configs: list[ServerConfig], rounds: int, cpus: str) -> None:
    base = configs[0].name
    print(f"server and wrk on cpus {cpus}; medians over {rounds} round(s), [range of the rounds]")
    header = f"{'payload':<10} {'config':<10} {'req/s':>18} {'p50 ms':>8} {'p99 ms':>8} {'server':>7} {'wrk':>5}"
    print(header + f" {'other':>6}  ratio to {base}")
    print("-" * (len(header) + 24))
    for payload, entry in report.items():
        for config in configs:
            cell = entry[config.name]
            spread = f"[{cell['requests_per_s_min']:.0f}..{cell['requests_per_s_max']:.0f}]"
            ratio = ""
            if f"over_{base}" in cell:
                ratio = f"  {cell[f'over_{base}']:.3f} [{cell[f'over_{base}_min']:.3f}..{cell[f'over_{base}_max']:.3f}]"
            print(
                f"{payload:<10} {config.name:<10} {cell['requests_per_s']:>7.0f} {spread:>10} "
                f"{cell['p50_ms']:>8.3f} {cell['p99_ms']:>8.3f} {cell['server_cpu_share']:>7.2f} "
                f"{cell['wrk_cpu_share']:>5.2f} {cell['other_cpu_share']:>6.2f}{ratio}"
            )
    print(
        "(server: cores used by the server's processes together; wrk: by the load generator; other: share of"
        " the machine used by other processes during the run, the most of any run)"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="comma-separated TORCHFN_WORKERS to compare (default 1,2)")
    parser.add_argument(
        "--cpus",
        default=None,
        help="comma-separated CPUs for the servers and wrk (default: the first two this process may use)",
    )
    parser.add_argument(
        "--duration", type=int, default=4, help="seconds each configuration is measured per round, in two halves"
    )
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections (default 64)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load per payload (default 1)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, servers restarted each time (default 5)")
    parser.add_argument("--payloads", default=None, help="comma-separated subset of relu256, ce32x10, relu256v2")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.connections < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--duration, --connections and --rounds must be positive, --warmup not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    counts = [int(value) for value in args.workers.split(",") if value.strip()]
    configs = server_configs(counts)
    cases = payloads()
    if args.payloads:
        wanted = {name.strip() for name in args.payloads.split(",")}
        cases = [case for case in cases if case.name in wanted]
    if not cases:
        print(f"no known payload in --payloads {args.payloads!r}", file=sys.stderr)
        return 2
    available = sorted(os.sched_getaffinity(0))
    cpus = [int(cpu) for cpu in args.cpus.split(",")] if args.cpus else available[:2]
    if shutil.which("taskset") is None:
        print("warning: no taskset: the servers are not pinned", file=sys.stderr)
        cpus = []
    os.sched_setaffinity(0, set(cpus or available))  # this driver, and so wrk, on the same cores
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        for round_index in range(args.rounds):
            print(f"# round {round_index + 1}/{args.rounds}", file=sys.stderr, flush=True)
            for run in measure_round(configs, cases, args, cpus, Path(tmp)):
                run.round = round_index
                runs.append(run)
    print()
    report = summary(runs, configs, cases)
    print_report(report, configs, args.rounds, taskset_cpus(cpus) or "any")
    results = {
        "command": [sys.executable, "-m", "bench.workers", *(sys.argv[1:] if argv is None else argv)],
        "settings": {
            "workers": counts,
            "cpus": cpus,
            "duration_s": args.duration,
            "connections": args.connections,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "payloads": {p.name: {"path": p.path, "body_bytes": len(p.body)} for p in cases},
        },
        "machine": machine(),
        "summary": report,
        "runs": [asdict(run) for run in runs],
    }
    write_results(args.output, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
