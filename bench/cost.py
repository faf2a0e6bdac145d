"""The most expensive request each function admits, computed: worst time and peak memory.

For every function of the catalogue, its worked example is grown to the largest request the
default limits admit (tensor and total element limits, ``max_request_cost`` and the memory
budget of a 2 GiB container), along each of its dimensions in turn (dimensions of equal size grow
together, so that the request stays valid) and along all of them at once. Each such request runs
on the engine, with and without gradients, in every dtype, on the configured device; the report
gives per function the worst time and peak memory measured, beside the estimate the service
admitted it by. The defaults hold when every worst time is under 2 s and every peak under the
budget.

    .venv/bin/python -m bench.cost                      # every function
    .venv/bin/python -m bench.cost --functions ctc_loss multilabel_margin_loss
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import torch

from app.compute.catalogue import CATALOGUE, FunctionSpec
from app.compute.catalogue.cost import ELEMENTWISE
from app.compute.engine import Engine, resolve_device
from app.compute.jobs import Job, build_job
from app.core.allocator import trim_memory
from app.core.cgroup_limits import BUDGET_SHARE, PROCESS_BASELINE, threads_per_worker
from app.core.config import FloatDType, Settings
from app.core.errors import ServiceError
from app.core.limits import TensorLimits
from app.protocols.native.codec import decode_activation, decode_loss
from app.serving.codec import DecodeOptions

DTYPES: tuple[FloatDType, ...] = ("float32", "float64", "float16", "bfloat16")
CONTAINER_LIMIT = 2 * 1024**3
"""The memory limit of the project's compose and Kubernetes files."""
MAX_SCALE = 1 << 24


@dataclass(frozen=True)
class Case:
    function: str
    grown: str
    dtype: FloatDType
    grad: bool
    shapes: dict[str, tuple[int, ...]]
    estimate_s: float
    estimate_mib: float
    seconds: float | None
    peak_mib: float | None
    note: str = ""


def example_job(spec: FunctionSpec, options: DecodeOptions) -> Job:
    body = orjson.dumps({**spec.example, "grad": False})
    decode = decode_activation if spec.kind == "activation" else decode_loss
    return decode(body, options).job


def _grown_shape(shape: tuple[int, ...], size: int | None, scale: int) -> tuple[int, ...]:
    return tuple(d * scale if size is None or d == size else d for d in shape)


def _ctc_worst(arrays: dict[str, np.ndarray]) -> None:
    """Every sequence as long as the grown dimensions allow."""
    arrays["input_lengths"][...] = arrays["log_probs"].shape[0]
    arrays["target_lengths"][...] = arrays["targets"].shape[-1]


def _multilabel_worst(arrays: dict[str, np.ndarray]) -> None:
    """Every class a target of every row (no -1 to end the list early)."""
    target = arrays["target"]
    arrays["target"] = np.broadcast_to(np.arange(target.shape[-1] if target.ndim else 1), target.shape).copy()


WORST_VALUES = {"ctc_loss": _ctc_worst, "multilabel_margin_loss": _multilabel_worst}
"""Where values, not only shapes, drive the cost: the values of the worst case."""


def grow(job: Job, size: int | None, scale: int) -> dict[str, np.ndarray]:
    """The job's arrays with every dimension of ``size`` (all of them when None) times ``scale``,
    their values tiled (class indices stay in range), or the worst values where they matter."""
    arrays = {name: np.resize(arr, _grown_shape(arr.shape, size, scale)) for name, arr in job.arrays.items()}
    worst = WORST_VALUES.get(job.spec.name)
    if worst is not None:
        worst(arrays)
    return arrays


def admitted(
    job: Job, arrays: Mapping[str, np.ndarray], settings: Settings, budget: int, dtype: FloatDType
) -> Job | None:
    """The job on ``arrays`` if the service's limits admit it with gradients in ``dtype``."""
    if any(arr.size > settings.max_tensor_elements for arr in arrays.values()):
        return None
    if sum(arr.size for arr in arrays.values()) > settings.max_total_elements:
        return None
    try:
        grown = build_job(job.spec, arrays, job.params, job.locs, dtype, True, None)
    except ServiceError:
        return None
    if grown.cost.work > settings.max_request_cost or grown.cost.memory_bytes > budget:
        return None
    return grown


def largest(job: Job, size: int | None, settings: Settings, budget: int, dtype: FloatDType) -> Job | None:
    """The largest admitted job along ``size``'s dimensions: doubling, then bisection."""
    low, high = 1, 2
    best = admitted(job, grow(job, size, 1), settings, budget, dtype)
    if best is None:
        return None
    while high <= MAX_SCALE:
        grown = admitted(job, grow(job, size, high), settings, budget, dtype)
        if grown is None:
            break
        best, low, high = grown, high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        grown = admitted(job, grow(job, size, middle), settings, budget, dtype)
        if grown is None:
            high = middle
        else:
            best, low = grown, middle
    return best


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(engine: Engine, job: Job, repeats: int) -> tuple[float, float]:
    """Seconds (the fastest of ``repeats`` runs: the machine is shared) and peak resident memory
    above the start (MiB, the largest) of an engine run."""
    runs = [_measure_once(engine, job) for _ in range(repeats)]
    return min(seconds for seconds, _ in runs), max(peak for _, peak in runs)


def _measure_once(engine: Engine, job: Job) -> tuple[float, float]:
    gc.collect()
    trim_memory()  # freed pages go back, so the peak counts what this run takes
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    started = time.perf_counter()
    engine.run(job)
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)
    seconds = time.perf_counter() - started
    return seconds, (_status_kib("VmHWM") - before) / 1024


def growths(spec: FunctionSpec, job: Job) -> Iterator[tuple[str, int | None]]:
    yield "all dimensions", None
    if spec.cost is ELEMENTWISE:
        return  # linear in the elements: any growth to the element limits costs the same
    sizes = sorted({d for arr in job.arrays.values() for d in arr.shape})
    for size in sizes:
        yield f"dimensions of size {size}", size


def cases(
    spec: FunctionSpec, engine: Engine, settings: Settings, budget: int, options: DecodeOptions, repeats: int
) -> list[Case]:
    job = example_job(spec, options)
    engine.run(job)  # warm-up: torch's first call of a kernel
    out = []
    for label, size in growths(spec, job):
        for dtype in DTYPES:
            grown = largest(job, size, settings, budget, dtype)
            if grown is None:
                continue
            for grad in (False, True):
                run = build_job(grown.spec, grown.arrays, grown.params, grown.locs, dtype, grad, None)
                shapes = {name: arr.shape for name, arr in run.arrays.items()}
                estimate = (run.cost.work / 1e9, run.cost.memory_bytes / 2**20)
                try:
                    seconds, peak = measure(engine, run, repeats)
                except ServiceError as error:
                    out.append(Case(spec.name, label, dtype, grad, shapes, *estimate, None, None, error.code))
                    continue
                out.append(Case(spec.name, label, dtype, grad, shapes, *estimate, seconds, peak))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--functions", nargs="*", help="only these functions (default: all)")
    parser.add_argument("--json", type=Path, help="also write every case here")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each case; the fastest counts (default 2)")
    args = parser.parse_args()
    settings = Settings()
    budget = settings.memory_budget_bytes or int((CONTAINER_LIMIT - PROCESS_BASELINE) * BUDGET_SHARE)
    torch.set_num_threads(threads_per_worker(settings.workers, settings.torch_threads))
    engine = Engine(resolve_device(settings.device))
    options = DecodeOptions(
        CATALOGUE, TensorLimits(settings.max_tensor_elements, settings.max_rank), settings.max_total_elements, "float32"
    )
    print(
        f"device {engine.device}, {torch.get_num_threads()} torch threads, max_request_cost "
        f"{settings.max_request_cost:.3g}, memory budget {budget / 2**20:.0f} MiB"
    )
    print(f"{'function':34} {'worst s':>8} {'est s':>7} {'peak MiB':>9} {'est MiB':>8}  worst case")
    everything: list[Case] = []
    worst_time, worst_peak = 0.0, 0.0
    for spec in CATALOGUE:
        if args.functions and spec.name not in args.functions:
            continue
        found = cases(spec, engine, settings, budget, options, args.repeats)
        everything.extend(found)
        timed = [case for case in found if case.seconds is not None]
        if not timed:
            print(f"{spec.name:34} (no admitted case computed: {', '.join({c.note for c in found}) or 'none'})")
            continue
        slowest = max(timed, key=lambda case: case.seconds or 0.0)
        heaviest = max(timed, key=lambda case: case.peak_mib or 0.0)
        worst_time = max(worst_time, slowest.seconds or 0.0)
        worst_peak = max(worst_peak, heaviest.peak_mib or 0.0)
        print(
            f"{spec.name:34} {slowest.seconds:8.3f} {slowest.estimate_s:7.3f} {heaviest.peak_mib:9.1f} "
            f"{heaviest.estimate_mib:8.1f}  {slowest.dtype}{' grad' if slowest.grad else ''} "
            f"{slowest.grown}: {slowest.shapes}",
            flush=True,
        )
    print(f"worst time {worst_time:.3f} s, worst peak {worst_peak:.1f} MiB (budget {budget / 2**20:.0f} MiB)")
    if args.json:
        args.json.write_bytes(orjson.dumps([case.__dict__ for case in everything]))


if __name__ == "__main__":
    main()
