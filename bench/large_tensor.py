"""Side-by-side benchmark: a 1M-element relu through the real server against the same work in-process.

Run with ``.venv/bin/python -m bench.large_tensor`` (``make bench``). It starts
``uvicorn app.main:app`` as a subprocess (pinned to one core; this process is pinned to another),
then, for the JSON-list form and for the base64 form of the same float32 tensor, alternates:

* service:    ``POST /activate`` with the prepared body bytes on a keep-alive ``httpx.Client``,
              until the whole reply has been read as bytes. The client-side parse of the reply
              (``orjson.loads``) is NOT included; it is timed apart and reported as ``client parse``.
* in-process: the bare work on the same body bytes, in this process, producing the same reply bytes,
              by default on the server's core (idle meanwhile; ``--in-process-cpu client`` to change):
              JSON:   orjson.loads(body) + numpy.asarray + torch.from_numpy + cast to float32 + relu
                      + orjson.dumps(reply dict, OPT_SERIALIZE_NUMPY);
              base64: orjson.loads(body) + base64 decode + numpy.frombuffer + torch.from_numpy + relu
                      + base64 encode + orjson.dumps(reply dict).
              Neither includes parsing the reply it produced, just as the service timing does not.

It also reads the server's VmRSS once idle (after small warm-up requests) and its VmHWM (peak RSS)
over the 1M requests of each form. Figures go to stdout and to ``bench/results/large_tensor.json``.
The exit status is non-zero only on errors (server failing, wrong replies), never on the ratios.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
import numpy as np
import orjson
import torch
from numpy.typing import NDArray

from bench.machine import choose_cpus, free_port, grpc_port_env, server_command, write_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "large_tensor.json"
MIB = 1024 * 1024
READY_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 300.0
JSON_HEADERS = {"content-type": "application/json"}

warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


# ----------------------------------------------------------------------------- the server


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: TextIO
    pinned_cpu: int | None

    @property
    def pid(self) -> int:
        return self.process.pid

    def status_kib(self, key: str) -> int:
        """A ``/proc/<pid>/status`` field in KiB (VmRSS, VmHWM)."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise RuntimeError(f"{key} not found in /proc/{self.pid}/status")

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False where not allowed."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w", encoding="ascii") as clear_refs:
                clear_refs.write("5")
        except OSError:
            return False
        return True

    def log_text(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()


@contextlib.contextmanager
def running_server(server_cpu: int | None, torch_threads: int | None) -> Iterator[Server]:
    port = free_port()
    command = server_command("app.main:app", port, server_cpu)
    env = {**os.environ, **grpc_port_env()}
    if torch_threads is not None:
        env.setdefault("TORCHFN_TORCH_THREADS", str(torch_threads))
    with tempfile.TemporaryFile("w+", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        server = Server(process, f"http://127.0.0.1:{port}", log, server_cpu)
        try:
            wait_ready(server)
            yield server
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=15)


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"the server exited with {server.process.returncode}:\n{server.log_text()}")
            with contextlib.suppress(httpx.TransportError):
                if client.get("/readyz").status_code == 200:
                    return
            time.sleep(0.1)
    raise RuntimeError(f"the server was not ready within {READY_TIMEOUT_S:.0f} s:\n{server.log_text()}")


# ----------------------------------------------------------------------------- the work


def json_body(values: NDArray[np.float32]) -> bytes:
    return orjson.dumps({"function": "relu", "input": values}, option=orjson.OPT_SERIALIZE_NUMPY)


def base64_body(values: NDArray[np.float32]) -> bytes:
    data = base64.b64encode(values.astype("<f4").tobytes()).decode("ascii")
    tensor = {"shape": list(values.shape), "dtype": "float32", "data": data}
    return orjson.dumps({"function": "relu", "input": tensor, "encoding": "base64"})


def in_process_json(body: bytes) -> bytes:
    """The bare work behind a JSON-list relu: parse, array, tensor, relu, serialise the reply."""
    request = orjson.loads(body)
    source = torch.from_numpy(np.asarray(request["input"]))
    output = torch.relu(source.to(torch.float32)).numpy()
    reply = {"function": "relu", "output": output, "grad": None, "shape": list(output.shape), "dtype": "float32"}
    return orjson.dumps(reply, option=orjson.OPT_SERIALIZE_NUMPY)


def in_process_base64(body: bytes) -> bytes:
    """The bare work behind a base64 relu: parse, decode, array, relu, encode, serialise the reply."""
    request = orjson.loads(body)
    tensor = request["input"]
    raw = binascii.a2b_base64(tensor["data"], strict_mode=True)
    values = np.frombuffer(raw, dtype="<f4").reshape(tensor["shape"])
    output = torch.relu(torch.from_numpy(values)).numpy()
    data = base64.b64encode(output.tobytes()).decode("ascii")
    encoded = {"shape": list(output.shape), "dtype": "float32", "data": data}
    reply = {"function": "relu", "output": encoded, "grad": None, "shape": list(output.shape), "dtype": "float32"}
    return orjson.dumps(reply)


def output_values(reply: bytes) -> NDArray[np.float32]:
    """The output tensor of a reply in either form, for checking the two sides agree."""
    output = orjson.loads(reply)["output"]
    if isinstance(output, dict):
        return np.frombuffer(base64.b64decode(output["data"]), dtype="<f4").astype(np.float32)
    return np.asarray(output, dtype=np.float32)


# ----------------------------------------------------------------------------- measuring


@dataclass
class Case:
    name: str
    body: bytes
    in_process: Callable[[bytes], bytes]
    service_ms: list[float] = field(default_factory=list)
    in_process_ms: list[float] = field(default_factory=list)
    client_parse_ms: list[float] = field(default_factory=list)
    server_timing_ms: dict[str, list[float]] = field(default_factory=dict)
    reply_bytes: int = 0
    identical_bytes: bool = False
    peak_kib: int = 0
    peak_reset: bool = False
    rss_after_kib: int = 0


def post(client: httpx.Client, body: bytes, timings: dict[str, list[float]] | None = None) -> bytes:
    """The reply bytes; the durations of its ``Server-Timing`` header, if any, go to ``timings``."""
    response = client.post("/activate", content=body, headers=JSON_HEADERS)
    if response.status_code != 200:
        raise RuntimeError(f"POST /activate answered {response.status_code}: {response.text[:500]}")
    if timings is not None:
        for name, duration in server_timing(response.headers.get("server-timing", "")).items():
            timings.setdefault(name, []).append(duration)
    return response.content


def server_timing(header: str) -> dict[str, float]:
    """``name;dur=1.5, other;desc="x"`` as {"name": 1.5}: the entries that carry a duration (ms)."""
    durations: dict[str, float] = {}
    for entry in header.split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "dur" and name:
                with contextlib.suppress(ValueError):
                    durations[name] = float(value.strip().strip('"'))
    return durations


def timed(fn: Callable[[], bytes]) -> tuple[float, bytes]:
    start = time.perf_counter_ns()
    out = fn()
    return (time.perf_counter_ns() - start) / 1e6, out


def check_agreement(case: Case, service_reply: bytes, local_reply: bytes) -> None:
    case.reply_bytes = len(service_reply)
    case.identical_bytes = service_reply == local_reply
    if not case.identical_bytes and not np.array_equal(output_values(service_reply), output_values(local_reply)):
        raise RuntimeError(f"{case.name}: the service's output differs from the in-process output")


@dataclass(frozen=True)
class Cpus:
    """Where each side runs: the client's requests, and the in-process work (None: not pinned)."""

    client: int | None
    in_process: int | None


@contextlib.contextmanager
def on_cpu(cpu: int | None, back_to: int | None) -> Iterator[None]:
    """Run the block pinned to ``cpu``, then go back to ``back_to`` (outside any timed region)."""
    if cpu is not None and cpu != back_to:
        os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        if back_to is not None and cpu != back_to:
            os.sched_setaffinity(0, {back_to})


def measure(client: httpx.Client, server: Server, case: Case, cpus: Cpus, warmups: int, repeats: int) -> None:
    case.peak_reset = server.reset_peak()
    for _ in range(warmups):
        service_reply = post(client, case.body)
        with on_cpu(cpus.in_process, cpus.client):
            local_reply = case.in_process(case.body)
    check_agreement(case, service_reply, local_reply)
    del service_reply, local_reply
    for rep in range(repeats):
        gc.collect()
        # Alternate which side goes first, so neither always runs on a warmer cache.
        order = ("service", "in_process") if rep % 2 == 0 else ("in_process", "service")
        for side in order:
            if side == "service":
                elapsed, reply = timed(lambda: post(client, case.body, case.server_timing_ms))
                case.service_ms.append(elapsed)
                start = time.perf_counter_ns()
                orjson.loads(reply)
                case.client_parse_ms.append((time.perf_counter_ns() - start) / 1e6)
            else:
                with on_cpu(cpus.in_process, cpus.client):
                    elapsed, reply = timed(lambda: case.in_process(case.body))
                case.in_process_ms.append(elapsed)
            del reply
    case.peak_kib = server.status_kib("VmHWM")
    case.rss_after_kib = server.status_kib("VmRSS")


def system_busy_s() -> float:
    """CPU seconds all cores spent busy since boot: user, nice, system and steal (by the hypervisor).

    irq and softirq time is left out: the loopback traffic of the benchmark itself lands there.
    """
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(f) for f in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = fields
    return (user + nice + system + steal) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Noise:
    """CPU time other processes used while measuring: a busy machine makes every figure unreliable."""

    server_pid: int
    wall: float = 0.0
    busy: float = 0.0
    ours: float = 0.0

    def __enter__(self) -> Noise:
        self.wall, self.busy = time.monotonic(), system_busy_s()
        self.ours = process_cpu_s(os.getpid()) + process_cpu_s(self.server_pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self.wall
        with contextlib.suppress(OSError):  # the server may have died: keep the original error
            self.busy = system_busy_s() - self.busy
            self.ours = process_cpu_s(os.getpid()) + process_cpu_s(self.server_pid) - self.ours

    def report(self) -> dict[str, float]:
        other = max(0.0, self.busy - self.ours)
        cores = os.cpu_count() or 1
        return {
            "wall_s": self.wall,
            "benchmark_cpu_s": self.ours,
            "other_cpu_s": other,
            "other_share_of_machine": other / (self.wall * cores),
        }


def warm_up_small(client: httpx.Client, rng: np.random.Generator, count: int = 50) -> None:
    small = rng.standard_normal(1000, dtype=np.float32)
    for body in (json_body(small), base64_body(small)):
        for _ in range(count):
            post(client, body)


# ----------------------------------------------------------------------------- reporting


def p90(samples: list[float]) -> float:
    return float(np.percentile(samples, 90))


def summary(case: Case) -> dict[str, Any]:
    service = statistics.median(case.service_ms)
    local = statistics.median(case.in_process_ms)
    return {
        "request_bytes": len(case.body),
        "reply_bytes": case.reply_bytes,
        "reply_bytes_identical_to_in_process": case.identical_bytes,
        "service_ms": {"median": service, "p90": p90(case.service_ms), "samples": case.service_ms},
        "in_process_ms": {"median": local, "p90": p90(case.in_process_ms), "samples": case.in_process_ms},
        "client_parse_ms": {
            "median": statistics.median(case.client_parse_ms),
            "p90": p90(case.client_parse_ms),
            "samples": case.client_parse_ms,
        },
        "ratio_of_medians": service / local,
        "server_timing_ms": {
            name: {"median": statistics.median(samples), "p90": p90(samples), "samples": samples}
            for name, samples in case.server_timing_ms.items()
        },
        "ratio_incl_client_parse": (service + statistics.median(case.client_parse_ms)) / local,
        "server_peak_rss_mib": case.peak_kib / 1024,
        "server_peak_rss_reset_before": case.peak_reset,
        "server_rss_after_mib": case.rss_after_kib / 1024,
    }


def print_table(report: dict[str, Any]) -> None:
    config = report["config"]
    print()
    print(
        f"relu of {config['elements']:,} float32 elements; {config['repeats']} repeats after "
        f"{config['warmups']} warm-ups; cpu: server {config['server_cpu']}, client {config['client_cpu']}, "
        f"in-process {config['in_process_cpu']}; torch threads: server {config['server_torch_threads']}, "
        f"in-process {config['client_torch_threads']}"
    )
    print("service    = POST /activate with the prepared body bytes + read the whole reply (keep-alive httpx)")
    print("in-process = orjson.loads(body) + asarray/frombuffer + torch relu + encode + orjson.dumps(reply)")
    print("             (the same reply bytes as the server's; not parsed either)")
    print("client parse = orjson.loads(reply) after a service call (not in either column; shown apart)")
    print()
    header = (
        f"{'form':<7} {'request':>9} {'reply':>9} {'service med':>12} {'p90':>8} "
        f"{'in-proc med':>12} {'p90':>8} {'ratio':>6} {'client parse':>13} {'ratio+parse':>12}"
    )
    print(header)
    print("-" * len(header))
    for name, row in report["cases"].items():
        print(
            f"{name:<7} {row['request_bytes'] / MIB:>7.1f}Mi {row['reply_bytes'] / MIB:>7.1f}Mi "
            f"{row['service_ms']['median']:>9.1f} ms {row['service_ms']['p90']:>5.1f} ms "
            f"{row['in_process_ms']['median']:>9.1f} ms {row['in_process_ms']['p90']:>5.1f} ms "
            f"{row['ratio_of_medians']:>5.2f}x {row['client_parse_ms']['median']:>10.1f} ms "
            f"{row['ratio_incl_client_parse']:>11.2f}x"
        )
    for name, row in report["cases"].items():
        if row["server_timing_ms"]:
            parts = ", ".join(f"{key} {value['median']:.1f} ms" for key, value in row["server_timing_ms"].items())
            print(f"{name}: the server's own Server-Timing header (medians, part of the service time): {parts}")
    rss = report["server_rss"]
    print()
    print(f"server RSS idle (VmRSS after small warm-up requests): {rss['idle_mib']:.1f} MiB")
    for name, row in report["cases"].items():
        print(
            f"server peak RSS over the {name} {config['elements']:,}-element requests (VmHWM): "
            f"{row['server_peak_rss_mib']:.1f} MiB "
            f"= {row['server_peak_rss_mib'] / rss['idle_mib']:.2f}x idle "
            f"(+{row['server_peak_rss_mib'] - rss['idle_mib']:.1f} MiB); "
            f"VmRSS afterwards {row['server_rss_after_mib']:.1f} MiB"
            + ("" if row["server_peak_rss_reset_before"] else " [VmHWM not resettable: peak since start]")
        )
    other = report["other_processes"]
    print(
        f"other processes used {other['other_cpu_s']:.1f} CPU-s during the {other['wall_s']:.0f} s of measuring "
        f"({100 * other['other_share_of_machine']:.0f}% of the machine)"
        + (
            "  ** busy machine: the timings are unreliable, rerun when it is idle **"
            if other["other_share_of_machine"] > 0.1
            else ""
        )
    )
    print(f"figures written to {report['output']}")


# ----------------------------------------------------------------------------- main


def size_arguments(parser: argparse.ArgumentParser, repeats: int, results: Path) -> None:
    """The options every large-tensor benchmark takes."""
    parser.add_argument("--elements", type=int, default=1_000_000, help="tensor elements (default 1,000,000)")
    parser.add_argument("--repeats", type=int, default=repeats, help=f"timed runs of each side (default {repeats})")
    parser.add_argument("--warmups", type=int, default=3, help="untimed runs of each side first (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=results, help=f"JSON results file (default {results})")


def run_config(args: argparse.Namespace, server_cpu: int | None, client_cpu: int | None, cpus: Cpus) -> dict[str, Any]:
    """What a large-tensor run's report records of its options and machine."""
    return {
        "elements": args.elements,
        "repeats": args.repeats,
        "warmups": args.warmups,
        "seed": args.seed,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "in_process_cpu": cpus.in_process,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
    }


def checked_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.elements < 1 or args.repeats < 1 or args.warmups < 1:
        parser.error("--elements, --repeats and --warmups must be at least 1")
    return args


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    size_arguments(parser, repeats=15, results=RESULTS)
    parser.add_argument(
        "--in-process-cpu",
        choices=("server", "client"),
        default="server",
        help="core for the in-process work: the server's (default; it idles meanwhile, so both sides compute "
        "on the same core) or the client's",
    )
    return checked_args(parser, argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    server_cpu, client_cpu = choose_cpus()
    torch_threads = 1 if server_cpu is not None else None
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    cpus = Cpus(client_cpu, server_cpu if args.in_process_cpu == "server" else client_cpu)
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)

    rng = np.random.default_rng(args.seed)
    values = rng.standard_normal(args.elements, dtype=np.float32)
    cases = [
        # base64 first: where VmHWM cannot be reset, the JSON peak (the larger) still reads right.
        Case("base64", base64_body(values), in_process_base64),
        Case("json", json_body(values), in_process_json),
    ]
    del values

    with (
        running_server(server_cpu, torch_threads) as server,
        httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as client,
    ):
        ready = client.get("/readyz").json()
        warm_up_small(client, rng)
        idle_kib = server.status_kib("VmRSS")
        with Noise(server.pid) as noise:
            for case in cases:
                print(f"measuring {case.name}: {len(case.body) / MIB:.1f} MiB body ...", file=sys.stderr, flush=True)
                measure(client, server, case, cpus, args.warmups, args.repeats)

    return {
        "config": {
            **run_config(args, server_cpu, client_cpu, cpus),
            "server_torch_threads": os.environ.get("TORCHFN_TORCH_THREADS") or torch_threads,
            "client_torch_threads": torch.get_num_threads(),
            "server_device": ready.get("device"),
            "numpy": np.__version__,
            "orjson": orjson.__version__,
            "httpx": httpx.__version__,
        },
        "definitions": {
            "service_ms": "POST /activate with the prepared body bytes on a keep-alive httpx.Client, "
            "until the whole reply is read as bytes; excludes parsing the reply",
            "in_process_ms": "in the client process, on in_process_cpu: orjson.loads(body) + numpy.asarray (JSON) "
            "or base64 decode + numpy.frombuffer (base64) + torch.from_numpy + relu (float32) + encode + "
            "orjson.dumps(reply dict); produces the same reply bytes; excludes parsing the reply",
            "client_parse_ms": "orjson.loads(reply) on the client after each service call; in neither column",
            "server_timing_ms": "durations the server reports in its Server-Timing header, when it sends one",
            "ratio_of_medians": "median service_ms / median in_process_ms",
            "ratio_incl_client_parse": "(median service_ms + median client_parse_ms) / median in_process_ms",
            "other_processes": "CPU time the rest of the machine used while measuring (/proc/stat busy time minus "
            "this process and the server); a large share means noisy figures",
            "server_rss": "VmRSS of the server idle after small warm-up requests; VmHWM over each form's "
            "1M requests (reset with /proc/<pid>/clear_refs before each form)",
        },
        "cases": {case.name: summary(case) for case in reversed(cases)},
        "server_rss": {"idle_mib": idle_kib / 1024},
        "other_processes": noise.report(),
        "output": str(args.output),
    }


def report_main(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace], dict[str, Any]],
    print_table: Callable[[dict[str, Any]], None],
) -> int:
    """Run a benchmark, write its JSON report and print its table; 1 if it failed."""
    try:
        report = run(args)
    except (RuntimeError, OSError, httpx.HTTPError) as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    write_results(args.output, report)
    print_table(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    return report_main(parse_args(argv), run, print_table)


if __name__ == "__main__":
    sys.exit(main())
